"""Retries with exponential backoff, bounded by deadlines (loop time: virtual-clock friendly)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ServiceError, ServiceRateLimitError, ServiceTimeout

__all__ = ["Backoff", "ChunkTimer", "Deadline", "retry_call"]

logger = logging.getLogger("flowcat.services")

T = TypeVar("T")


class Deadline:
    """A point in loop time by which something must be done.

    Args:
        seconds: Budget from now; None: no deadline.
    """

    __slots__ = ("_at",)

    def __init__(self, seconds: float | None) -> None:
        self._at = None if seconds is None else asyncio.get_running_loop().time() + seconds

    def remaining(self) -> float | None:
        """Seconds left (never negative), None when unbounded."""
        if self._at is None:
            return None
        return max(0.0, self._at - asyncio.get_running_loop().time())

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        rem = self.remaining()
        return rem is not None and rem <= 0.0

    def bound(self, seconds: float | None) -> float | None:
        """``seconds`` capped by what is left."""
        rem = self.remaining()
        if rem is None:
            return seconds
        return rem if seconds is None else min(seconds, rem)


class ChunkTimer:
    """The wait for each chunk of a streamed reply, bounded with one timer for the whole stream.

    ``asyncio.timeout`` around every ``__anext__`` arms and cancels a loop timer per chunk
    (a reply of synthesized speech is a hundred chunks or more, and hundreds of calls stream
    at once). Here the stream runs inside one ``async with ChunkTimer()`` (an
    ``asyncio.timeout(None)`` underneath); :meth:`expect` before each wait stores its due
    time, :meth:`pause` after it clears it. One loop timer follows the due time lazily: when
    it fires early (a chunk came meanwhile) it re-arms at the current due time, and it is
    re-armed at once only when a wait is due sooner than it. When it fires with the wait
    overdue, the scope expires: the wait raises ``TimeoutError`` out of the ``async with``,
    as ``asyncio.timeout`` would. Time spent between waits (handling a chunk) is never bounded::

        timer = ChunkTimer()
        try:
            async with timer:
                while True:
                    timer.expect(5.0)
                    chunk = await it.__anext__()
                    timer.pause()
                    ...
        except TimeoutError:
            raise ServiceTimeout(f"no chunk{timer.within()}") from None
    """

    __slots__ = ("_due", "_handle", "_loop", "_scope", "wait")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scope: asyncio.Timeout | None = None
        self._due: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.wait: float | None = None
        """The bound of the current (or last) wait, seconds."""

    async def __aenter__(self) -> ChunkTimer:
        self._loop = asyncio.get_running_loop()
        scope = self._scope = asyncio.timeout(None)
        await scope.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        scope, self._scope, self._loop = self._scope, None, None
        assert scope is not None  # noqa: S101 - entered (type narrowing)
        # (Let go of the scope, which holds the task: a cancelled task keeps its CancelledError,
        # whose traceback's frames hold this timer; kept, that would be a cycle task -> ... -> task.)
        await scope.__aexit__(*exc_info)  # raises TimeoutError when the scope expired

    def expect(self, wait: float | None) -> None:
        """The next chunk must come within ``wait`` seconds (None: no bound)."""
        self.wait = wait
        if wait is None:
            self._due = None
            return
        loop = self._loop
        assert loop is not None  # noqa: S101 - entered (type narrowing)
        due = self._due = loop.time() + wait
        handle = self._handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(due, self._check)

    def pause(self) -> None:
        """The chunk came: nothing is awaited until the next :meth:`expect`."""
        self._due = None

    def close(self) -> None:
        """Stop the timer (the stream ended)."""
        self._due = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def within(self) -> str:
        """`` within N s`` for an error message ('' when the wait was unbounded)."""
        return "" if self.wait is None else f" within {self.wait:g} s"

    def _check(self) -> None:
        self._handle = None
        due = self._due
        if due is None or self._loop is None or self._scope is None:
            return
        now = self._loop.time()
        if now >= due:
            self._due = None
            self._scope.reschedule(now)  # expire the scope: the waiting task gets TimeoutError
        else:
            self._handle = self._loop.call_at(due, self._check)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter.

    Attributes:
        initial: First delay (s).
        factor: Growth per attempt.
        max_delay: Cap on one delay (s).
        jitter: Fraction of each delay randomised (+/-).
        max_attempts: Attempts in all (the first one included).
    """

    initial: float = 0.25
    factor: float = 2.0
    max_delay: float = 8.0
    jitter: float = 0.1
    max_attempts: int = 4

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The delays before attempts 2, 3, ... (``max_attempts - 1`` of them)."""
        r = rng or random
        delay = self.initial
        for _ in range(self.max_attempts - 1):
            spread = delay * self.jitter
            yield max(0.0, min(self.max_delay, delay + r.uniform(-spread, spread)))
            delay = min(self.max_delay, delay * self.factor)


async def retry_call(
    op: Callable[[int], Awaitable[T]],
    *,
    backoff: Backoff,
    deadline: Deadline,
    what: str,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Run ``op(attempt)`` until it succeeds, a non-retryable error, attempts or deadline run out.

    Only :class:`~flowcat.errors.ServiceError` s with ``retryable`` set are retried; a
    rate-limit error's ``retry_after`` replaces the backoff delay when longer.

    Raises:
        ServiceError: The last failure (or a :class:`~flowcat.errors.ServiceTimeout`
            when the deadline leaves no time for the next attempt).
    """
    delays = backoff.delays()
    attempt = 1
    while True:
        try:
            return await op(attempt)
        except ServiceError as exc:
            if not exc.retryable:
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            if isinstance(exc, ServiceRateLimitError) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            rem = deadline.remaining()
            if rem is not None and rem <= delay:
                raise ServiceTimeout(f"{what}: deadline reached after {attempt} attempt(s): {exc}") from exc
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            logger.info("%s: attempt %d failed (%s); retrying in %.2f s", what, attempt, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            attempt += 1
