"""Per-frame processor events (pipecat's ``on_before/after_process_frame``,
``on_before/after_push_frame``), and ``broadcast_frame_instance``.

Reference: pipecat 1.14 ``FrameProcessor``: the handlers get ``(processor, frame)``;
process events wrap the processing of every frame the processor receives,
push events wrap every ``push_frame``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import flowcat.frames as F
from _helpers import Passthrough, texts
from flowcat import BaseObserver, FrameDirection, FrameProcessor, FramePushed, Pipeline, PipelineTask
from flowcat.testing import CaptureProcessor, SleepFrame, run_test, run_virtual

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Upper(FrameProcessor):
    """Inline: upper-cases text frames without a coroutine."""

    inline_frames = (F.TextFrame,)

    def process_inline(self, frame: F.Frame, direction: FrameDirection) -> Any:
        return F.TextFrame(frame.text.upper())  # type: ignore[attr-defined]

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


def _log_events(proc: FrameProcessor, log: list[str]) -> None:
    for event in ("on_before_process_frame", "on_after_process_frame", "on_before_push_frame", "on_after_push_frame"):
        short = event[3:].replace("_frame", "")

        def handler(p: FrameProcessor, frame: F.Frame, short: str = short) -> None:
            assert p is proc
            if isinstance(frame, F.TextFrame):
                log.append(f"{short}:{frame.text}")

        proc.add_event_handler(event, handler)


def _run_through(procs: list[FrameProcessor], frames: list[F.Frame]) -> list[F.Frame]:
    async def main() -> list[F.Frame]:
        down, _ = await run_test(Pipeline(procs), frames_to_send=frames)
        return down

    return run_virtual(main())


def test_process_and_push_events_wrap_a_coroutine_processor() -> None:
    log: list[str] = []
    proc = Passthrough()
    _log_events(proc, log)
    down = _run_through([proc], [F.TextFrame("a"), F.TextFrame("b")])
    assert texts(down) == ["a", "b"]
    assert log == [
        "before_process:a", "before_push:a", "after_push:a", "after_process:a",
        "before_process:b", "before_push:b", "after_push:b", "after_process:b",
    ]


def test_events_fire_for_an_inline_processor_and_keep_its_result() -> None:
    log: list[str] = []
    first, upper, last = Passthrough(), Upper(), Passthrough()
    _log_events(upper, log)
    down = _run_through([first, upper, last], [F.TextFrame("a")])
    assert texts(down) == ["A"]
    # Processed "a", pushed its inline result "A".
    assert log == ["before_process:a", "before_push:A", "after_push:A", "after_process:a"]


def test_events_on_a_processor_skipped_by_routes_and_nested_pipelines() -> None:
    # Inline neighbours and a nested pipeline (a pure forwarder normally flattened
    # away) still deliver to the hooked processors.
    log: list[str] = []
    inner = Pipeline([Upper()])
    _log_events(inner, log)
    down = _run_through([Upper(), inner, Upper()], [F.TextFrame("x")])
    assert texts(down) == ["X"]
    assert log == ["before_process:X", "before_push:X", "after_push:X", "after_process:X"]


def test_handler_added_while_running_and_paused_processor_still_holds() -> None:
    async def main() -> tuple[list[str], list[str]]:
        log: list[str] = []
        upper = Upper()
        sink = CaptureProcessor(DOWN)
        task = PipelineTask(Pipeline([Passthrough(), upper, sink]))
        started = asyncio.Event()
        task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        runner = asyncio.ensure_future(task.run())
        await started.wait()
        await task.queue_frame(F.TextFrame("quiet"))  # route through upper now kept
        upper.add_event_handler("on_before_process_frame", lambda _p, f: log.append(f.text))
        upper.pause_processing_frames()
        await task.queue_frame(F.TextFrame("held"))
        assert texts(sink.frames) == ["QUIET"] and log == []
        upper.resume_processing_frames()
        await asyncio.sleep(0)
        await task.queue_frame(F.TextFrame("after"))
        await task.stop_when_done()
        await asyncio.wait_for(runner, 5)
        return log, texts(sink.frames)

    log, delivered = run_virtual(main())
    assert delivered == ["QUIET", "HELD", "AFTER"]
    assert log == ["held", "after"]


def test_push_events_compose_with_observers() -> None:
    class Seen(BaseObserver):
        frame_types = (F.TextFrame,)

        def __init__(self) -> None:
            self.hops: list[str] = []

        async def on_push_frame(self, data: FramePushed) -> None:
            self.hops.append(type(data.source).__name__)

    async def main() -> tuple[list[str], list[str]]:
        log: list[str] = []
        proc = Passthrough()
        _log_events(proc, log)
        obs = Seen()
        task = PipelineTask(Pipeline([proc]), observers=[obs])
        runner = asyncio.ensure_future(task.run())
        await task.queue_frames([F.TextFrame("a"), F.EndFrame()])
        await asyncio.wait_for(runner, 5)
        return log, obs.hops

    log, hops = run_virtual(main())
    assert log == ["before_process:a", "before_push:a", "after_push:a", "after_process:a"]
    assert "Passthrough" in hops


def test_push_from_a_background_task_is_reported_once() -> None:
    class Later(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                self.create_task(self.push_frame(F.TextFrame("late")))
            else:
                await self.push_frame(frame, direction)

    log: list[str] = []
    proc = Later()
    _log_events(proc, log)

    async def main() -> list[F.Frame]:
        down, _ = await run_test(proc, frames_to_send=[F.TextFrame("x"), SleepFrame(0.1)])
        return down

    assert texts(run_virtual(main())) == ["late"]
    assert log.count("before_push:late") == 1 and log.count("after_push:late") == 1


def test_broadcast_frame_instance_sends_two_fresh_copies() -> None:
    class Broadcaster(FrameProcessor):
        original: F.Frame | None = None

        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.TextFrame):
                self.original = F.UserStartedSpeakingFrame(emulated=True)
                await self.broadcast_frame_instance(self.original)
            else:
                await self.push_frame(frame, direction)

    async def main() -> tuple[F.Frame, F.Frame, F.Frame]:
        b = Broadcaster()
        down, up = await run_test(
            b,
            frames_to_send=[F.TextFrame("go")],
            expected_down_frames=[F.UserStartedSpeakingFrame],
            expected_up_frames=[F.UserStartedSpeakingFrame],
        )
        assert b.original is not None
        return b.original, down[0], up[0]

    original, down, up = run_virtual(main())
    assert down is not original and up is not original
    assert len({original.id, down.id, up.id}) == 3
    assert down.broadcast_sibling_id == up.id and up.broadcast_sibling_id == down.id
    assert down.emulated and up.emulated  # type: ignore[attr-defined]
    assert down.name != up.name
