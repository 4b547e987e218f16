"""A finished call leaves nothing behind: no reference cycle for the collector, no task.

Every way a call ends (EndFrame, cancel, a fatal error, the run cancelled from
outside, the idle timeout) is run under ``flowcat.testing.assert_call_leaves_nothing``
with the pieces that used to tie a call into cycles: nested pipelines, a parallel
pipeline, inline and async processors, background tasks, a paused processor, kept
inline routes, event handlers that close over the task, observers. The helper
itself is checked to catch a cycle and a stray task.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import flowcat.frames as F
from _helpers import Passthrough, texts
from flowcat import BaseObserver, FrameDirection, FrameProcessor, ParallelPipeline, Pipeline, PipelineTask
from flowcat.testing import CallLeftovers, CaptureProcessor, assert_call_leaves_nothing, run_test, run_virtual

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Inline(Passthrough):
    """Takes every frame but lifecycle ones inline (kept routes go through it)."""

    inline_frames = (F.Frame,)

    def process_inline(self, frame: F.Frame, direction: FrameDirection) -> Any:
        return frame


class Background(FrameProcessor):
    """Answers a TextFrame from a call-owned task (and keeps one waiting for ever)."""

    def __init__(self) -> None:
        super().__init__()
        self._register_event_handler("on_answer")

    async def start(self, frame: F.StartFrame) -> None:
        self.forever = self.create_task(asyncio.Event().wait(), "forever")

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, F.TextFrame) and direction is DOWN and frame.text == "ask":
            self.create_task(self._answer(), "answer")
        await self.push_frame(frame, direction)

    async def _answer(self) -> None:
        await asyncio.sleep(0.01)
        await self._call_event_handler("on_answer", "answer")
        await self.push_frame(F.TextFrame("answer"))


class PausesOnce(Passthrough):
    """Holds frames while it "connects", then lets them through in order."""

    async def start(self, frame: F.StartFrame) -> None:
        self.pause_processing_frames()
        self.create_task(self._connect(), "connect")

    async def _connect(self) -> None:
        await asyncio.sleep(0.05)
        self.resume_processing_frames()


class Seen(BaseObserver):
    def __init__(self) -> None:
        self.pushes = 0

    async def on_push_frame(self, data: Any) -> None:
        self.pushes += 1


def _call(how: str, *, observed: bool = False) -> Any:
    """An async function that builds a call, ends it ``how`` and returns plain data."""

    async def run() -> dict[str, Any]:
        capture = CaptureProcessor(DOWN, ignore=(F.StartFrame,))
        pipeline = Pipeline(
            [
                Inline(),
                Pipeline([Passthrough(), background := Background()]),
                ParallelPipeline([Inline()], [Passthrough()]),
                PausesOnce(),
                Inline(),
                capture,
            ]
        )
        seen = Seen()
        task = PipelineTask(
            pipeline,
            observers=[seen] if observed else None,
            idle_timeout_secs=0.5 if how == "idle" else None,
        )
        started = asyncio.Event()

        # pipecat-style handlers: closures over the task and the processors.
        @task.event_handler("on_pipeline_started")
        async def on_started(_t: PipelineTask, _frame: F.Frame) -> None:
            started.set()
            await task.queue_frame(F.TextFrame("hello"))

        answers: list[str] = []

        @background.event_handler("on_answer")
        async def on_answer(_p: FrameProcessor, text: str) -> None:
            answers.append(f"{task.name}: {text}")

        runner = asyncio.ensure_future(task.run())
        await asyncio.wait_for(started.wait(), 5)
        await task.queue_frame(F.TextFrame("ask"))
        for _ in range(200):  # the answer comes from the background task
            if "answer" in texts(capture.frames):
                break
            await asyncio.sleep(0.01)
        if how == "end":
            await task.queue_frame(F.EndFrame())
        elif how == "cancel":
            await task.cancel()
        elif how == "fatal":
            await pipeline.processors[1].push_error("boom", fatal=True)
        elif how == "outside":
            runner.cancel()
        # "idle": nothing more comes; the idle timeout cancels the task.
        try:
            await asyncio.wait_for(runner, 10)
        except asyncio.CancelledError:
            assert how == "outside"
        return {
            "texts": texts(capture.frames),
            "finished_by": task.stats.finished_by,
            "pushes": seen.pushes,
            "answers": answers,
        }

    return run


@pytest.mark.parametrize("how", ["end", "cancel", "fatal", "outside", "idle"])
def test_a_finished_call_leaves_no_cycle_and_no_task(how: str) -> None:
    out = run_virtual(assert_call_leaves_nothing(_call(how)))
    assert out["texts"][:3] == ["hello", "ask", "answer"]
    assert len(out["answers"]) == 1
    expected = {"end": "end", "cancel": "cancel", "fatal": "cancel", "outside": "cancel", "idle": "cancel"}
    assert out["finished_by"] == expected[how]


def test_an_observed_call_leaves_nothing() -> None:
    out = run_virtual(assert_call_leaves_nothing(_call("end", observed=True)))
    assert out["texts"][:3] == ["hello", "ask", "answer"]
    assert out["pushes"] > 10  # the observer saw the hops


def test_a_call_run_by_run_test_leaves_nothing() -> None:
    async def run() -> list[str]:
        down, _ = await run_test(
            Pipeline([Inline(), Passthrough()]),
            frames_to_send=[F.TextFrame("a"), F.TextFrame("b")],
            expected_down_frames=[F.TextFrame, F.TextFrame],
        )
        return texts(down)

    assert run_virtual(assert_call_leaves_nothing(run)) == ["a", "b"]


def test_a_call_with_sync_parallel_producer_consumer_and_idle_processors_leaves_nothing() -> None:
    from flowcat.runtime import ConsumerProcessor, IdleFrameProcessor, ProducerProcessor, SyncParallelPipeline

    async def run() -> tuple[list[str], int]:
        idles: list[int] = []
        producer = ProducerProcessor(filter=lambda f: isinstance(f, F.TextFrame))
        capture = CaptureProcessor(DOWN, ignore=(F.StartFrame,))
        task = PipelineTask(
            Pipeline(
                [
                    SyncParallelPipeline([Inline()], [Passthrough()]),
                    producer,
                    IdleFrameProcessor(callback=lambda p: idles.append(1), timeout=0.05),
                    ConsumerProcessor(producer=producer),
                    capture,
                ]
            ),
            idle_timeout_secs=None,
        )
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("x"))
        await asyncio.sleep(0.2)  # the consumer's copy, the idle callback
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return texts(capture.frames), len(idles)

    got, idles = run_virtual(assert_call_leaves_nothing(run))
    assert got == ["x", "x"]  # the frame and the consumer's copy
    assert idles >= 1


def test_a_finished_call_unlinks_its_processors() -> None:
    async def main() -> tuple[Any, ...]:
        a, b = Inline(), Passthrough()
        task = PipelineTask(Pipeline([a, b]))
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("x"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return a.next, b.previous, a._sched, task.has_event_handler("on_pipeline_started")

    assert run_virtual(main()) == (None, None, None, False)


def test_a_stopped_task_keeps_its_processors_linked() -> None:
    """StopFrame stops the task but keeps the processors usable (pipecat's meaning)."""

    async def main() -> bool:
        a, b = Inline(), Passthrough()
        task = PipelineTask(Pipeline([a, b]))
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.StopFrame())
        await asyncio.wait_for(runner, 5)
        return a.next is b

    assert run_virtual(main())


# ------------------------------------------------------------- the helper itself


class KeepsItself(Passthrough):
    def __init__(self) -> None:
        super().__init__()
        self.me = self  # a cycle no teardown knows about


class StartsStrayTask(Passthrough):
    async def start(self, frame: F.StartFrame) -> None:
        # A plain asyncio task (not owned by the call): nothing cancels it.
        self.stray = asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="stray")


def _simple(cls: type[FrameProcessor]) -> Any:
    async def run() -> None:
        task = PipelineTask(Pipeline([cls()]))
        runner = asyncio.ensure_future(task.run())
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)

    return run


def test_the_helper_reports_a_cycle_with_its_edges() -> None:
    with pytest.raises(CallLeftovers) as info:
        run_virtual(assert_call_leaves_nothing(_simple(KeepsItself), modules=("flowcat", __name__)))
    assert any(isinstance(o, KeepsItself) for o in info.value.cycles)
    assert "KeepsItself.me -> KeepsItself" in str(info.value)
    assert not info.value.tasks


def test_the_helper_reports_a_task_left_running() -> None:
    with pytest.raises(CallLeftovers) as info:
        run_virtual(assert_call_leaves_nothing(_simple(StartsStrayTask), task_timeout=0.1))
    assert [t.get_name() for t in info.value.tasks] == ["stray"]
    for t in info.value.tasks:
        t.cancel()
