"""PipelineTask: runs one pipeline (one call) from StartFrame to End or Cancel.

The task wraps the pipeline between its own source and sink, owns the call's
:class:`~flowcat.runtime.CallScheduler`, and bounds every wait:

* ``start_timeout_secs`` — the StartFrame must reach the end of the pipeline;
* ``end_timeout_secs`` — an EndFrame must reach the end after it is queued;
* ``cancel_timeout_secs`` — a cancel must complete;
* ``hook_timeout_secs`` — each processor lifecycle hook;
* ``idle_timeout_secs`` — no activity frame for this long fires ``on_idle_timeout``
  and (by default) cancels the task.

An overrun is logged and reported through ``on_pipeline_error`` naming the
processor the pipeline is stuck in, and the task then cancels itself, so
``run()`` always returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PipelineStateError
from ..frames import (
    BotInterruptionFrame,
    BotSpeakingFrame,
    CancelFrame,
    CancelTaskFrame,
    EndFrame,
    EndTaskFrame,
    ErrorFrame,
    Frame,
    HeartbeatFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    InterruptionTaskFrame,
    LLMFullResponseEndFrame,
    StartFrame,
    StopFrame,
    StopTaskFrame,
    TranscriptionFrame,
    UserSpeakingFrame,
)
from ._direction import FrameDirection
from ._events import EventEmitter
from ._observer import BaseObserver, FramePushed
from ._pipeline import flatten_links
from ._processor import FrameProcessor
from ._scheduler import CallScheduler

__all__ = ["PipelineParams", "PipelineTask", "TaskStats"]

logger = logging.getLogger("flowcat.task")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

DEFAULT_IDLE_FRAMES: tuple[type[Frame], ...] = (
    BotSpeakingFrame,
    UserSpeakingFrame,
    TranscriptionFrame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
)


@dataclass(kw_only=True)
class PipelineParams:
    """Parameters of a pipeline run, sent to every processor in the StartFrame."""

    audio_in_sample_rate: int = 16000
    """Sample rate (Hz) of input audio inside the pipeline. Default 16000."""
    audio_out_sample_rate: int = 24000
    """Sample rate (Hz) of output audio inside the pipeline. Default 24000."""
    allow_interruptions: bool = True
    """Whether user speech may interrupt the bot. Default True."""
    enable_metrics: bool = False
    """Report TTFB and processing metrics. Default False."""
    enable_usage_metrics: bool = False
    """Report LLM token and TTS character usage. Default False."""
    report_only_initial_ttfb: bool = False
    """Report only the first TTFB of each processor. Default False."""
    enable_heartbeats: bool = False
    """Send HeartbeatFrames and warn when they stop arriving. Default False."""
    heartbeats_period_secs: float = 1.0
    """Heartbeat period (s). Default 1.0."""
    heartbeats_monitor_secs: float = 10.0
    """Warn when no heartbeat reached the end for this long (s). Default 10.0."""
    start_metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata put in the StartFrame."""


@dataclass
class TaskStats:
    """Per-task statistics (see also the scheduler's counters)."""

    frames_queued: int = 0
    heartbeats_received: int = 0
    last_heartbeat_latency: float | None = None
    errors: int = 0
    stuck_processors: list[str] = field(default_factory=list)
    finished_by: str | None = None


class _TaskSource(FrameProcessor):
    def __init__(self, task: PipelineTask) -> None:
        super().__init__(name=f"{task.name}::Source")
        self._task = task

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is UPSTREAM:
            await self._task._on_upstream(frame)
        else:
            await self.push_frame(frame, direction)


class _TaskSink(FrameProcessor):
    def __init__(self, task: PipelineTask) -> None:
        super().__init__(name=f"{task.name}::Sink")
        self._task = task

    @property
    def wants_sent_audio(self) -> bool:
        task = self._task
        return bool(task._observers) or task.has_event_handler("on_frame_reached_downstream")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM:
            await self._task._on_downstream(frame)
        else:
            await self.push_frame(frame, direction)


class PipelineTask(EventEmitter):
    """Runs a pipeline for one call.

    Args:
        pipeline: The pipeline (any processor).
        params: Run parameters.
        observers: Observers to attach (none: zero cost).
        idle_timeout_secs: Seconds without an activity frame before ``on_idle_timeout``;
            None disables. Default 300.
        idle_timeout_frames: Frame types counted as activity.
        cancel_on_idle_timeout: Cancel the task on idle timeout. Default True.
        start_timeout_secs: Bound on the StartFrame reaching the end. Default 20.
        end_timeout_secs: Bound on an EndFrame reaching the end once queued. Default 20.
        cancel_timeout_secs: Bound on cancelling. Default 20.
        hook_timeout_secs: Bound on each processor lifecycle hook. Default 10.
        max_data_lane: Data-lane size before async producers wait. Default 256.
        max_queued_input_audio: Input-audio frames that may wait before the oldest
            is dropped. Default 100 (2 s of 20 ms frames).
        name: Task name for logs.
    """

    _event_names = (
        "on_pipeline_started",
        "on_pipeline_finished",
        "on_pipeline_error",
        "on_idle_timeout",
        "on_heartbeat_timeout",
        "on_frame_reached_upstream",
        "on_frame_reached_downstream",
    )
    _counter = 0

    def __init__(
        self,
        pipeline: FrameProcessor,
        *,
        params: PipelineParams | None = None,
        observers: Sequence[BaseObserver] | None = None,
        idle_timeout_secs: float | None = 300.0,
        idle_timeout_frames: Iterable[type[Frame]] = DEFAULT_IDLE_FRAMES,
        cancel_on_idle_timeout: bool = True,
        start_timeout_secs: float = 20.0,
        end_timeout_secs: float = 20.0,
        cancel_timeout_secs: float = 20.0,
        hook_timeout_secs: float = 10.0,
        max_data_lane: int = 256,
        max_queued_input_audio: int = 100,
        name: str | None = None,
    ) -> None:
        PipelineTask._counter += 1
        self.name = name or f"PipelineTask#{PipelineTask._counter}"
        self.params = params or PipelineParams()
        self._pipeline = pipeline
        self._observers = list(observers or [])
        self._idle_timeout = idle_timeout_secs
        self._idle_types = tuple(idle_timeout_frames)
        self._idle_cache: dict[type, bool] = {}
        self._cancel_on_idle = cancel_on_idle_timeout
        self._start_timeout = start_timeout_secs
        self._end_timeout = end_timeout_secs
        self._cancel_timeout = cancel_timeout_secs
        self.stats = TaskStats()
        self._sched = CallScheduler(
            self.name,
            max_data_lane=max_data_lane,
            max_queued_input_audio=max_queued_input_audio,
            hook_timeout=hook_timeout_secs,
        )
        self._source = _TaskSource(self)
        self._sink = _TaskSink(self)
        self._source.link(pipeline)
        pipeline.link(self._sink)
        self._state = "idle"
        self._finished: asyncio.Future[None] | None = None
        self._cancel_requested = False
        self._end_queued = False
        self._started = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_activity = 0.0
        self._last_heartbeat = 0.0
        self._heartbeat_warned = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -------------------------------------------------------------- public

    @property
    def scheduler(self) -> CallScheduler:
        """The call's scheduler."""
        return self._sched

    @property
    def pipeline(self) -> FrameProcessor:
        """The pipeline this task runs."""
        return self._pipeline

    @property
    def state(self) -> str:
        """``idle``, ``running``, ``finished``."""
        return self._state

    def has_finished(self) -> bool:
        """Whether the task has finished."""
        return self._state == "finished"

    def stats_dict(self) -> dict[str, Any]:
        """Task and scheduler statistics as one flat dict."""
        out = asdict(self.stats)
        out.update({f"scheduler_{k}": v for k, v in asdict(self._sched.stats).items()})
        return out

    async def queue_frame(self, frame: Frame, direction: FrameDirection = DOWNSTREAM) -> None:
        """Queue ``frame`` into the pipeline (downstream from the top, or upstream from the end)."""
        if self._state == "finished":
            raise PipelineStateError(f'Cannot queue frames to task {self.name} in state "finished"')
        self.stats.frames_queued += 1
        if isinstance(frame, EndFrame):
            self._arm_end_timer()
        elif isinstance(frame, CancelFrame):
            await self.cancel(frame.reason)
            return
        origin = self._source if direction is DOWNSTREAM else self._sink
        await self._sched.enter(origin, frame, direction)

    async def queue_frames(self, frames: Iterable[Frame]) -> None:
        """Queue several frames in order."""
        for frame in frames:
            await self.queue_frame(frame)

    async def stop_when_done(self) -> None:
        """End gracefully: queue an EndFrame behind everything already queued."""
        await self.queue_frame(EndFrame())

    async def cancel(self, reason: Any = None) -> None:
        """Cancel now: running chains are cancelled and a CancelFrame runs through."""
        if self._state == "finished" or self._cancel_requested:
            return
        self._cancel_requested = True
        if self._state == "idle":
            return  # run() will see the request and return at once
        self._arm_timer("cancel", self._cancel_timeout, self._on_cancel_timeout)
        self._sched.submit(self._source, CancelFrame(reason=reason), DOWNSTREAM)

    async def run(self) -> None:
        """Run until an End, Stop or Cancel frame has passed the whole pipeline.

        Raises:
            PipelineStateError: The task was already run.
        """
        if self._state != "idle":
            raise PipelineStateError(f'Cannot run task {self.name} in state "{self._state}"')
        loop = self._loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._state = "running"
        procs = [self._source, *self._pipeline.walk(), self._sink]
        for proc in procs:
            proc._attach(self._sched)
            if self._observers:
                _install_observers(proc, self._observers, loop)
        if not self._observers:
            flatten_links(procs)
        try:
            if self._cancel_requested:
                self._finish("cancelled before start")
            else:
                self._arm_timer("start", self._start_timeout, self._on_start_timeout)
                self._sched.submit(self._source, self._make_start_frame(), DOWNSTREAM)
            await self._finished
        except asyncio.CancelledError:
            if not self.has_finished():
                await self._cancel_from_outside()
            raise
        finally:
            await self._cleanup()

    # ------------------------------------------------------------ internals

    def _make_start_frame(self) -> StartFrame:
        p = self.params
        return StartFrame(
            audio_in_sample_rate=p.audio_in_sample_rate,
            audio_out_sample_rate=p.audio_out_sample_rate,
            allow_interruptions=p.allow_interruptions,
            enable_metrics=p.enable_metrics,
            enable_usage_metrics=p.enable_usage_metrics,
            report_only_initial_ttfb=p.report_only_initial_ttfb,
            start_metadata=dict(p.start_metadata),
        )

    async def _cancel_from_outside(self) -> None:
        self._cancel_requested = True
        self._sched.submit(self._source, CancelFrame(reason="task cancelled"), DOWNSTREAM)
        fut = self._finished
        if fut is not None and not fut.done():
            await asyncio.wait((fut,), timeout=self._cancel_timeout)

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

    def _cancel_sync(self, reason: str) -> None:
        self._cancel_requested = True
        self._arm_timer("cancel", self._cancel_timeout, self._on_cancel_timeout)
        self._sched.submit(self._source, CancelFrame(reason=reason), DOWNSTREAM)

    def _finish(self, how: str) -> None:
        if self.stats.finished_by is None:
            self.stats.finished_by = how
        for key in list(self._timers):
            self._disarm(key)
        self._sched.close()
        fut = self._finished
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _cleanup(self) -> None:
        self._state = "finished"
        self._finish(self.stats.finished_by or "finished")
        stragglers = await self._sched.cancel_tasks(self._cancel_timeout)
        if stragglers:
            logger.error("%s: background tasks ignored cancellation: %s", self.name, ", ".join(stragglers))
        if self.stats.finished_by != "stop":
            for proc in self._pipeline.walk():
                if proc._overrides("cleanup"):
                    cleanup = asyncio.ensure_future(proc.cleanup())
                    done, _ = await asyncio.wait((cleanup,), timeout=self._sched.hook_timeout)
                    if not done:
                        cleanup.cancel()
                        logger.error(
                            "%s: %s.cleanup() overran %g s", self.name, proc, self._sched.hook_timeout
                        )
        await self._call_event_handler("on_pipeline_finished", self.stats.finished_by)
        for obs in self._observers:
            await obs.on_pipeline_finished(self.stats.finished_by)

    # ------------------------------------------------- frames at the edges

    def _is_activity(self, frame: Frame) -> bool:
        cls = frame.__class__
        hit = self._idle_cache.get(cls)
        if hit is None:
            hit = self._idle_cache[cls] = issubclass(cls, self._idle_types)
        return hit

    async def _on_downstream(self, frame: Frame) -> None:
        loop = self._loop
        assert loop is not None
        if self._is_activity(frame):
            self._last_activity = loop.time()
        cls = frame.__class__
        if cls is HeartbeatFrame:
            now = loop.time()
            self._last_heartbeat = now
            self._heartbeat_warned = False
            self.stats.heartbeats_received += 1
            self.stats.last_heartbeat_latency = now - frame.timestamp / 1e9  # type: ignore[attr-defined]
        elif cls is StartFrame:
            await self._on_started()
        elif cls is EndFrame:
            self._finish("end")
        elif cls is StopFrame:
            self._finish("stop")
        elif cls is CancelFrame:
            self._finish("cancel")
        if self.has_event_handler("on_frame_reached_downstream"):
            await self._call_event_handler("on_frame_reached_downstream", frame)

    async def _on_started(self) -> None:
        loop = self._loop
        assert loop is not None
        self._started = True
        self._disarm("start")
        now = loop.time()
        self._last_activity = now
        self._last_heartbeat = now
        if self._idle_timeout:
            self._arm_timer("idle", self._idle_timeout, self._check_idle)
        if self.params.enable_heartbeats:
            self._arm_timer("heartbeat", self.params.heartbeats_period_secs, self._send_heartbeat)
        self._sched.release()
        await self._call_event_handler("on_pipeline_started")
        for obs in self._observers:
            await obs.on_pipeline_started()

    async def _on_upstream(self, frame: Frame) -> None:
        loop = self._loop
        assert loop is not None
        if self._is_activity(frame):
            self._last_activity = loop.time()
        if isinstance(frame, ErrorFrame):
            self.stats.errors += 1
            await self._call_event_handler("on_pipeline_error", frame)
            if frame.fatal:
                logger.error("%s: fatal error, cancelling: %s", self.name, frame.error)
                self._cancel_sync("fatal error")
        elif isinstance(frame, EndTaskFrame):
            self._arm_end_timer()
            self._sched.submit(self._source, EndFrame(reason=frame.reason), DOWNSTREAM)
        elif isinstance(frame, StopTaskFrame):
            self._sched.submit(self._source, StopFrame(), DOWNSTREAM)
        elif isinstance(frame, CancelTaskFrame):
            self._cancel_sync(frame.reason or "cancel requested upstream")
        elif isinstance(frame, InterruptionTaskFrame | BotInterruptionFrame):
            await self._source.push_frame(InterruptionFrame(), DOWNSTREAM)
        if self.has_event_handler("on_frame_reached_upstream"):
            await self._call_event_handler("on_frame_reached_upstream", frame)

    # --------------------------------------------------------------- timers

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
        if now - self._last_heartbeat > self.params.heartbeats_monitor_secs and not self._heartbeat_warned:
            self._heartbeat_warned = True
            logger.warning(
                "%s: no heartbeat reached the end for %.1f s", self.name, now - self._last_heartbeat
            )
            self._spawn_event("on_heartbeat_timeout")
        self._sched.submit(self._source, HeartbeatFrame(timestamp=int(now * 1e9)), DOWNSTREAM)
        self._arm_timer("heartbeat", self.params.heartbeats_period_secs, self._send_heartbeat)


def _install_observers(
    proc: FrameProcessor, observers: list[BaseObserver], loop: asyncio.AbstractEventLoop
) -> None:
    """Give ``proc`` an observing ``push_frame`` (only done when observers exist)."""
    original = type(proc).push_frame

    async def push_frame(frame: Frame, direction: FrameDirection = DOWNSTREAM) -> None:
        sched = proc._sched
        if sched is None or sched.executing:
            dst = proc._next if direction is DOWNSTREAM else proc._prev
            if dst is not None:
                data = FramePushed(proc, dst, frame, direction, int(loop.time() * 1e9))
                for obs in observers:
                    types = obs.frame_types
                    if types is None or isinstance(frame, types):
                        await obs.on_push_frame(data)
        await original(proc, frame, direction)

    proc.push_frame = push_frame  # type: ignore[method-assign]
