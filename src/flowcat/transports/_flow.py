"""Write flow control of a WebSocket transport: a peer that stops reading.

Bot audio is real time: when the peer stops reading, buffering it without bound
only grows memory and latency. A transport is ``congested`` while a send is blocked
(the library waits for the socket to drain) or its socket's write buffer is over
the high-water mark; meanwhile bot audio is dropped (control messages still go).
If it stays congested for ``write_stall_timeout_secs`` the connection is aborted
and the call ends. The picows transport does the same with the listener's
``pause_writing``/``resume_writing`` callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._drive import drive

__all__ = ["StallTimer", "WriteFlow"]

logger = logging.getLogger("flowcat.transports.websocket")


class StallTimer:
    """One pending "still congested?" check (armed once per congestion episode)."""

    __slots__ = ("_handle",)

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, timeout: float | None, callback: Callable[[], None]) -> None:
        if timeout is not None and self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(timeout, self._fire, callback)

    def _fire(self, callback: Callable[[], None]) -> None:
        self._handle = None
        callback()

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class WriteFlow:
    """Mixin of :class:`~flowcat.transports.WebsocketTransport` (see the module docstring)."""

    if TYPE_CHECKING:
        name: str
        _ws: Any
        _wparams: Any
        _output: Any
        _disconnected: bool

        async def _socket_close(self) -> None: ...

    def __init__(self) -> None:
        self.congested = False
        """The peer is not reading (a send is blocked or the write buffer is full)."""
        self.audio_dropped = 0
        """Bot audio chunks dropped while congested."""
        self.write_pauses = 0
        """Times the connection became congested."""
        self._blocked_writes = 0
        self._stall = StallTimer()

    def _asyncio_transport(self) -> Any:
        """The socket's asyncio transport, when the WebSocket library exposes it."""
        return getattr(getattr(self._ws, "_writer", None), "transport", None)

    def _buffer_check(self) -> Callable[[], bool] | None:
        """A per-chunk check: True while the write buffer is congested (None: no transport).

        Uses the transport's own high-water mark to enter and its low-water mark to leave.
        """
        tr = self._asyncio_transport()
        if tr is None or not hasattr(tr, "get_write_buffer_size"):
            return None
        low, high = tr.get_write_buffer_limits()
        size = tr.get_write_buffer_size

        def over() -> bool:
            n = size()
            if n > high:
                if not self.congested:
                    self._congest()
                return True
            if self.congested and n <= low and self._blocked_writes == 0:
                self._decongest()
            return False

        return over

    def _write_blocked(self, task: asyncio.Task[Any]) -> None:
        """A send suspended: congested until every suspended send finished."""
        self._blocked_writes += 1
        task.add_done_callback(self._write_unblocked)
        if not self.congested:
            self._congest()

    def _write_unblocked(self, task: asyncio.Task[Any]) -> None:
        self._blocked_writes -= 1
        if self._blocked_writes == 0 and self.congested:
            tr = self._asyncio_transport()
            if tr is None or tr.get_write_buffer_size() <= tr.get_write_buffer_limits()[0]:
                self._decongest()

    def _congest(self) -> None:
        self.congested = True
        self.write_pauses += 1
        self._stall.arm(self._wparams.write_stall_timeout_secs, self._stalled)

    def _decongest(self) -> None:
        self.congested = False
        self._stall.disarm()

    def _stalled(self) -> None:
        if not self.congested or self._disconnected:
            return
        tr = self._asyncio_transport()
        if self._blocked_writes == 0 and tr is not None and tr.get_write_buffer_size() <= tr.get_write_buffer_limits()[1]:
            self._decongest()  # it drained meanwhile
            return
        logger.warning(
            "%s: the peer read nothing for %.1f s with the write buffer full (%d audio chunks "
            "dropped); aborting the connection",
            self.name,
            self._wparams.write_stall_timeout_secs,
            self.audio_dropped,
        )
        self._output.peer_gone()
        if tr is not None:
            tr.abort()  # a graceful close would queue behind the full buffer
        else:
            drive(self._socket_close(), "close")
