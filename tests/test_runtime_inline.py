"""Inline hops: ``inline_frames`` + ``process_inline`` run without a coroutine, keep order,
mix with async processors, and keep lifecycle, errors, pause and observers intact."""

from __future__ import annotations

import asyncio
from typing import Any

import flowcat.frames as F
from _helpers import texts
from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineTask
from flowcat.runtime import BaseObserver
from flowcat.testing import CaptureProcessor, run_virtual

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Upper(FrameProcessor):
    """Inline for text: upper-cases it (a new frame); drops "drop"; defers "slow"."""

    inline_frames = (F.TextFrame,)

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.async_seen: list[str] = []
        self.starts = 0

    async def start(self, frame: F.StartFrame) -> None:
        self.starts += 1

    def process_inline(self, frame: F.Frame, direction: FrameDirection) -> Any:
        text = frame.text.rstrip("!")  # type: ignore[attr-defined]
        self.inline.append(text)
        if text == "drop":
            return None
        if text == "boom":
            raise ValueError("inline failure")
        if text == "slow":
            return NotImplemented
        return F.TextFrame(frame.text.upper())  # type: ignore[attr-defined]

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.async_seen.append(type(frame).__name__ if not isinstance(frame, F.TextFrame) else frame.text)
        if isinstance(frame, F.TextFrame) and frame.text.startswith("slow"):
            await asyncio.sleep(0.5)  # suspends the chain: later frames must wait
            await self.push_frame(F.TextFrame("SLOW"), direction)
            return
        await self.push_frame(frame, direction)


class Tag(FrameProcessor):
    """Async (pipecat-style) processor appending a mark to text."""

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, F.TextFrame):
            frame = F.TextFrame(frame.text + "!")
        await self.push_frame(frame, direction)


async def _run(
    procs: list[FrameProcessor], frames: list[F.Frame], **kw: Any
) -> tuple[PipelineTask, list[F.Frame]]:
    sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
    task = PipelineTask(Pipeline([*procs, sink]), **kw)
    runner = asyncio.ensure_future(task.run())
    for f in frames:
        await task.queue_frame(f)
    await task.stop_when_done()
    await asyncio.wait_for(runner, 10)
    return task, sink.frames


def test_inline_frames_skip_process_frame_and_lifecycle_still_runs() -> None:
    up = Upper()
    _, frames = run_virtual(_run([up, Tag()], [F.TextFrame("a"), F.TextFrame("drop"), F.TextFrame("b")]))
    assert texts(frames) == ["A!", "B!"]  # new frames passed on; "drop" stopped inline
    assert up.inline == ["a", "drop", "b"]
    # Start and End went through process_frame (the start hook ran); text never did.
    assert up.starts == 1
    assert up.async_seen == ["StartFrame", "EndFrame"]
    assert isinstance(frames[-1], F.EndFrame)


def test_not_implemented_defers_to_process_frame_and_order_holds_across_a_suspension() -> None:
    up = Upper()
    sent = [F.TextFrame("a"), F.TextFrame("slow"), F.TextFrame("b"), F.TextFrame("c")]
    _, frames = run_virtual(_run([Tag(), up, Tag()], sent))
    # "slow" suspended in process_frame for 0.5 s; "b" and "c" (inline) still come after it.
    assert texts(frames) == ["A!!", "SLOW!", "B!!", "C!!"]
    assert up.inline == ["a", "slow", "b", "c"]
    assert up.async_seen == ["StartFrame", "slow!", "EndFrame"]


def test_exception_in_process_inline_is_reported_upstream_and_the_call_goes_on() -> None:
    up = Upper()
    errors: list[F.ErrorFrame] = []

    async def main() -> list[F.Frame]:
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        task = PipelineTask(Pipeline([up, sink]))

        @task.event_handler("on_pipeline_error")
        async def _on_error(task: PipelineTask, frame: F.ErrorFrame) -> None:
            errors.append(frame)

        runner = asyncio.ensure_future(task.run())
        for t in ("a", "boom", "b"):
            await task.queue_frame(F.TextFrame(t))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)
        return sink.frames

    frames = run_virtual(main())
    assert texts(frames) == ["A", "B"]
    assert len(errors) == 1
    assert errors[0].processor is up and "inline failure" in errors[0].error


def test_subclass_overriding_process_frame_sees_every_frame() -> None:
    class Counting(Upper):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)

    assert Counting.inline_frames == ()
    c = Counting()
    _, frames = run_virtual(_run([c], [F.TextFrame("x")]))
    assert c.inline == []  # never called inline
    assert "x" in c.async_seen
    assert texts(frames) == ["x"]


def test_paused_inline_processor_holds_frames_in_order() -> None:
    class GatedUpper(Upper):
        async def start(self, frame: F.StartFrame) -> None:
            self.pause_processing_frames()

    async def main() -> list[F.Frame]:
        g = GatedUpper()
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        task = PipelineTask(Pipeline([g, sink]))
        runner = asyncio.ensure_future(task.run())
        for t in ("a", "b"):
            await task.queue_frame(F.TextFrame(t))
        await asyncio.sleep(0.2)
        assert texts(sink.frames) == []
        g.resume_processing_frames()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)
        return sink.frames

    assert texts(run_virtual(main())) == ["A", "B"]


def test_observers_see_every_hop_of_inline_processors() -> None:
    class Seen(BaseObserver):
        frame_types = (F.TextFrame,)

        def __init__(self) -> None:
            self.hops: list[tuple[str, str]] = []

        async def on_push_frame(self, data: Any) -> None:
            self.hops.append((type(data.source).__name__, data.frame.text))

    obs = Seen()
    up = Upper()
    _, frames = run_virtual(_run([up, Tag()], [F.TextFrame("a")], observers=[obs]))
    assert texts(frames) == ["A!"]
    # Same result as unobserved, and every hop was reported.
    assert up.inline == ["a"]
    assert obs.hops == [
        ("TaskSource", "a"),
        ("PipelineSource", "a"),
        ("Upper", "A"),  # the inline result, pushed through Upper's observed push_frame
        ("Tag", "A!"),
        ("CaptureProcessor", "A!"),
        ("Pipeline", "A!"),
    ]


def test_upstream_frames_end_inline_at_the_task_source() -> None:
    class Pusher(FrameProcessor):
        inline_frames = (F.Frame,)

        def process_inline(self, frame: F.Frame, direction: FrameDirection) -> Any:
            return frame

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, F.StartFrame):
                # upstream: a frame the task only notes, then one it acts on
                await self.push_frame(F.BotSpeakingFrame(), UP)
                await self.push_frame(F.EndTaskFrame(reason="done"), UP)

    reached: list[str] = []

    async def main() -> None:
        task = PipelineTask(Pipeline([Pusher()]))
        runner = asyncio.ensure_future(task.run())
        await asyncio.wait_for(runner, 10)
        reached.append(task.state)

    run_virtual(main())
    assert reached == ["finished"]


def test_interruption_during_a_pump_delivers_queued_uninterruptible_frames_once() -> None:
    class Trigger(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            sched = self._sched
            assert sched is not None
            if isinstance(frame, F.TextFrame) and frame.text == "go":
                # Queued behind this chain: a system frame that interrupts, then data.
                sched.submit(self, F.UserStartedSpeakingFrame(), DOWN, to_self=True)
                keep = F.TextFrame("keep")
                keep.interruptible = False
                sched.submit(self, keep, DOWN)
                sched.submit(self, F.TextFrame("dropped"), DOWN)
                return
            await self.push_frame(frame, direction)
            if isinstance(frame, F.UserStartedSpeakingFrame):
                await self.broadcast_interruption()

    async def main() -> list[F.Frame]:
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        task = PipelineTask(Pipeline([Trigger(), sink]))
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("go"))
        await sink.wait_for(F.TextFrame)
        await asyncio.sleep(0.5)  # virtual time: any second delivery would have happened
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)
        return sink.frames

    frames = run_virtual(main())
    assert [type(f).__name__ for f in frames] == [
        "UserStartedSpeakingFrame",
        "InterruptionFrame",
        "TextFrame",
        "EndFrame",
    ]
    assert texts(frames) == ["keep"]  # once; "dropped" was dropped by the interruption


def test_the_echo_apps_differ_only_in_inline_hops() -> None:
    from flowcat.server._apps import CallInfo, async_app, default_app

    call = CallInfo(carrier="raw")
    inline, plain = default_app(call), async_app(call)
    assert all(type(p).inline_frames for p in inline)
    assert all(type(p).inline_frames == () and type(p)._inline_table is None for p in plain)
    assert [type(p).__mro__[1] for p in plain] == [type(p) for p in inline]  # same code otherwise

    async def echo(procs: list[FrameProcessor]) -> list[F.Frame]:
        _, frames = await _run(procs, [F.InputAudioRawFrame(b"\x01\x02" * 80, 8000), F.TextFrame("t")])
        return frames

    a, b = run_virtual(echo(inline)), run_virtual(echo(plain))
    assert [type(f) for f in a] == [type(f) for f in b] == [F.OutputAudioRawFrame, F.TextFrame, F.EndFrame]
    assert a[0].audio == b[0].audio == b"\x01\x02" * 80  # type: ignore[attr-defined]


def test_kept_routes_follow_pauses_and_frame_classes() -> None:
    """The route a pushing processor keeps is replaced when the frame class changes and
    forgotten when a processor on it pauses or resumes: frames are held and delivered
    in order exactly as without a kept route."""

    class Log(FrameProcessor):
        inline_frames = (F.Frame,)

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def process_inline(self, frame: F.Frame, direction: FrameDirection) -> Any:
            self.seen.append(getattr(frame, "text", type(frame).__name__))
            return frame

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)  # lifecycle frames only
            await self.push_frame(frame, direction)

    async def main() -> tuple[list[str], list[F.Frame]]:
        first, log = Upper(), Log()
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        task = PipelineTask(Pipeline([first, log, Tag(), sink]))
        runner = asyncio.ensure_future(task.run())

        async def send(frame: F.Frame) -> None:
            await task.queue_frame(frame)
            await asyncio.sleep(0.05)

        await send(F.TextFrame("a"))
        await send(F.InputAudioRawFrame(b"\x00\x01" * 80, 8000))  # another class: another route
        await send(F.TextFrame("b"))
        assert log.seen == ["A", "InputAudioRawFrame", "B"]
        log.pause_processing_frames()
        await send(F.TextFrame("c"))
        await send(F.TextFrame("d"))
        assert log.seen[3:] == [] and texts(sink.frames) == ["A!", "B!"]  # held at the paused hop
        log.resume_processing_frames()
        await send(F.TextFrame("e"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)
        return log.seen, sink.frames

    seen, frames = run_virtual(main())
    assert seen == ["A", "InputAudioRawFrame", "B", "C", "D", "E"]
    assert texts(frames) == ["A!", "B!", "C!", "D!", "E!"]
    assert [type(f) for f in frames if not isinstance(f, F.TextFrame)] == [F.InputAudioRawFrame, F.EndFrame]


def test_system_frames_cross_a_paused_processor_inline() -> None:
    """A paused processor holds data frames but not system ones: input audio goes on
    through it (and the inline hops after it) with plain calls, while text waits."""
    from flowcat.runtime import _inline

    class Pass(FrameProcessor):
        inline_frames = (F.InputAudioRawFrame,)

        def __init__(self) -> None:
            super().__init__()
            self.inline = 0
            self.async_calls: list[str] = []

        def process_inline(self, frame: F.Frame, direction: FrameDirection) -> Any:
            self.inline += 1
            return frame

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            self.async_calls.append(type(frame).__name__)
            await self.push_frame(frame, direction)

    async def main() -> tuple[Pass, Pass, list[F.Frame], tuple[Any, ...]]:
        paused, after = Pass(), Pass()
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        task = PipelineTask(Pipeline([paused, after, sink]))
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(0.05)
        paused.pause_processing_frames()
        await task.queue_frame(F.TextFrame("held"))
        for _ in range(3):
            await task.queue_frame(F.InputAudioRawFrame(b"\x00\x01" * 80, 8000))
            await asyncio.sleep(0.01)
        route = _inline._route(paused._up, F.InputAudioRawFrame)  # as the input would push it
        got = list(sink.frames)
        paused.resume_processing_frames()
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)
        return paused, after, got, route

    paused, after, got, route = run_virtual(main())
    assert [type(f) for f in got] == [F.InputAudioRawFrame] * 3  # the text is still held
    assert paused.inline == after.inline == 3
    assert "InputAudioRawFrame" not in paused.async_calls + after.async_calls
    hops = [fn.__self__ for fn in route[1]]
    assert paused in hops and after in hops  # the kept route runs through the paused hop
