"""Retries with exponential backoff, bounded by deadlines (loop time: virtual-clock friendly)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ServiceError, ServiceRateLimitError, ServiceTimeout

__all__ = ["Backoff", "Deadline", "retry_call"]

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
