"""pipecat's lifecycle bugs, as a negative list: each test replays the scenario of one pipecat
issue against flowcat and fails if flowcat had the bug (docs/porting-from-pipecat.md lists them).

How each was shown to bite (the fault put back in flowcat, the test failing, then removed):
* #5211 — ``TaskTimers._arm_end_timer`` made a no-op: the task never finishes.
* #3757, #4276 (and #5211) — ``CallScheduler.submit`` putting a ``CancelFrame`` on the data
  lane behind the stuck frame, as pipecat's single push queue does, instead of
  ``_cancel_now`` preempting: the cancel waits for the end/start timeout (20-25 s, not 0).
  (Queued on flowcat's system lane instead, #3757 still passes: that lane never waits for
  the data lane; #4276 fails, the StartFrame being a system frame.)
* #5779 — ``ToolCalls.forget`` not remembering the early cancel: ``IN_PROGRESS`` stays.
  (flowcat had this one; fixed with this test.)
* #754 — covered at the service level in tests/test_services_tts.py; here the turn after an
  interruption must not speak the interrupted turn's queued sentences.
* #4997 — covered in tests/test_services_functions.py; here the next generation's call of the
  same tool must still run (the guard is the generation, not the tool).
"""

from __future__ import annotations

import asyncio
from typing import Any

import flowcat.frames as F
from _helpers import Passthrough
from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineTask
from flowcat.agent import LLMAssistantAggregator, LLMContext
from flowcat.testing import SleepFrame, run_test, run_virtual

DOWN = FrameDirection.DOWNSTREAM


class HoldsEnd(Passthrough):
    """A processor after the output that never lets the EndFrame go (a recorder stuck on a
    full disk, an aggregator waiting for a lock): the shape of pipecat #5211's reproduction."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.audio_seen = 0
        self.cancelled_in_end = False

    async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
        if isinstance(frame, F.OutputAudioRawFrame):
            self.audio_seen += 1
        if isinstance(frame, F.EndFrame):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled_in_end = True
                raise
        await super().process_frame(frame, direction)


class Hooks(Passthrough):
    def __init__(self, log: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.log = log

    async def cancel(self, frame: F.CancelFrame) -> None:
        self.log.append(f"{self.name}.cancel")


def _goodbye() -> list[F.Frame]:
    return [F.OutputAudioRawFrame(audio=b"\x00\x00" * 160, sample_rate=8000, num_channels=1) for _ in range(5)]


def test_5211_end_frame_wait_is_bounded_and_the_call_is_reported_finished() -> None:
    """https://github.com/pipecat-ai/pipecat/pull/5211 — the goodbye plays out, the EndFrame
    stops in a processor after the output transport, ``on_pipeline_finished`` never fires and
    the caller sits on a silent line. flowcat: ``end_timeout_secs`` bounds the EndFrame's
    trip, names the processor, cancels, and ``on_pipeline_finished`` fires."""

    async def main() -> tuple[float, PipelineTask, HoldsEnd, list[F.Frame]]:
        holder = HoldsEnd(name="after-output")
        task = PipelineTask(Pipeline([Passthrough(name="output"), holder]), end_timeout_secs=5.0)
        finished: list[F.Frame] = []
        task.add_event_handler("on_pipeline_finished", lambda _t, f: finished.append(f))
        loop = asyncio.get_running_loop()
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(0)
        t0 = loop.time()
        await task.queue_frames([*_goodbye(), F.EndFrame()])
        await asyncio.wait_for(runner, 60)
        return loop.time() - t0, task, holder, finished

    elapsed, task, holder, finished = run_virtual(main())
    assert holder.audio_seen == 5  # the goodbye went through first
    assert 5.0 <= elapsed < 5.5
    assert task.has_finished() and task.stats.stuck_processors == ["after-output"]
    assert holder.cancelled_in_end  # the stuck chain was cancelled, not left behind
    assert len(finished) == 1 and isinstance(finished[0], F.CancelFrame | F.EndFrame)


def test_3757_cancel_is_not_blocked_by_an_end_frame_waiting_to_drain() -> None:
    """https://github.com/pipecat-ai/pipecat/issues/3757 — a CancelFrame queued while an
    EndFrame waits for the pipeline to drain is stuck behind it. flowcat: a cancel preempts
    the EndFrame's chain at once (no waiting for ``end_timeout_secs``) and every processor's
    ``cancel()`` hook runs."""

    async def main() -> tuple[float, PipelineTask, HoldsEnd, list[str]]:
        log: list[str] = []
        holder = HoldsEnd(name="draining")
        task = PipelineTask(Pipeline([Hooks(log, name="a"), holder, Hooks(log, name="b")]), end_timeout_secs=1000)
        loop = asyncio.get_running_loop()
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(0)
        await task.queue_frames([*_goodbye(), F.EndFrame()])
        await asyncio.sleep(2.0)  # the EndFrame is stuck in "draining"
        t0 = loop.time()
        await task.cancel()
        await asyncio.wait_for(runner, 60)
        return loop.time() - t0, task, holder, log

    elapsed, task, holder, log = run_virtual(main())
    assert elapsed < 0.5
    assert task.stats.finished_by == "cancel"
    assert holder.cancelled_in_end
    assert log == ["a.cancel", "b.cancel"]  # the CancelFrame passed the whole pipeline


def test_4276_cancel_before_the_start_frame_reaches_the_sink_finishes() -> None:
    """https://github.com/pipecat-ai/pipecat/issues/4276 — ``task.cancel()`` while the
    StartFrame has not reached the sink yet (a slow connect during the handshake; the caller
    hangs up at once) leaves the task busy forever. flowcat: the cancel preempts the start
    — here stuck in a processor's ``process_frame``, and also as a queued ``CancelFrame``
    (tests/test_runtime_lifecycle.py covers a stuck ``start()`` hook and a cancel before run)."""

    class StuckOnStart(Passthrough):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            if isinstance(frame, F.StartFrame):
                await asyncio.Event().wait()  # e.g. a connect that never answers
            await super().process_frame(frame, direction)

    async def one(via_frame: bool) -> tuple[float, PipelineTask, list[F.Frame]]:
        log: list[str] = []
        task = PipelineTask(Pipeline([StuckOnStart(), Hooks(log, name="b")]), start_timeout_secs=1000,
                            hook_timeout_secs=1000)
        finished: list[F.Frame] = []
        task.add_event_handler("on_pipeline_finished", lambda _t, f: finished.append(f))
        loop = asyncio.get_running_loop()
        runner = asyncio.ensure_future(task.run())
        await asyncio.sleep(1.0)
        t0 = loop.time()
        if via_frame:
            await task.queue_frame(F.CancelFrame())
        else:
            await task.cancel()
        await asyncio.wait_for(runner, 60)
        return loop.time() - t0, task, finished

    async def main() -> list[tuple[float, PipelineTask, list[F.Frame]]]:
        return [await one(False), await one(True)]

    for elapsed, task, finished in run_virtual(main()):
        assert elapsed < 0.5 and task.has_finished()
        assert task.stats.finished_by == "cancel"
        assert [type(f) for f in finished] == [F.CancelFrame]


def test_5779_a_cancel_that_overtakes_the_in_progress_frame_leaves_no_in_progress_call() -> None:
    """https://github.com/pipecat-ai/pipecat/issues/5779 (and #3661) — the user interrupts
    while the bot still speaks the sentence before its tool call: the cancel (a system frame)
    overtakes the in-progress frame (queued behind the sentence in the TTS), and the
    assistant aggregator keeps the call ``IN_PROGRESS`` for the rest of the session. flowcat:
    the late in-progress frame of a cancelled call writes nothing."""

    class SpeakingTTS(FrameProcessor):
        async def process_frame(self, frame: F.Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, F.LLMTextFrame):
                await asyncio.sleep(1.0)  # synthesising "Let me check the weather."
            await self.push_frame(frame, direction)

    async def main() -> tuple[LLMContext, LLMAssistantAggregator, list[F.Frame]]:
        ctx = LLMContext()
        agg = LLMAssistantAggregator(ctx)
        call = F.FunctionCallFromLLM(function_name="get_weather", tool_call_id="call_1", arguments={})
        down, _ = await run_test(Pipeline([SpeakingTTS(), agg]), frames_to_send=[
            F.LLMFullResponseStartFrame(), F.LLMTextFrame(text="Let me check the weather."),
            F.FunctionCallsStartedFrame(function_calls=[call]),
            F.FunctionCallInProgressFrame(function_name="get_weather", tool_call_id="call_1", arguments={}),
            F.LLMFullResponseEndFrame(),
            SleepFrame(0.3),
            F.FunctionCallCancelFrame(function_name="get_weather", tool_call_id="call_1"),
            SleepFrame(3.0),
        ])
        return ctx, agg, down

    ctx, agg, _ = run_virtual(main())
    assert not agg.has_function_calls_in_progress
    assert all(m.get("content") != "IN_PROGRESS" for m in ctx.messages)
    assert all("tool_calls" not in m for m in ctx.messages)  # the cancelled call left no half-pair
    assert ctx.messages[-1] == {"role": "assistant", "content": "Let me check the weather."}


def test_754_the_turn_after_an_interruption_speaks_only_its_own_sentences() -> None:
    """https://github.com/pipecat-ai/pipecat/issues/754 — after a barge-in the bot says a
    sentence of the interrupted turn in the next turn (and drops one of the new turn's).
    flowcat: the interrupted turn's queued sentences are dropped with its context; the next
    turn speaks exactly its own sentences, in order, and every audio frame after the
    interruption belongs to the new turn. (Service-level: tests/test_services_tts.py
    ``test_interruption_stops_audio_and_drops_pending_text`` and
    ``test_websocket_audio_of_an_interrupted_context_is_never_played``.)"""
    from test_services_tts import HttpLikeTTS

    async def main() -> tuple[HttpLikeTTS, list[F.Frame]]:
        tts = HttpLikeTTS(delay=0.5)
        down, _ = await run_test(tts, frames_to_send=[
            F.LLMFullResponseStartFrame(), F.TextFrame("Old one. Old two. Old three. "),
            F.LLMFullResponseEndFrame(), SleepFrame(0.2), F.InterruptionFrame(),
            F.LLMFullResponseStartFrame(), F.TextFrame("New one. New two."), F.LLMFullResponseEndFrame(),
            SleepFrame(5.0),
        ])
        return tts, down

    tts, down = run_virtual(main())
    assert tts.spoken == ["Old one.", "New one.", "New two."]
    cut = next(i for i, f in enumerate(down) if isinstance(f, F.InterruptionFrame))
    new_contexts = {f.context_id for f in down[cut:] if isinstance(f, F.TTSStartedFrame)}
    audio_after = [f for f in down[cut:] if isinstance(f, F.TTSAudioRawFrame)]
    assert audio_after and {f.context_id for f in audio_after} <= new_contexts
    assert not [f for f in down[:cut] if isinstance(f, F.TTSAudioRawFrame)]  # "Old one." was cut mid-synthesis


def test_4997_the_next_generation_still_runs_the_same_tool() -> None:
    """https://github.com/pipecat-ai/pipecat/issues/4997 — a tool call of an interrupted
    generation still runs (a hallucinated ``end_call`` hangs up on a live caller).
    tests/test_services_functions.py shows the discarded generation's tools never run; the
    angle here: the guard is the generation, not the tool — the next generation's
    ``end_call`` runs once, and only it."""
    from flowcat.services import FunctionCallParams, LLMTextDelta
    from test_services_functions import ToolLLM, call, ctx, of

    async def main() -> tuple[list[str], list[F.Frame]]:
        llm = ToolLLM([[LLMTextDelta("Goodbye"), *call(0, "end_call"), 1.0],  # binned by the barge-in
                       [*call(0, "end_call", cid="call_next")]])
        ran: list[str] = []

        async def end_call(params: FunctionCallParams) -> None:
            ran.append(params.tool_call_id)
            await params.result_callback("ok")

        llm.register_function("end_call", end_call)
        down, _ = await run_test(llm, frames_to_send=[
            ctx(), SleepFrame(0.5), F.InterruptionFrame(), SleepFrame(2.0), ctx(), SleepFrame(2.0),
        ])
        return ran, down

    ran, down = run_virtual(main())
    assert ran == ["call_next"]
    assert [f.tool_call_id for f in of(down, F.FunctionCallResultFrame)] == ["call_next"]
