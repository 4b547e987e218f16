"""Interruptions: queued interruptible frames dropped, uninterruptible ones kept, work cancelled."""

from __future__ import annotations

import asyncio

import flowcat.frames as F
from _helpers import Blocking, Passthrough, texts
from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineTask
from flowcat.testing import CaptureProcessor, run_virtual

DOWN = FrameDirection.DOWNSTREAM


def _task(*procs: FrameProcessor) -> tuple[PipelineTask, CaptureProcessor]:
    sink = CaptureProcessor(DOWN, ignore=[F.StartFrame], name="sink")
    return PipelineTask(Pipeline([*procs, sink])), sink


def test_interruption_drops_queued_interruptible_and_keeps_uninterruptible() -> None:
    async def main() -> list[F.Frame]:
        blocking = Blocking()
        task, sink = _task(Passthrough(), blocking, Passthrough())
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("block"))
        await blocking.entered.wait()
        # These queue behind the suspended chain:
        await task.queue_frame(F.TextFrame("queued-1"))
        await task.queue_frame(F.FunctionCallResultFrame("f", "call-1", {}, "result"))
        await task.queue_frame(F.TextFrame("queued-2"))
        await task.queue_frame(F.LLMUpdateSettingsFrame(settings={"temperature": 0.1}))
        assert task.scheduler.lane_sizes()[1] == 4
        await task.queue_frame(F.InterruptionFrame())
        await task.queue_frame(F.TextFrame("after"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        assert blocking.cancelled, "the chain blocked on an interruptible frame must be cancelled"
        assert task.scheduler.stats.interrupted_dropped == 2
        return sink.frames

    frames = run_virtual(main())
    assert [type(f) for f in frames] == [
        F.InterruptionFrame,
        F.FunctionCallResultFrame,
        F.LLMUpdateSettingsFrame,
        F.TextFrame,
        F.EndFrame,
    ]
    assert texts(frames) == ["after"]


def test_end_and_stop_survive_interruption() -> None:
    async def main(terminal: F.Frame) -> list[F.Frame]:
        blocking = Blocking()
        task, sink = _task(blocking)
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("block"))
        await blocking.entered.wait()
        await task.queue_frame(F.TextFrame("dropped"))
        await task.queue_frame(terminal)
        await task.queue_frame(F.InterruptionFrame())
        await asyncio.wait_for(runner, 5)
        return sink.frames

    for terminal in (F.EndFrame(), F.StopFrame()):
        frames = run_virtual(main(terminal))
        assert [type(f) for f in frames] == [F.InterruptionFrame, type(terminal)]


def test_uninterruptible_frame_in_flight_is_not_cancelled() -> None:
    class SlowResult(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.FunctionCallResultFrame):
                await self.release.wait()
            await self.push_frame(frame, direction)

    async def main() -> list[F.Frame]:
        slow = SlowResult()
        task, sink = _task(slow)
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.FunctionCallResultFrame("f", "1", {}, 42))
        await asyncio.sleep(0.01)
        await task.queue_frame(F.InterruptionFrame())
        await asyncio.sleep(0.01)
        slow.release.set()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return sink.frames

    frames = run_virtual(main())
    assert [type(f) for f in frames] == [F.InterruptionFrame, F.FunctionCallResultFrame, F.EndFrame]


def test_on_interruption_hook_runs_once_per_processor_and_background_work_is_cancelled() -> None:
    class Speaker(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.interruptions = 0
            self.work: asyncio.Task[None] | None = None
            self.keep: asyncio.Task[None] | None = None
            self.late_pushed = asyncio.Event()

        async def on_interruption(self) -> None:
            self.interruptions += 1

        async def _speak(self) -> None:
            await asyncio.sleep(10)
            await self.push_frame(F.TextFrame("stale"))

        async def _keep(self) -> None:
            await asyncio.sleep(1)
            await self.push_frame(F.TextFrame("old-generation"))
            await self.push_frame(F.FunctionCallResultFrame("f", "1", {}, "kept"))
            self.late_pushed.set()

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.LLMRunFrame):
                self.work = self.create_task(self._speak(), cancel_on_interruption=True)
                self.keep = self.create_task(self._keep(), cancel_on_interruption=False)
                return
            await self.push_frame(frame, direction)

    async def main() -> tuple[Speaker, list[F.Frame]]:
        speaker = Speaker()
        task, sink = _task(speaker, Passthrough())
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.LLMRunFrame())
        await asyncio.sleep(0.1)
        await task.queue_frame(F.InterruptionFrame())
        await speaker.late_pushed.wait()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return speaker, sink.frames

    speaker, frames = run_virtual(main())
    assert speaker.interruptions == 1
    assert speaker.work is not None and speaker.work.cancelled()
    # The surviving old-generation task's interruptible push is dropped, its result is kept.
    assert [type(f) for f in frames] == [F.InterruptionFrame, F.FunctionCallResultFrame, F.EndFrame]


def test_broadcast_interruption_bumps_generation_once() -> None:
    class Barger(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.UserStartedSpeakingFrame):
                await self.broadcast_interruption()
            await self.push_frame(frame, direction)

    async def main() -> tuple[int, list[F.Frame], list[F.Frame]]:
        up = CaptureProcessor(FrameDirection.UPSTREAM, name="up")
        task, sink = _task(up, Barger())
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.UserStartedSpeakingFrame())
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return task.scheduler.generation, sink.frames, up.frames

    generation, down, up = run_virtual(main())
    assert generation == 1
    down_i = [f for f in down if isinstance(f, F.InterruptionFrame)]
    up_i = [f for f in up if isinstance(f, F.InterruptionFrame)]
    assert len(down_i) == 1 and len(up_i) == 1
    assert down_i[0].id != up_i[0].id
    assert down_i[0].broadcast_sibling_id == up_i[0].id
    assert up_i[0].broadcast_sibling_id == down_i[0].id


def test_unbound_task_and_the_tasks_it_starts_push_past_interruptions() -> None:
    """``create_task(generation_bound=False)`` (a connection's loop) belongs to no generation,
    nor does a task it starts (the receive loop a connect() starts): their pushes after an
    interruption go through; a bound task's are dropped as stale."""

    class Connection(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.go = asyncio.Event()
            self.done = asyncio.Event()

        async def _receive_loop(self) -> None:
            await self.go.wait()
            await self.push_frame(F.TextFrame("from-receive-loop"))
            self.done.set()

        async def _connection(self) -> None:
            self.create_task(self._receive_loop())  # inherits: unbound
            await self.go.wait()
            await self.push_frame(F.TextFrame("from-connection"))

        async def _bound(self) -> None:
            await self.go.wait()
            await self.push_frame(F.TextFrame("stale"))

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.LLMRunFrame):
                self.create_task(self._connection(), generation_bound=False)
                self.create_task(self._bound())
                return
            await self.push_frame(frame, direction)

    async def main() -> list[F.Frame]:
        conn = Connection()
        task, sink = _task(conn)
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.LLMRunFrame())
        await asyncio.sleep(0.1)
        await task.queue_frame(F.InterruptionFrame())
        await asyncio.sleep(0.1)
        conn.go.set()
        await conn.done.wait()
        await asyncio.sleep(0.1)
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return sink.frames

    frames = run_virtual(main())
    assert sorted(texts(frames)) == ["from-connection", "from-receive-loop"]
