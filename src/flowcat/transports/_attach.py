"""The read loop shared by transports fed by a per-connection listener (picows, AudioSocket)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._input import BaseInputTransport

__all__ = ["feed_until_closed"]


class ListenerFed(Protocol):
    """A transport fed by a listener: its input, and what ends the call when the peer left."""

    def input(self) -> BaseInputTransport: ...

    async def handle_disconnect(self) -> None: ...


async def feed_until_closed(transport: ListenerFed, listener: Any, keep: int | None) -> None:
    """Feed ``transport`` from ``listener`` until the connection is gone; then end the call.

    Waits for the StartFrame to reach the transport's input (or the peer to leave),
    attaches the transport to the listener (of the messages that arrived meanwhile
    only the last ``keep`` are fed; None: all), waits for the connection to close and finally
    runs the transport's disconnect handling.
    """
    try:
        closed = listener.closed_future()
        started = transport.input().started_future()
        if not started.done():
            await asyncio.wait((started, closed), return_when=asyncio.FIRST_COMPLETED)
        listener.attach(transport, keep=keep)
        await asyncio.shield(closed)
    finally:
        await transport.handle_disconnect()
