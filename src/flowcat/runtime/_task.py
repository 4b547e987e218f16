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
``run()`` always returns. The timers behind these bounds, the idle timeout and
heartbeats are :class:`~flowcat.runtime._task_timers.TaskTimers`, the task's base;
its parameters and statistics are in :mod:`flowcat.runtime._task_params`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from ..errors import PipelineStateError
from ..frames import (
    BotInterruptionFrame,
    CancelFrame,
    CancelTaskFrame,
    EndFrame,
    EndTaskFrame,
    ErrorFrame,
    Frame,
    HeartbeatFrame,
    InterruptionFrame,
    InterruptionTaskFrame,
    StartFrame,
    StopFrame,
    StopTaskFrame,
)
from ._code import clone_of
from ._direction import FrameDirection
from ._observer import BaseObserver
from ._pipeline import flatten_links
from ._processor import FrameProcessor
from ._scheduler import CallScheduler
from ._task_edges import TaskSink, TaskSource
from ._task_observing import TaskObserving
from ._task_params import DEFAULT_IDLE_FRAMES, PipelineParams, TaskStats
from ._task_timers import TaskTimers

__all__ = ["PipelineParams", "PipelineTask", "TaskStats"]

logger = logging.getLogger("flowcat.task")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM


class PipelineTask(TaskObserving, TaskTimers):
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
        super().__init__(
            idle_timeout_secs=idle_timeout_secs,
            idle_timeout_frames=idle_timeout_frames,
            cancel_on_idle_timeout=cancel_on_idle_timeout,
            start_timeout_secs=start_timeout_secs,
            end_timeout_secs=end_timeout_secs,
            cancel_timeout_secs=cancel_timeout_secs,
        )
        self.stats = TaskStats()
        self._sched = CallScheduler(
            self.name,
            max_data_lane=max_data_lane,
            max_queued_input_audio=max_queued_input_audio,
            hook_timeout=hook_timeout_secs,
        )
        self._reached_up: tuple[type[Frame], ...] = ()
        self._reached_down: tuple[type[Frame], ...] = ()
        self._source = TaskSource(self)
        self._sink = TaskSink(self)
        self._source.link(pipeline)
        pipeline.link(self._sink)
        self._state = "idle"
        self._finished: asyncio.Future[None] | None = None
        self._cancel_requested = False
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._procs: list[FrameProcessor] = []
        self._observed = False
        # The End/Stop/Cancel frame the task finished with (on_pipeline_finished's argument).
        self._end_frame: Frame | None = None

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

    @property
    def cancel_timeout_secs(self) -> float:
        """The bound on cancelling (``cancel_timeout_secs``): an owner that cancels the task
        waits this long for it before giving up on it."""
        return self._cancel_timeout

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

    async def queue_frames(
        self, frames: Iterable[Frame] | AsyncIterable[Frame], direction: FrameDirection = DOWNSTREAM
    ) -> None:
        """Queue several frames in order (from an iterable or an async iterable)."""
        if isinstance(frames, AsyncIterable):
            async for frame in frames:
                await self.queue_frame(frame, direction)
        else:
            for frame in frames:
                await self.queue_frame(frame, direction)

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
        self._submit_cancel(reason)

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
        procs = self._procs = [self._source, *self._pipeline.walk(), self._sink]
        for proc in procs:
            proc._attach(self._sched)
        if self._observers:
            self._observe()
        else:
            for proc in procs:
                proc._plain_push = "push_frame" not in vars(proc) and (
                    clone_of(type(proc).push_frame) is FrameProcessor.push_frame
                )
            flatten_links(procs)
        try:
            if self._cancel_requested:
                self._end_frame = CancelFrame(reason="cancelled before start")
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
        self._submit_cancel("task cancelled")
        fut = self._finished
        if fut is not None and not fut.done():
            await asyncio.wait((fut,), timeout=self._cancel_timeout)

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
        try:
            self._finish(self.stats.finished_by or "finished")
            stragglers = await self._sched.cancel_tasks(self._cancel_timeout)
            if stragglers:
                logger.error("%s: background tasks ignored cancellation: %s", self.name, ", ".join(stragglers))
            if self.stats.finished_by != "stop":
                await self._cleanup_processors()
            end = self._end_frame or CancelFrame(reason=self.stats.finished_by)
            await self._call_event_handler("on_pipeline_finished", end)
            for obs in list(self._observers):
                await obs.on_pipeline_finished(end)
        finally:
            # Also when the run is cancelled during its cleanup (an owner that stopped
            # waiting for it): the call's objects must not be left to the collector.
            if self.stats.finished_by != "stop":  # stopped processors stay usable
                self._detach_call()

    async def _cleanup_processors(self) -> None:
        """Each processor's ``cleanup()``, in pipeline order, each bounded by the hook timeout.

        They run one after the other in one task, not a task each: a task costs a loop
        iteration to start and one to be seen done, and on a CPU-starved loop (an
        iteration of every live call's work taking a second) a pipeline of a dozen
        processors took longer to clean up than its owner waited.
        """
        procs = [proc for proc in self._pipeline.walk() if proc._overrides("cleanup")]
        if not procs:
            return
        bound = self._sched.hook_timeout
        job = asyncio.ensure_future(self._run_cleanups(procs, bound))
        try:
            # Each cleanup is bounded; this bounds one that ignores its cancellation.
            done, _ = await asyncio.wait((job,), timeout=bound * len(procs) + bound)
        finally:
            if not job.done():
                job.cancel()
        if not done:
            logger.error("%s: a cleanup() ignored its cancellation after %g s", self.name, bound)

    async def _run_cleanups(self, procs: list[FrameProcessor], bound: float) -> None:
        for proc in procs:
            try:
                async with asyncio.timeout(bound):
                    await proc.cleanup()
            except TimeoutError:
                logger.error("%s: %s.cleanup() overran %g s", self.name, proc, bound)
            except Exception:
                logger.exception("%s: %s.cleanup() failed", self.name, proc)

    def _detach_call(self) -> None:
        """Cut the call's reference cycles (processor links, the task and its ends, kept
        routes, event handlers), so that its objects are freed by reference counting as
        soon as the last outside reference goes: nothing is left to the cycle collector."""
        self._sched.detach()
        for proc in [self._source, *self._pipeline.walk(), self._sink]:
            proc._detach()
        self._clear_event_handlers()

    # ------------------------------------------------- frames at the edges

    async def _on_downstream(self, frame: Frame) -> None:
        loop = self._loop
        assert loop is not None  # noqa: S101 - set when the run started
        self._note_activity(frame)
        cls = frame.__class__
        if cls is HeartbeatFrame:
            now = loop.time()
            self._last_heartbeat = now
            self.stats.heartbeats_received += 1
            self.stats.last_heartbeat_latency = now - frame.timestamp / 1e9  # type: ignore[attr-defined]
        elif cls is StartFrame:
            await self._on_started(frame)  # type: ignore[arg-type]
        elif cls is EndFrame:
            self._end_frame = frame
            self._finish("end")
        elif cls is StopFrame:
            self._end_frame = frame
            self._finish("stop")
        elif cls is CancelFrame:
            self._end_frame = frame
            self._finish("cancel")
        reached = self._reached_down
        if reached and isinstance(frame, reached):
            await self._call_event_handler("on_frame_reached_downstream", frame)

    async def _on_started(self, frame: StartFrame) -> None:
        loop = self._loop
        assert loop is not None  # noqa: S101 - set when the run started
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
        await self._call_event_handler("on_pipeline_started", frame)
        for obs in list(self._observers):
            await obs.on_pipeline_started()

    async def _on_upstream(self, frame: Frame) -> None:
        loop = self._loop
        assert loop is not None  # noqa: S101 - set when the run started
        self._note_activity(frame)
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
        reached = self._reached_up
        if reached and isinstance(frame, reached):
            await self._call_event_handler("on_frame_reached_upstream", frame)
