"""The read loop shared by transports fed by a per-connection listener (picows, AudioSocket)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["feed_until_closed"]


async def feed_until_closed(transport: Any, listener: Any, keep: int) -> None:
    """Feed ``transport`` from ``listener`` until the connection is gone; then end the call.

    Waits for the StartFrame to reach the transport's input (or the peer to leave),
    attaches the transport to the listener (of the messages that arrived meanwhile
    only the last ``keep`` are fed), waits for the connection to close and finally
    runs the transport's disconnect handling.
    """
    try:
        closed = listener.closed_future()
        started = transport._input.started_future()
        if not started.done():
            await asyncio.wait((started, closed), return_when=asyncio.FIRST_COMPLETED)
        listener.attach(transport, keep=keep)
        await asyncio.shield(closed)
    finally:
        await transport._on_disconnected()
