"""One re-armable timer handle per processor (no task, no per-frame timer object)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["SingleTimer"]


class SingleTimer:
    """Calls ``callback`` at the latest time given to :meth:`arm` (loop time, s).

    Re-arming at the same time is free; a new time cancels the old handle and
    schedules one ``loop.call_at``. Nothing is created per frame.
    """

    __slots__ = ("_at", "_callback", "_closed", "_handle", "loop")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None
        self._closed = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def arm(self, at: float | None) -> None:
        """Fire at ``at`` (None: not at all)."""
        if at == self._at:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = at
        if at is not None and self.loop is not None and not self._closed:
            self._handle = self.loop.call_at(at, self._fire)

    def close(self) -> None:
        """Cancel and never fire again (and drop the callback: it often holds its owner)."""
        self._closed = True
        self.arm(None)
        self._callback = _never

    def _fire(self) -> None:
        self._handle = None
        self._at = None
        self._callback()


def _never() -> None:
    """The callback of a closed timer."""
