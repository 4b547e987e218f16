"""Virtual time: an event loop whose clock jumps instead of sleeping.

When the loop has nothing ready and would block waiting for a timer, the virtual
clock jumps straight to that timer (trio's ``MockClock(autojump_threshold=0)``).
Real I/O still works: a poll with timeout 0 runs first, and the loop only blocks
for real when no timer is pending at all. A 5-minute idle timeout thus takes
milliseconds.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeEventLoop", "run_virtual"]

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeEventLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            return super().select(None)  # nothing scheduled: wait for real I/O
        if self.loop is not None:
            self.loop.advance(timeout)
        return []


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop with a virtual, auto-jumping clock."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = 0.0

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds > 0:
            self._virtual_now += seconds


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeEventLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(coro)
