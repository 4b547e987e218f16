"""Event-loop stall watchdog: how long the loop was blocked, and the code that blocked it.

Every call of a process shares one event loop; a callback that holds it for 150 ms
is an audible gap for every caller. A lag probe (``flowcat_event_loop_lag_seconds``)
says *that* it happened; :class:`LoopWatchdog` also says *what* did it:

* on the loop, a heartbeat (one ``call_later`` every ``interval`` seconds, for the
  whole process, not per call) stamps the time it ran;
* a daemon thread wakes every ``interval / 2`` seconds and, when the heartbeat is
  more than ``threshold`` late, takes the loop thread's current stack
  (:func:`sys._current_frames`): the code running while the loop is stuck;
* when the heartbeat finally runs ``threshold`` or more late, the loop reports one
  stall: its length, the stack the thread took, counted in :attr:`stalls`, kept in
  :attr:`last` and :attr:`worst_secs`, given to ``on_stall`` (a metric) and logged
  (WARNING, rate-limited: the first ``log_first`` stalls, then one in ``log_every``).

The stack is sampled while the stall happens, so it names the blocking callback
even when the stall comes from C code that holds the GIL (the thread then samples as
soon as it gets the GIL back: still inside the blocking call unless it just ended).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .._ratelimit import RateLimitedLog
from ..errors import ConfigError

__all__ = ["LoopStall", "LoopWatchdog"]

logger = logging.getLogger("flowcat.watchdog")


@dataclass(frozen=True, slots=True)
class LoopStall:
    """One stall of the event loop."""

    secs: float
    """How late the heartbeat ran (the loop was blocked about this long)."""
    stack: tuple[str, ...]
    """The loop thread's stack during the stall, outermost first (``traceback.format_stack``
    lines); empty when the sampler got no look (a stall shorter than its wake-up period)."""

    def where(self) -> str:
        """The innermost frame of :attr:`stack` on one line (file, line, function, code), or ``"?"``."""
        return " ".join(part.strip() for part in self.stack[-1].splitlines()) if self.stack else "?"


class LoopWatchdog:
    """Reports event-loop stalls over ``threshold`` seconds with the stack that caused them.

    Args:
        threshold: A heartbeat this late (seconds) is a stall (default 0.1).
        interval: Heartbeat period (default ``threshold / 2``, at most 0.05 s).
        on_stall: Called on the loop with each :class:`LoopStall` (e.g. a metric).
        log_first / log_every: Rate limit of the WARNING log (the first ``log_first``
            stalls, then one in ``log_every``).
        stack_limit: Frames kept per stack (innermost ones).
    """

    def __init__(
        self,
        threshold: float = 0.1,
        *,
        interval: float | None = None,
        on_stall: Callable[[LoopStall], None] | None = None,
        log_first: int = 5,
        log_every: int = 100,
        stack_limit: int = 12,
    ) -> None:
        if threshold <= 0:
            raise ConfigError(f"watchdog threshold must be > 0, got {threshold}")
        self.threshold = threshold
        self.interval = interval if interval is not None else min(0.05, threshold / 2)
        if self.interval <= 0:
            raise ConfigError(f"watchdog interval must be > 0, got {self.interval}")
        self.on_stall = on_stall
        self.stack_limit = stack_limit
        self.stalls = 0
        """Stalls reported since :meth:`start`."""
        self.worst_secs = 0.0
        self.last: LoopStall | None = None
        self._log = RateLimitedLog(logger, first=log_first, every=log_every)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_tid = 0
        self._due = 0.0  # monotonic time the next heartbeat is due
        self._sample: tuple[str, ...] = ()
        self._sample_due = -1.0  # the heartbeat the sample belongs to

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching ``loop`` (default: the running one; call from its thread). Idempotent."""
        if self._thread is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._loop_tid = threading.get_ident()
        self._stop.clear()
        self._due = time.monotonic() + self.interval
        self._handle = self._loop.call_later(self.interval, self._beat)
        self._thread = threading.Thread(target=self._watch, name="flowcat-loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat and the sampling thread (waits for it, bounded)."""
        thread, self._thread = self._thread, None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=1.0)

    # ------------------------------------------------------------------ loop side

    def _beat(self) -> None:
        now = time.monotonic()
        late = now - self._due
        if late >= self.threshold:
            stack = self._sample if self._sample_due == self._due else ()
            self._report(LoopStall(late, stack))
        self._sample = ()
        self._due = now + self.interval
        if self._thread is not None and self._loop is not None:
            self._handle = self._loop.call_later(self.interval, self._beat)

    def _report(self, stall: LoopStall) -> None:
        self.stalls += 1
        self.last = stall
        if stall.secs > self.worst_secs:
            self.worst_secs = stall.secs
        if self._log.due(self.stalls):
            self._log(
                self.stalls,
                "event loop blocked for %.0f ms (stall #%d, threshold %.0f ms) in:\n%s",
                stall.secs * 1e3,
                self.stalls,
                self.threshold * 1e3,
                "".join(stall.stack) or "  (no sample)\n",
            )
        if self.on_stall is not None:
            try:
                self.on_stall(stall)
            except Exception:  # a metric must not break the loop's heartbeat
                logger.exception("watchdog on_stall callback failed")

    # ---------------------------------------------------------------- thread side

    def _watch(self) -> None:
        period = self.interval / 2
        while not self._stop.wait(period):
            due = self._due
            if self._sample_due == due or time.monotonic() - due < self.threshold:
                continue
            frame = sys._current_frames().get(self._loop_tid)
            if frame is None:  # the loop thread is gone
                return
            lines = traceback.format_stack(frame, limit=self.stack_limit)
            del frame
            self._sample = tuple(lines)
            self._sample_due = due
