"""PipelineTask events and run-time controls with pipecat's signatures.

Reference behaviour: pipecat 1.14's ``PipelineWorker`` (``pipecat/pipeline/worker.py``)
and its tests: handlers get the task and the frame; ``on_pipeline_finished`` gets
the End/Stop/Cancel frame; ``on_frame_reached_*`` fire only for the filtered types;
observers can be added and removed while the task runs; ``queue_frames`` takes a
direction and async iterables.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import flowcat.frames as F
from _helpers import Passthrough, texts
from flowcat import BaseObserver, FrameDirection, FramePushed, Pipeline, PipelineTask
from flowcat.testing import CaptureProcessor, run_virtual

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


def _run(task: PipelineTask) -> asyncio.Future[None]:
    return asyncio.ensure_future(task.run())


async def _started(task: PipelineTask) -> asyncio.Future[None]:
    """Run ``task`` and wait until its StartFrame has reached the end."""
    started = asyncio.Event()
    task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
    runner = _run(task)
    await asyncio.wait_for(started.wait(), 5)
    return runner


def test_started_and_finished_get_the_task_and_the_frame() -> None:
    async def main() -> list[tuple[str, Any, Any]]:
        proc = Passthrough()
        task = PipelineTask(Pipeline([proc]))
        seen: list[tuple[str, Any, Any]] = []
        task.add_event_handler("on_pipeline_started", lambda t, f: seen.append(("started", t, f)))
        task.add_event_handler("on_pipeline_finished", lambda t, f: seen.append(("finished", t, f)))
        runner = _run(task)
        await task.queue_frame(F.EndFrame(reason="bye"))
        await asyncio.wait_for(runner, 5)
        assert seen[0][2] is proc.start_frame  # the very StartFrame the processors got
        return seen

    seen = run_virtual(main())
    assert [(what, type(f).__name__) for what, _, f in seen] == [
        ("started", "StartFrame"),
        ("finished", "EndFrame"),
    ]
    assert all(isinstance(t, PipelineTask) for _, t, _ in seen)
    assert seen[1][2].reason == "bye"


def _finished_frame(how: str) -> F.Frame:
    class Stopper(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                await self.push_frame(F.StopTaskFrame(), UP)

    async def main() -> F.Frame:
        task = PipelineTask(Pipeline([Stopper()]), idle_timeout_secs=30)
        got: list[F.Frame] = []
        task.add_event_handler("on_pipeline_finished", lambda _t, f: got.append(f))
        if how == "cancel-before-start":
            await task.cancel("never mind")
        runner = _run(task)
        if how == "stop":
            await task.queue_frame(F.TextFrame("stop"))
        elif how == "cancel":
            await asyncio.sleep(0.1)
            await task.cancel("caller hung up")
        await asyncio.wait_for(runner, 60)
        assert len(got) == 1
        return got[0]

    return run_virtual(main())


def test_finished_gets_the_stop_frame() -> None:
    assert type(_finished_frame("stop")) is F.StopFrame


def test_finished_gets_the_cancel_frame_with_its_reason() -> None:
    frame = _finished_frame("cancel")
    assert type(frame) is F.CancelFrame and frame.reason == "caller hung up"


def test_finished_gets_a_cancel_frame_when_cancelled_before_start() -> None:
    assert type(_finished_frame("cancel-before-start")) is F.CancelFrame


def test_idle_timeout_event_then_finished_with_the_idle_cancel() -> None:
    frame = _finished_frame("idle")
    assert type(frame) is F.CancelFrame and frame.reason == "idle timeout"


def test_observer_is_told_the_finishing_frame() -> None:
    class Obs(BaseObserver):
        def __init__(self) -> None:
            self.finished: list[Any] = []

        async def on_pipeline_finished(self, frame: Any) -> None:
            self.finished.append(frame)

    async def main() -> list[Any]:
        obs = Obs()
        task = PipelineTask(Pipeline([Passthrough()]), observers=[obs])
        runner = _run(task)
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return obs.finished

    assert [type(f) for f in run_virtual(main())] == [F.EndFrame]


def test_pipeline_error_gets_the_task_and_the_error_frame() -> None:
    class Failing(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                await self.push_error("tts down")

    async def main() -> list[tuple[Any, Any]]:
        task = PipelineTask(Pipeline([Failing()]))
        errors: list[tuple[Any, Any]] = []
        task.add_event_handler("on_pipeline_error", lambda t, f: errors.append((t, f)))
        runner = _run(task)
        await task.queue_frames([F.TextFrame("x"), F.EndFrame()])
        await asyncio.wait_for(runner, 5)
        assert errors[0][0] is task
        return errors

    errors = run_virtual(main())
    assert len(errors) == 1 and isinstance(errors[0][1], F.ErrorFrame)
    assert errors[0][1].error == "tts down"


class _Counter(BaseObserver):
    frame_types = (F.TextFrame,)

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if type(data.source).__name__ == "Passthrough":
            self.texts.append(data.frame.text)  # type: ignore[attr-defined]


def test_observers_added_and_removed_while_running() -> None:
    async def main() -> tuple[list[str], list[str], list[str]]:
        sink = CaptureProcessor(DOWN)
        task = PipelineTask(Pipeline([Passthrough(), sink]))  # starts without observers
        runner = await _started(task)
        await task.queue_frame(F.TextFrame("before"))
        first, second = _Counter(), _Counter()
        task.add_observer(first)
        await task.queue_frame(F.TextFrame("one"))
        task.add_observer(second)
        await task.queue_frame(F.TextFrame("two"))
        await task.remove_observer(first)
        await task.queue_frame(F.TextFrame("three"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return first.texts, second.texts, texts(sink.frames)

    first, second, delivered = run_virtual(main())
    assert first == ["one", "two"]
    assert second == ["two", "three"]
    assert delivered == ["before", "one", "two", "three"]


def test_frames_reached_fire_only_for_the_filtered_types() -> None:
    class Echo(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame) and direction is DOWN:
                await self.push_frame(F.TranscriptionFrame(frame.text, "u", "t"), UP)

    async def main() -> tuple[list[str], list[str]]:
        task = PipelineTask(Pipeline([Echo()]))
        down: list[str] = []
        up: list[str] = []
        task.add_event_handler(
            "on_frame_reached_downstream", lambda _t, f: down.append(type(f).__name__)
        )
        task.add_event_handler("on_frame_reached_upstream", lambda _t, f: up.append(type(f).__name__))
        runner = await _started(task)
        await task.queue_frame(F.TextFrame("unfiltered"))  # no filter yet: no event
        task.set_reached_downstream_filter((F.TextFrame,))
        task.set_reached_upstream_filter((F.TranscriptionFrame,))
        await task.queue_frames([F.TextFrame("a"), F.LLMFullResponseEndFrame()])
        task.add_reached_downstream_filter((F.LLMFullResponseEndFrame,))
        assert task.reached_downstream_types == (F.TextFrame, F.LLMFullResponseEndFrame)
        await task.queue_frames([F.TextFrame("b"), F.LLMFullResponseEndFrame()])
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return down, up

    down, up = run_virtual(main())
    assert down == ["TextFrame", "TextFrame", "LLMFullResponseEndFrame"]
    assert up == ["TranscriptionFrame", "TranscriptionFrame"]


def test_queue_frames_upstream_and_from_an_async_iterable() -> None:
    async def main() -> tuple[list[str], list[str]]:
        top = CaptureProcessor(UP)
        bottom = CaptureProcessor(DOWN)
        task = PipelineTask(Pipeline([top, Passthrough(), bottom]))
        runner = _run(task)

        async def gen() -> AsyncIterator[F.Frame]:
            for text in ("x", "y"):
                await asyncio.sleep(0.01)
                yield F.TextFrame(text)

        await task.queue_frames([F.TextFrame("u1"), F.TextFrame("u2")], UP)
        await task.queue_frames(gen())
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return texts(top.frames), texts(bottom.frames)

    assert run_virtual(main()) == (["u1", "u2"], ["x", "y"])
