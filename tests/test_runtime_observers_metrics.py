"""Observers (opt-in, filtered) and metrics frames."""

from __future__ import annotations

import asyncio

import pytest

import flowcat.frames as F
from _helpers import Passthrough
from flowcat import (
    BaseObserver,
    FrameDirection,
    FrameProcessor,
    FramePushed,
    Pipeline,
    PipelineParams,
    PipelineTask,
)
from flowcat.testing import run_test, run_virtual


class Collect(BaseObserver):
    def __init__(self, types: tuple[type[F.Frame], ...] | None = None) -> None:
        self.frame_types = types
        self.pushes: list[FramePushed] = []
        self.started = 0

    async def on_push_frame(self, data: FramePushed) -> None:
        self.pushes.append(data)

    async def on_pipeline_started(self) -> None:
        self.started += 1


def test_observers_see_pushes_with_type_filter() -> None:
    async def main() -> tuple[Collect, Collect]:
        everything, texts_only = Collect(), Collect((F.TextFrame,))
        a, b = Passthrough(name="a"), Passthrough(name="b")
        task = PipelineTask(Pipeline([a, b]), observers=[everything, texts_only])
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("x"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return everything, texts_only

    everything, texts_only = run_virtual(main())
    assert everything.started == 1 and texts_only.started == 1
    hops = [(p.source.name, p.destination.name) for p in texts_only.pushes]
    assert ("a", "b") in hops
    assert all(isinstance(p.frame, F.TextFrame) for p in texts_only.pushes)
    assert {type(p.frame) for p in everything.pushes} >= {F.StartFrame, F.TextFrame, F.EndFrame}


def test_no_observer_means_no_wrapper() -> None:
    async def main() -> Passthrough:
        p = Passthrough()
        task = PipelineTask(Pipeline([p]))
        runner = asyncio.ensure_future(task.run())
        await task.stop_when_done()
        await runner
        return p

    p = run_virtual(main())
    assert "push_frame" not in p.__dict__


class FakeService(FrameProcessor):
    model_name = "fake-1"

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, F.TextFrame):
            await self.start_ttfb_metrics()
            await self.start_processing_metrics()
            await asyncio.sleep(0.25)
            await self.stop_ttfb_metrics()
            await asyncio.sleep(0.5)
            await self.stop_processing_metrics()
            await self.start_llm_usage_metrics(
                F.LLMTokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
            )
            await self.start_tts_usage_metrics(frame.text)
        await self.push_frame(frame, direction)


@pytest.mark.parametrize("usage", [True, False])
def test_metrics_frames(usage: bool) -> None:
    async def main() -> list[F.Frame]:
        params = PipelineParams(enable_metrics=True, enable_usage_metrics=usage)
        down, _ = await run_test(
            FakeService(name="svc"), frames_to_send=[F.TextFrame("hello")], params=params
        )
        return down

    down = run_virtual(main())
    data = [d for f in down if isinstance(f, F.MetricsFrame) for d in f.data]
    ttfb = [d for d in data if isinstance(d, F.TTFBMetricsData)]
    proc = [d for d in data if isinstance(d, F.ProcessingMetricsData)]
    assert ttfb[0].value == pytest.approx(0.25) and ttfb[0].processor == "svc" and ttfb[0].model == "fake-1"
    assert proc[0].value == pytest.approx(0.75)
    llm = [d for d in data if isinstance(d, F.LLMUsageMetricsData)]
    tts = [d for d in data if isinstance(d, F.TTSUsageMetricsData)]
    if usage:
        assert llm[0].value.total_tokens == 15 and tts[0].value == 5
    else:
        assert not llm and not tts


def test_metrics_off_by_default() -> None:
    async def main() -> list[F.Frame]:
        down, _ = await run_test(FakeService(), frames_to_send=[F.TextFrame("x")])
        return down

    assert not [f for f in run_virtual(main()) if isinstance(f, F.MetricsFrame)]


def test_event_handlers_sync_and_async_and_failing() -> None:
    async def main() -> list[str]:
        calls: list[str] = []
        task = PipelineTask(Pipeline([Passthrough()]))

        @task.event_handler("on_pipeline_started")
        async def started(_t: PipelineTask, frame: F.Frame) -> None:
            calls.append(f"async:{type(frame).__name__}")

        task.add_event_handler("on_pipeline_started", lambda _t, _f: calls.append("sync"))

        def broken(_t: PipelineTask, _f: F.Frame) -> None:
            raise RuntimeError("handler bug")

        task.add_event_handler("on_pipeline_finished", broken)
        task.add_event_handler("on_pipeline_finished", lambda _t, f: calls.append(f"finished:{type(f).__name__}"))
        with pytest.raises(ValueError, match="no event"):
            task.add_event_handler("on_nothing", broken)
        runner = asyncio.ensure_future(task.run())
        await task.stop_when_done()
        await runner
        return calls

    assert run_virtual(main()) == ["async:StartFrame", "sync", "finished:EndFrame"]
