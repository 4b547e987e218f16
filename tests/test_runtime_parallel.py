"""ParallelPipeline: fan-out, de-duplication with bounded memory, lifecycle release."""

from __future__ import annotations

import asyncio

import flowcat.frames as F
from _helpers import Passthrough, texts
from flowcat import FrameDirection, FrameProcessor, ParallelPipeline, Pipeline, PipelineTask
from flowcat.testing import CaptureProcessor, run_test, run_virtual

DOWN = FrameDirection.DOWNSTREAM


class Upper(FrameProcessor):
    """Emits a new, upper-cased TextFrame for each TextFrame (and passes the original)."""

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, F.TextFrame) and frame.text.islower():
            await self.push_frame(F.TextFrame(frame.text.upper()), direction)


def test_frames_through_both_branches_leave_once() -> None:
    async def main() -> list[F.Frame]:
        down, _ = await run_test(
            ParallelPipeline([Passthrough()], [Upper()]),
            frames_to_send=[F.TextFrame("a"), F.TextFrame("b")],
            expected_down_frames=[F.TextFrame] * 4,
        )
        return down

    assert texts(run_virtual(main())) == ["a", "A", "b", "B"]


def test_dedup_memory_is_bounded() -> None:
    async def main() -> ParallelPipeline:
        par = ParallelPipeline([Passthrough()], [Passthrough()], max_seen_ids=64)
        frames = [F.TextFrame(str(i)) for i in range(500)]
        down, _ = await run_test(par, frames_to_send=frames, expected_down_frames=[F.TextFrame] * 500)
        assert texts(down) == [str(i) for i in range(500)]
        return par

    par = run_virtual(main())
    assert par.seen_ids <= 64


def test_lifecycle_frames_released_only_after_every_branch() -> None:
    class SlowEnd(Passthrough):
        async def stop(self, frame: F.EndFrame) -> None:
            await asyncio.sleep(2.0)  # flushing
            await self.push_frame(F.TextFrame("flushed"))

    log: list[str] = []

    class Tap(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            log.append(type(frame).__name__)
            await self.push_frame(frame, direction)

    class GreetOnStart(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, F.StartFrame):
                await self.push_frame(F.TextFrame("hello"))

        async def start(self, frame: F.StartFrame) -> None:
            await asyncio.sleep(0)

    async def main() -> None:
        task = PipelineTask(Pipeline([ParallelPipeline([GreetOnStart()], [Passthrough(), SlowEnd()]), Tap()]))
        runner = asyncio.ensure_future(task.run())
        await task.stop_when_done()
        await asyncio.wait_for(runner, 10)

    run_virtual(main())
    # Start leaves once, before the greeting produced by branch 0; End leaves once, after the flush.
    assert log == ["StartFrame", "TextFrame", "TextFrame", "EndFrame"]


def test_upstream_frames_fan_in() -> None:
    class ErrUp(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                await self.push_error("branch problem")

    async def main() -> tuple[list[F.Frame], list[F.Frame]]:
        return await run_test(
            ParallelPipeline([Passthrough()], [ErrUp()]),
            frames_to_send=[F.TextFrame("x")],
            expected_down_frames=[F.TextFrame],
            expected_up_frames=[F.ErrorFrame],
        )

    run_virtual(main())


def test_parallel_inside_nested_pipeline_with_capture() -> None:
    async def main() -> list[F.Frame]:
        sink = CaptureProcessor(DOWN, ignore=[F.StartFrame])
        inner = Pipeline([Passthrough(), ParallelPipeline([Upper()], [Passthrough()])])
        task = PipelineTask(Pipeline([inner, Pipeline([Passthrough(), sink])]))
        runner = asyncio.ensure_future(task.run())
        await task.queue_frame(F.TextFrame("q"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return sink.frames

    frames = run_virtual(main())
    assert texts(frames) == ["q", "Q"]
    assert isinstance(frames[-1], F.EndFrame)
