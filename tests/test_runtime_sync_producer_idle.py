"""SyncParallelPipeline, ProducerProcessor/ConsumerProcessor and IdleFrameProcessor.

Reference behaviour: pipecat 1.14's ``sync_parallel_pipeline.py``,
``producer_processor.py``/``consumer_processor.py``, ``idle_frame_processor.py``
and their tests (output of one input released together, in arrival or pipeline
order, de-duplicated; producer filters/transforms/passthrough; idle callback
after ``timeout`` of quiet, reset by the chosen frame types).
"""

from __future__ import annotations

import asyncio
from typing import Any

import flowcat.frames as F
from _helpers import Passthrough, texts
from flowcat import FrameDirection, FrameProcessor, ParallelPipeline, SyncParallelPipeline
from flowcat.runtime import ConsumerProcessor, FrameOrder, IdleFrameProcessor, ProducerProcessor
from flowcat.testing import SleepFrame, run_test, run_virtual

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Say(FrameProcessor):
    """On a TextFrame pushes ``<tag>:<text>`` (and drops the input)."""

    def __init__(self, tag: str, log: list[str]) -> None:
        super().__init__(name=tag)
        self.tag = tag
        self.log = log

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, F.TextFrame) and direction is DOWN:
            for part in ("1", "2"):
                self.log.append(f"{self.tag}{part}")
                await self.push_frame(F.TextFrame(f"{self.tag}{part}:{frame.text}"))
        else:
            await self.push_frame(frame, direction)


class Tap(FrameProcessor):
    """Records, at the moment they pass, the texts leaving the parallel pipeline."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, F.TextFrame):
            self.log.append(f"out:{frame.text}")
        await self.push_frame(frame, direction)


def _timeline(parallel_cls: Any, **kw: Any) -> tuple[list[str], list[str]]:
    log: list[str] = []

    async def main() -> list[F.Frame]:
        par = parallel_cls([Say("a", log)], [Say("b", log)], **kw)
        from flowcat import Pipeline

        down, _ = await run_test(Pipeline([par, Tap(log)]), frames_to_send=[F.TextFrame("x")])
        return down

    return log, texts(run_virtual(main()))


def test_sync_parallel_releases_the_output_of_one_frame_together() -> None:
    log, out = _timeline(SyncParallelPipeline)
    assert out == ["a1:x", "a2:x", "b1:x", "b2:x"]
    # Nothing left before every branch was done with "x".
    assert log == ["a1", "a2", "b1", "b2", "out:a1:x", "out:a2:x", "out:b1:x", "out:b2:x"]
    # A plain ParallelPipeline lets each branch's output go as it is made.
    log, _ = _timeline(ParallelPipeline)
    assert log == ["a1", "out:a1:x", "a2", "out:a2:x", "b1", "out:b1:x", "b2", "out:b2:x"]


def test_sync_parallel_dedups_and_keeps_branch_order() -> None:
    async def main(order: FrameOrder) -> list[str]:
        log: list[str] = []
        par = SyncParallelPipeline(
            [Passthrough()],  # passes the input on unchanged
            [Say("a", log)],
            [Passthrough()],  # ... and so does this one: the same frame again
            frame_order=order,
        )
        assert par.frame_order is order
        down, _ = await run_test(par, frames_to_send=[F.TextFrame("in")])
        return texts(down)

    # Branches run one after another (direct calls): arrival order is branch order.
    assert run_virtual(main(FrameOrder.PIPELINE)) == ["in", "a1:in", "a2:in"]
    assert run_virtual(main(FrameOrder.ARRIVAL)) == ["in", "a1:in", "a2:in"]


def test_sync_parallel_lets_system_frames_through_at_once() -> None:
    async def main() -> list[str]:
        par = SyncParallelPipeline([Passthrough()], [Passthrough()])
        down, _ = await run_test(
            par, frames_to_send=[F.UserStartedSpeakingFrame(), F.TextFrame("t")]
        )
        return [type(f).__name__ for f in down]

    assert run_virtual(main()) == ["UserStartedSpeakingFrame", "TextFrame", "EndFrame"]


def test_producer_hands_filtered_transformed_frames_to_its_consumers() -> None:
    async def is_text(frame: F.Frame) -> bool:  # async, as in pipecat
        return isinstance(frame, F.TextFrame)

    def shout(frame: F.Frame) -> F.Frame:  # a plain function works too
        return F.TextFrame(frame.text.upper())  # type: ignore[attr-defined]

    async def main(passthrough: bool) -> tuple[list[str], list[str]]:
        from flowcat import Pipeline

        producer = ProducerProcessor(filter=is_text, transformer=shout, passthrough=passthrough)
        down_consumer = ConsumerProcessor(producer=producer)
        up_consumer = ConsumerProcessor(producer=producer, direction=UP)
        down, up = await run_test(
            Pipeline([up_consumer, producer, down_consumer]),
            frames_to_send=[F.TextFrame("hi"), F.LLMFullResponseEndFrame(), SleepFrame(0.1)],
        )
        return texts(down), texts(up)

    # Downstream: the original (passthrough) and the consumer's copy; upstream:
    # the other consumer's copy.
    assert run_virtual(main(True)) == (["hi", "HI"], ["HI"])
    assert run_virtual(main(False)) == (["HI"], ["HI"])


def test_consumer_keeps_consuming_after_an_interruption() -> None:
    async def main() -> list[str]:
        from flowcat import Pipeline

        producer = ProducerProcessor(filter=lambda f: isinstance(f, F.TextFrame), passthrough=False)
        consumer = ConsumerProcessor(producer=producer)
        down, _ = await run_test(
            Pipeline([producer, consumer]),
            frames_to_send=[
                F.TextFrame("one"),
                SleepFrame(0.1),
                F.InterruptionFrame(),
                SleepFrame(0.1),
                F.TextFrame("two"),
                SleepFrame(0.1),
            ],
        )
        return texts(down)

    assert run_virtual(main()) == ["one", "two"]


def test_idle_frame_processor_calls_back_after_quiet_and_resets_on_activity() -> None:
    async def main() -> tuple[list[float], list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        t0 = loop.time()

        async def callback(proc: IdleFrameProcessor) -> None:
            fired.append(round(loop.time() - t0, 3))
            await proc.push_frame(F.TextFrame("still there?"))

        idle = IdleFrameProcessor(callback=callback, timeout=5.0, types=[F.TranscriptionFrame])
        down, _ = await run_test(
            idle,
            frames_to_send=[
                SleepFrame(3),
                F.TranscriptionFrame("hello", "u", "t"),  # at 3 s: resets, next at 8 s
                SleepFrame(3),
                F.TextFrame("bot talk"),  # not a chosen type: no reset
                SleepFrame(8),  # fires at 8 and 13 s
            ],
        )
        return fired, texts(down)

    fired, out = run_virtual(main())
    assert fired == [8.0, 13.0]
    assert out == ["hello", "bot talk", "still there?", "still there?"]
