"""Lifecycle: Start first, pause keeps order, errors, timeouts, cancel, heartbeats, idle."""

from __future__ import annotations

import asyncio

import pytest

import flowcat.frames as F
from _helpers import Passthrough, texts
from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.testing import CaptureProcessor, SleepFrame, run_test, run_virtual

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Recorder(FrameProcessor):
    """Records (type, direction) of everything it processes."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(name=name)
        self.log = log

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.log.append((self.name, type(frame).__name__))
        await self.push_frame(frame, direction)


class SlowStart(Passthrough):
    async def start(self, frame: F.StartFrame) -> None:
        await asyncio.sleep(1.0)  # e.g. connecting to a service


def test_start_frame_reaches_every_processor_before_anything_else() -> None:
    log: list[tuple[str, str]] = []

    async def main() -> None:
        task = PipelineTask(Pipeline([Recorder("a", log), SlowStart(), Recorder("b", log)]))
        runner = asyncio.ensure_future(task.run())
        # Queued before the pipeline started (the transport is already reading):
        await task.queue_frame(F.InputAudioRawFrame(b"\0\0", 16000))
        await task.queue_frame(F.TextFrame("early"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)

    run_virtual(main())
    for name in ("a", "b"):
        seen = [t for n, t in log if n == name]
        assert seen == ["StartFrame", "InputAudioRawFrame", "TextFrame", "EndFrame"]


def test_paused_processor_keeps_order_until_ready() -> None:
    class Gate(Passthrough):
        async def start(self, frame: F.StartFrame) -> None:
            self.pause_processing_frames()

    async def main() -> list[F.Frame]:
        gate = Gate()
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        task = PipelineTask(Pipeline([gate, sink]))
        runner = asyncio.ensure_future(task.run())
        for i in range(5):
            await task.queue_frame(F.TextFrame(f"t{i}"))
        await task.queue_frame(F.UserStartedSpeakingFrame())  # system: not held
        await asyncio.sleep(0.5)
        assert texts(sink.frames) == []
        assert [type(f) for f in sink.frames] == [F.UserStartedSpeakingFrame]
        await task.queue_frame(F.TextFrame("t5"))
        gate.resume_processing_frames()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return sink.frames

    frames = run_virtual(main())
    assert texts(frames) == [f"t{i}" for i in range(6)]
    assert isinstance(frames[-1], F.EndFrame)


def test_exception_becomes_error_frame_upstream_and_pipeline_lives_on() -> None:
    class Fragile(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            if isinstance(frame, F.TextFrame) and frame.text == "boom":
                raise ValueError("bad input")
            await super().process_frame(frame, direction)

    async def main() -> tuple[list[F.Frame], list[F.Frame], list[F.ErrorFrame]]:
        errors: list[F.ErrorFrame] = []
        fragile = Fragile(name="fragile")
        down, up = await run_test(
            fragile,
            frames_to_send=[F.TextFrame("a"), F.TextFrame("boom"), F.TextFrame("b")],
            expected_down_frames=[F.TextFrame, F.TextFrame],
            expected_up_frames=[F.ErrorFrame],
        )
        errors.extend(f for f in up if isinstance(f, F.ErrorFrame))
        return down, up, errors

    down, _, errors = run_virtual(main())
    assert texts(down) == ["a", "b"]
    assert errors[0].processor.name == "fragile"
    assert "bad input" in errors[0].error and not errors[0].fatal


def test_fatal_error_cancels_task() -> None:
    class Fatal(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                await self.push_error("cannot continue", fatal=True)

    async def main() -> str | None:
        task = PipelineTask(Pipeline([Fatal()]))
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("x"))
        await asyncio.wait_for(runner, 5)
        return task.stats.finished_by

    assert run_virtual(main()) == "cancel"


def test_end_with_stuck_processor_finishes_within_bound_and_names_it() -> None:
    class Stuck(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            if isinstance(frame, F.EndFrame):
                await asyncio.Event().wait()  # never set
            await super().process_frame(frame, direction)

    async def main() -> tuple[float, PipelineTask, list[F.ErrorFrame]]:
        errors: list[F.ErrorFrame] = []
        task = PipelineTask(Pipeline([Passthrough(), Stuck(name="stuck-one")]), end_timeout_secs=3.0)
        task.add_event_handler("on_pipeline_error", lambda _t, e: errors.append(e))
        loop = asyncio.get_running_loop()
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(0)
        t0 = loop.time()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 30)
        await asyncio.sleep(0)
        return loop.time() - t0, task, errors

    elapsed, task, errors = run_virtual(main())
    assert 3.0 <= elapsed < 3.5
    assert task.stats.stuck_processors == ["stuck-one"]
    assert task.stats.finished_by == "cancel"
    assert errors and "stuck-one" in errors[0].error


def test_stuck_stop_hook_is_bounded_and_reported() -> None:
    class HangingStop(Passthrough):
        async def stop(self, frame: F.EndFrame) -> None:
            await asyncio.Event().wait()

    async def main() -> tuple[float, PipelineTask, list[F.Frame]]:
        task = PipelineTask(Pipeline([HangingStop(name="hanging")]), hook_timeout_secs=2.0)
        up: list[F.Frame] = []
        task.add_event_handler("on_pipeline_error", lambda _t, e: up.append(e))
        loop = asyncio.get_running_loop()
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(0)
        t0 = loop.time()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 30)
        return loop.time() - t0, task, up

    elapsed, task, errors = run_virtual(main())
    assert elapsed == pytest.approx(2.0, abs=0.1)
    assert task.stats.finished_by == "end"
    assert task.scheduler.stats.hook_timeouts == 1
    assert any("hanging.stop()" in e.error for e in errors)  # type: ignore[attr-defined]


def test_cancel_before_start_does_not_deadlock() -> None:
    async def main() -> tuple[str | None, str | None]:
        idle = PipelineTask(Pipeline([Passthrough()]))
        await idle.cancel()
        await asyncio.wait_for(idle.run(), 1)

        class NeverStarts(Passthrough):
            async def start(self, frame: F.StartFrame) -> None:
                await asyncio.Event().wait()

        stuck = PipelineTask(Pipeline([NeverStarts(), Passthrough()]), hook_timeout_secs=1000)
        runner = asyncio.ensure_future(stuck.run())
        await asyncio.sleep(0.1)
        await stuck.cancel()
        await asyncio.wait_for(runner, 1)
        return idle.stats.finished_by, stuck.stats.finished_by

    assert run_virtual(main()) == ("cancelled before start", "cancel")


def test_start_timeout_cancels_and_reports() -> None:
    class NeverStarts(Passthrough):
        async def start(self, frame: F.StartFrame) -> None:
            await asyncio.Event().wait()

    async def main() -> PipelineTask:
        task = PipelineTask(
            Pipeline([NeverStarts(name="never")]), start_timeout_secs=5, hook_timeout_secs=100
        )
        await asyncio.wait_for(task.run(), 10)
        return task

    task = run_virtual(main())
    assert task.stats.finished_by == "cancel"
    assert task.stats.stuck_processors == ["never"]


def test_idle_timeout_cancels_after_inactivity() -> None:
    async def main() -> tuple[float, int, str | None]:
        fired: list[float] = []
        task = PipelineTask(Pipeline([Passthrough()]), idle_timeout_secs=300)
        loop = asyncio.get_running_loop()
        task.add_event_handler("on_idle_timeout", lambda _t: fired.append(loop.time()))
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(100)
        await task.queue_frame(F.BotSpeakingFrame())  # activity at t=100
        await asyncio.sleep(250)
        assert not task.has_finished()  # only 250 s since the activity
        await asyncio.wait_for(runner, 1000)
        await asyncio.sleep(0)
        return loop.time(), len(fired), task.stats.finished_by

    end, fired, how = run_virtual(main())
    assert end == pytest.approx(400, abs=1)
    assert fired == 1 and how == "cancel"


def test_idle_timeout_without_cancel_keeps_running() -> None:
    async def main() -> tuple[int, bool]:
        fired: list[int] = []
        task = PipelineTask(Pipeline([Passthrough()]), idle_timeout_secs=10, cancel_on_idle_timeout=False)
        task.add_event_handler("on_idle_timeout", lambda _t: fired.append(1))
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(35)
        alive = not task.has_finished()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return len(fired), alive

    assert run_virtual(main()) == (3, True)


def test_heartbeats_flow_and_stalls_are_reported() -> None:
    class Stall(Passthrough):
        stalled = False

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            if isinstance(frame, F.HeartbeatFrame) and self.stalled:
                return  # swallow heartbeats
            await super().process_frame(frame, direction)

    async def main() -> tuple[int, int, list[float]]:
        stall = Stall()
        sink = CaptureProcessor(DOWN)
        params = PipelineParams(
            enable_heartbeats=True, heartbeats_period_secs=1.0, heartbeats_monitor_secs=5.0
        )
        task = PipelineTask(Pipeline([stall, sink]), params=params)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        timeouts: list[float] = []
        task.add_event_handler("on_heartbeat_timeout", lambda _t: timeouts.append(loop.time() - t0))
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(10.5)
        beats = task.stats.heartbeats_received
        stall.stalled = True
        await asyncio.sleep(17)  # the stall lasts: a warning every heartbeats_monitor_secs
        stall.stalled = False
        await asyncio.sleep(10)  # heartbeats flow again: no more warnings
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return beats, sum(isinstance(f, F.HeartbeatFrame) for f in sink.frames), timeouts

    beats, seen, timeouts = run_virtual(main())
    assert beats == 10 and seen == 10 + 10
    # Last heartbeat at 10 s; warned at 15, 20 and 25 s (pipecat repeats it while stalled).
    assert [round(t) for t in timeouts] == [15, 20, 25]


def test_upstream_end_task_frame_ends_pipeline() -> None:
    class Hangup(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame) and frame.text == "bye":
                await self.push_frame(F.EndTaskFrame(), UP)

    async def main() -> str | None:
        task = PipelineTask(Pipeline([Hangup()]))
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("bye"))
        await asyncio.wait_for(runner, 5)
        return task.stats.finished_by

    assert run_virtual(main()) == "end"


def test_broadcast_siblings_get_fresh_ids() -> None:
    class Broadcaster(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                await self.broadcast_frame(F.UserStartedSpeakingFrame, emulated=True)
                await self.broadcast_frame_instance(F.TTSSpeakFrame("hi"))

    async def main() -> tuple[list[F.Frame], list[F.Frame]]:
        source = F.TextFrame("go")
        down, up = await run_test(
            Broadcaster(),
            frames_to_send=[source],
            expected_down_frames=[F.TextFrame, F.UserStartedSpeakingFrame, F.TTSSpeakFrame],
            expected_up_frames=[F.UserStartedSpeakingFrame, F.TTSSpeakFrame],
        )
        return down, up

    down, up = run_virtual(main())
    for d, u in zip(down[1:3], up, strict=True):
        assert d.id != u.id
        assert d.broadcast_sibling_id == u.id and u.broadcast_sibling_id == d.id
    assert down[1].emulated and up[0].emulated  # type: ignore[attr-defined]
    assert up[1].text == "hi"  # type: ignore[attr-defined]


def test_run_test_sleep_frame_uses_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await run_test(
            Passthrough(), frames_to_send=[SleepFrame(sleep=120)], expected_down_frames=[], timeout=300
        )
        return loop.time() - t0

    assert run_virtual(main()) == pytest.approx(120, abs=0.1)


def test_task_cannot_run_twice() -> None:
    from flowcat.errors import PipelineStateError

    async def main() -> None:
        task = PipelineTask(Pipeline([Passthrough()]))
        await task.cancel()
        await task.run()
        with pytest.raises(PipelineStateError, match='state "finished"'):
            await task.run()

    run_virtual(main())


def test_each_processor_class_runs_its_own_push_frame_code() -> None:
    # Attribute caches are per code object: every class that inherits push_frame gets
    # its own copy (grandchildren too), and an override is never replaced.
    from flowcat.runtime import FrameProcessor as Base

    class A(Base):
        pass

    class B(A):
        pass

    class C(Base):
        async def push_frame(self, frame, direction=None):  # type: ignore[no-untyped-def]
            return None

    class D(C):
        pass

    codes = {id(Base.push_frame.__code__), id(A.push_frame.__code__), id(B.push_frame.__code__)}
    assert len(codes) == 3  # distinct objects (code objects compare equal by content)
    assert A.push_frame.__doc__ == Base.push_frame.__doc__
    assert D.push_frame is C.push_frame
