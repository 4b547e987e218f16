"""IdleFrameProcessor: call back when no (chosen) frame has passed for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..frames import CancelFrame, EndFrame, Frame, StartFrame
from ._direction import FrameDirection
from ._processor import FrameProcessor

__all__ = ["IdleFrameProcessor"]


class IdleFrameProcessor(FrameProcessor):
    """Passes every frame on; when none of ``types`` (any frame, if not given) has
    passed for ``timeout`` seconds, runs ``callback(processor)`` — again after each
    further ``timeout`` of quiet, until the pipeline ends.

    The clock is one loop timer re-armed from the time of the last frame (no
    sleeping task, nothing per frame beyond reading the loop's clock); the
    callback runs as a call-owned task, so it may push frames.

    Args:
        callback: ``async (processor) -> None`` (a plain function works too).
        timeout: Seconds of quiet before the callback.
        types: Frame types that count as activity (default: every frame).
        name: Optional name.
    """

    def __init__(
        self,
        *,
        callback: Callable[[IdleFrameProcessor], Awaitable[None] | None],
        timeout: float,
        types: Sequence[type[Frame]] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._callback = callback
        self._timeout = timeout
        self._types = tuple(types or ())
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._arm(self._timeout)
        elif isinstance(frame, EndFrame | CancelFrame):
            self._disarm()
        await self.push_frame(frame, direction)
        if self._timer is not None and (not self._types or isinstance(frame, self._types)):
            self._last = asyncio.get_running_loop().time()

    async def cleanup(self) -> None:
        self._disarm()

    def _arm(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._last = loop.time()
        else:
            self._timer.cancel()
        self._timer = loop.call_later(delay, self._check)

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        remaining = self._last + self._timeout - loop.time()
        if remaining > 1e-9:
            self._timer = loop.call_later(remaining, self._check)
            return
        self._last = loop.time()
        self._timer = loop.call_later(self._timeout, self._check)
        self.create_task(self._fire(), "idle_callback")

    async def _fire(self) -> None:
        result: Any = self._callback(self)
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            await result
