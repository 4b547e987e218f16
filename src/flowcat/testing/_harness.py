"""``run_test``: drive one processor with frames and check what comes out each way."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from ..frames import (
    EndFrame,
    Frame,
    HeartbeatFrame,
    StartFrame,
    SystemFrame,
    frame_dataclass,
)
from ..runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask

__all__ = ["CaptureProcessor", "SleepFrame", "run_test"]

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM


@frame_dataclass
class SleepFrame(SystemFrame):
    """Not sent: tells :func:`run_test` to wait ``sleep`` seconds (virtual or real)."""

    sleep: float = 0.1


@frame_dataclass
class _SendUpstream(SystemFrame):
    frame: Frame = field(default_factory=Frame)


def upstream(frame: Frame) -> Frame:
    """Mark ``frame`` in ``frames_to_send`` to be sent upstream from the end."""
    return _SendUpstream(frame=frame)


class CaptureProcessor(FrameProcessor):
    """Records the frames that reach it in one direction, and passes everything on.

    Args:
        direction: Which direction to record.
        ignore: Frame types not recorded.
    """

    def __init__(self, direction: FrameDirection, ignore: Sequence[type[Frame]] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self.direction = direction
        self.ignore = tuple(ignore)
        self.frames: list[Frame] = []
        self._event = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is self.direction and not isinstance(frame, self.ignore):
            self.frames.append(frame)
            self._event.set()
        await self.push_frame(frame, direction)

    async def wait_for(self, frame_type: type[Frame], timeout: float = 5.0) -> Frame:
        """Wait (bounded) until a frame of ``frame_type`` has been recorded."""

        async def _wait() -> Frame:
            while True:
                for f in self.frames:
                    if isinstance(f, frame_type):
                        return f
                self._event.clear()
                await self._event.wait()

        return await asyncio.wait_for(_wait(), timeout)


async def run_test(
    processor: FrameProcessor,
    *,
    frames_to_send: Sequence[Frame],
    expected_down_frames: Sequence[type[Frame]] | None = None,
    expected_up_frames: Sequence[type[Frame]] | None = None,
    ignore_start: bool = True,
    ignore_heartbeats: bool = True,
    send_end_frame: bool = True,
    params: PipelineParams | None = None,
    timeout: float = 30.0,
    **task_kwargs: Any,
) -> tuple[list[Frame], list[Frame]]:
    """Put ``processor`` between two capture processors, send frames, compare types.

    Args:
        processor: The processor (or pipeline) under test.
        frames_to_send: Frames queued in order; a :class:`SleepFrame` waits instead.
        expected_down_frames: Frame types expected to leave downstream, in order
            (None: not checked).
        expected_up_frames: Frame types expected to leave upstream, in order.
        ignore_start: Leave the StartFrame out of the captured frames.
        ignore_heartbeats: Leave HeartbeatFrames out.
        send_end_frame: Queue an EndFrame at the end (else cancel the task).
        params: Pipeline parameters.
        timeout: Bound on the whole run (s, event-loop time).
        **task_kwargs: Passed to :class:`~flowcat.PipelineTask`.

    Returns:
        The frames captured downstream and upstream (EndFrame included downstream).

    Raises:
        AssertionError: A sequence differs from the expected one.
    """
    ignore: list[type[Frame]] = [HeartbeatFrame] if ignore_heartbeats else []
    if ignore_start:
        ignore.append(StartFrame)
    up = CaptureProcessor(UPSTREAM, ignore, name="capture-up")
    down = CaptureProcessor(DOWNSTREAM, ignore, name="capture-down")
    task = PipelineTask(Pipeline([up, processor, down]), params=params, **task_kwargs)

    async def feed() -> None:
        await _wait_started(task)
        for frame in frames_to_send:
            if isinstance(frame, SleepFrame):
                await asyncio.sleep(frame.sleep)
            elif isinstance(frame, _SendUpstream):
                await task.queue_frame(frame.frame, UPSTREAM)
            else:
                await task.queue_frame(frame)
        if send_end_frame:
            await task.queue_frame(EndFrame())
        else:
            await task.cancel()

    feeder = asyncio.ensure_future(feed())
    try:
        await asyncio.wait_for(task.run(), timeout)
    finally:
        if not feeder.done():
            feeder.cancel()
    if feeder.done() and not feeder.cancelled() and feeder.exception() is not None:
        raise feeder.exception()  # type: ignore[misc]

    down_frames = down.frames
    up_frames = up.frames
    if expected_down_frames is not None:
        _assert_types("downstream", down_frames, expected_down_frames, send_end_frame)
    if expected_up_frames is not None:
        _assert_types("upstream", up_frames, expected_up_frames, False)
    return down_frames, up_frames


async def _wait_started(task: PipelineTask) -> None:
    started = asyncio.Event()
    task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
    await started.wait()


def _assert_types(
    where: str, frames: Sequence[Frame], expected: Sequence[type[Frame]], strip_end: bool
) -> None:
    got = list(frames)
    if strip_end and got and isinstance(got[-1], EndFrame) and (not expected or expected[-1] is not EndFrame):
        got = got[:-1]
    got_types = [type(f) for f in got]
    ok = len(got_types) == len(expected) and all(
        isinstance(f, t) for f, t in zip(got, expected, strict=False)
    )
    if not ok:
        raise AssertionError(
            f"{where} frames differ:\n  expected {[t.__name__ for t in expected]}\n"
            f"  got      {[t.__name__ for t in got_types]}"
        )
