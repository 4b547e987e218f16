"""The bounds and monitors of a pipeline task: lifecycle deadlines, idle timeout, heartbeats.

Each is a loop timer handle (no sleeping task), kept by name so that arming it
again replaces it:

* ``start``, ``end``, ``cancel`` — the StartFrame must reach the end of the
  pipeline, an EndFrame must reach it once queued, a cancel must complete. An
  overrun is logged and reported through ``on_pipeline_error`` naming the
  processors the suspended chain is waiting in (``stats.stuck_processors``); the
  task then cancels itself (an overrun cancel finishes it at once).
* ``idle`` — no activity frame reached either end of the pipeline for
  ``idle_timeout_secs``: ``on_idle_timeout`` fires and, by default, the task is
  cancelled.
* ``heartbeat`` — with heartbeats enabled, a HeartbeatFrame is sent every period;
  when none has reached the end for ``heartbeats_monitor_secs``, a warning is
  logged and ``on_heartbeat_timeout`` fires, again every ``heartbeats_monitor_secs``
  for as long as the stall lasts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..frames import CancelFrame, ErrorFrame, Frame, HeartbeatFrame
from ._direction import FrameDirection
from ._events import EventEmitter

if TYPE_CHECKING:
    from ._processor import FrameProcessor
    from ._scheduler import CallScheduler
    from ._task_params import PipelineParams, TaskStats

__all__ = ["TaskTimers"]

logger = logging.getLogger("flowcat.task")

DOWNSTREAM = FrameDirection.DOWNSTREAM


class TaskTimers(EventEmitter):
    """The timers of a :class:`~flowcat.PipelineTask` (see the module docstring).

    The base of ``PipelineTask``, which provides the scheduler, the source the
    task's own frames enter from, the loop (once running) and how it finishes.

    Args:
        idle_timeout_secs: Seconds without an activity frame before ``on_idle_timeout``;
            None disables.
        idle_timeout_frames: Frame types counted as activity.
        cancel_on_idle_timeout: Cancel the task on idle timeout.
        start_timeout_secs: Bound on the StartFrame reaching the end.
        end_timeout_secs: Bound on an EndFrame reaching the end once queued.
        cancel_timeout_secs: Bound on cancelling.
    """

    if TYPE_CHECKING:
        name: str
        params: PipelineParams
        stats: TaskStats
        _sched: CallScheduler
        _source: FrameProcessor
        _loop: asyncio.AbstractEventLoop | None
        _started: bool
        _cancel_requested: bool
        _end_frame: Frame | None

        def has_finished(self) -> bool: ...

        def _finish(self, how: str) -> None: ...

    def __init__(
        self,
        *,
        idle_timeout_secs: float | None,
        idle_timeout_frames: Iterable[type[Frame]],
        cancel_on_idle_timeout: bool,
        start_timeout_secs: float,
        end_timeout_secs: float,
        cancel_timeout_secs: float,
    ) -> None:
        self._idle_timeout = idle_timeout_secs
        self._idle_types = tuple(idle_timeout_frames)
        self._idle_cache: dict[type, bool] = {}
        self._cancel_on_idle = cancel_on_idle_timeout
        self._start_timeout = start_timeout_secs
        self._end_timeout = end_timeout_secs
        self._cancel_timeout = cancel_timeout_secs
        self._end_queued = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_activity = 0.0
        self._last_heartbeat = 0.0
        self._heartbeat_warned_at = float("-inf")

    # -------------------------------------------------------------- arming

    def _arm_timer(self, key: str, delay: float | None, callback: Any) -> None:
        if delay is None or self._loop is None:
            return
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = self._loop.call_later(delay, callback)

    def _disarm(self, key: str) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _arm_end_timer(self) -> None:
        if not self._end_queued:
            self._end_queued = True
            self._arm_timer("end", self._end_timeout, self._on_end_timeout)

    def _cancel_sync(self, reason: str) -> None:
        self._cancel_requested = True
        self._arm_timer("cancel", self._cancel_timeout, self._on_cancel_timeout)
        self._submit_cancel(reason)

    def _submit_cancel(self, reason: str) -> None:
        frame = CancelFrame(reason=reason)
        if self._end_frame is None:
            self._end_frame = frame  # what on_pipeline_finished reports if it never arrives
        self._sched.submit(self._source, frame, DOWNSTREAM)

    # ----------------------------------------------------- lifecycle bounds

    def _on_start_timeout(self) -> None:
        if not self._started and not self.has_finished():
            self._report_stuck("StartFrame", self._start_timeout)
            self._cancel_sync("start timeout")

    def _on_end_timeout(self) -> None:
        if not self.has_finished():
            self._report_stuck("EndFrame", self._end_timeout)
            self._cancel_sync("end timeout")

    def _on_cancel_timeout(self) -> None:
        if not self.has_finished():
            self._report_stuck("CancelFrame", self._cancel_timeout)
            self._finish("cancel timeout")

    def _report_stuck(self, what: str, timeout: float) -> None:
        stuck = self._sched.stuck_processors()
        self.stats.stuck_processors = stuck
        where = ", ".join(stuck) if stuck else "no processor (frame was dropped or swallowed)"
        msg = f"{self.name}: {what} did not complete within {timeout:g} s; stuck in {where}"
        logger.error(msg)
        self.stats.errors += 1
        self._spawn_event("on_pipeline_error", ErrorFrame(error=msg))

    def _spawn_event(self, name: str, *args: Any) -> None:
        if self.has_event_handler(name) and self._loop is not None:
            self._sched.create_task(self._call_event_handler(name, *args), name=f"{self.name}.{name}")

    # ------------------------------------------------- idle and heartbeats

    def _note_activity(self, frame: Frame) -> None:
        """A frame reached an end of the pipeline: an activity frame resets the idle clock."""
        cls = frame.__class__
        hit = self._idle_cache.get(cls)
        if hit is None:
            hit = self._idle_cache[cls] = issubclass(cls, self._idle_types)
        if hit and self._loop is not None:
            self._last_activity = self._loop.time()

    def _check_idle(self) -> None:
        loop = self._loop
        if loop is None or self.has_finished() or not self._idle_timeout:
            return
        remaining = self._last_activity + self._idle_timeout - loop.time()
        if remaining > 0:
            self._arm_timer("idle", remaining, self._check_idle)
            return
        logger.warning("%s: idle for %g s", self.name, self._idle_timeout)
        self._spawn_event("on_idle_timeout")
        if self._cancel_on_idle:
            self._cancel_sync("idle timeout")
        else:
            self._last_activity = loop.time()
            self._arm_timer("idle", self._idle_timeout, self._check_idle)

    def _send_heartbeat(self) -> None:
        loop = self._loop
        if loop is None or self.has_finished():
            return
        now = loop.time()
        # Warned again every heartbeats_monitor_secs for as long as the stall lasts.
        since = now - max(self._last_heartbeat, self._heartbeat_warned_at)
        if since >= self.params.heartbeats_monitor_secs - 1e-9:
            self._heartbeat_warned_at = now
            logger.warning(
                "%s: no heartbeat reached the end for %.1f s", self.name, now - self._last_heartbeat
            )
            self._spawn_event("on_heartbeat_timeout")
        self._sched.submit(self._source, HeartbeatFrame(timestamp=int(now * 1e9)), DOWNSTREAM)
        self._arm_timer("heartbeat", self.params.heartbeats_period_secs, self._send_heartbeat)
