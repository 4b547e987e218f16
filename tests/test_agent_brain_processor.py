"""BrainProcessor with scripted brains: frames → events (turns, keys, silence, barge-in, end),
actions → frames (replies bracketed like an LLM's, EndTaskFrame, TransferCallFrame, tools fed
back, variables and path), one event at a time, and the fallbacks (a brain that raises, is late
or yields a non-action) with the call going on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from _brain_harness import BrainHarness
from flowcat.agent import (
    AgentBrain,
    BotInterrupted,
    BrainAction,
    BrainEvent,
    BrainProcessor,
    CallEnded,
    CallStarted,
    CallTool,
    Dtmf,
    EndCall,
    Say,
    SetVariable,
    Silence,
    ToolResult,
    Transfer,
    Transition,
    UserTurn,
)
from flowcat.frames import (
    BotStartedSpeakingFrame,
    EndFrame,
    EndTaskFrame,
    InputDTMFFrame,
    InterruptionFrame,
    KeypadEntry,
    LLMContextAssistantTurnFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection
from flowcat.testing import SleepFrame, run_test, run_virtual

UP = FrameDirection.UPSTREAM

Script = Callable[["ScriptedBrain", BrainEvent], AsyncIterator[Any]]


class ScriptedBrain(AgentBrain):
    """Records the events; answers each with ``script(self, event)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.events: list[BrainEvent] = []
        self.closed_streams = 0
        self.closed = False
        self.active = 0
        self.max_active = 0

    async def handle(self, event: BrainEvent) -> AsyncIterator[BrainAction]:
        self.events.append(event)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            async for a in self.script(self, event):
                yield a
        except (GeneratorExit, asyncio.CancelledError):  # closed, or cancelled at an await
            self.closed_streams += 1
            raise
        finally:
            self.active -= 1

    async def close(self) -> None:
        self.closed = True


async def echo(brain: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
    if isinstance(event, CallStarted):
        yield Say("Hi.")
    elif isinstance(event, UserTurn):
        yield Say(f"You said {event.text}.")
    elif isinstance(event, Dtmf):
        yield Say(f"Keys {event.digits}.")
    elif isinstance(event, Silence):
        yield Say(f"Silence {event.count}.")


def _events(brain: ScriptedBrain, kind: type) -> list[Any]:
    return [e for e in brain.events if isinstance(e, kind)]


def test_replies_are_bracketed_like_an_llm_response() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, CallStarted):
            yield Say("Hello there.")
            yield Say("How can I help?")

    brain = ScriptedBrain(script)
    down, _ = run_virtual(run_test(BrainProcessor(brain, silence_timeout_secs=None), frames_to_send=[],
                                   expected_down_frames=[LLMFullResponseStartFrame, LLMTextFrame, LLMTextFrame,
                                                         LLMFullResponseEndFrame]))
    assert [f.text for f in down if isinstance(f, LLMTextFrame)] == ["Hello there.", " How can I help?"]
    assert isinstance(brain.events[0], CallStarted) and isinstance(brain.events[-1], CallEnded)
    assert brain.events[-1].reason == "hangup" and brain.closed


def test_a_user_turn_is_the_transcripts_between_start_and_stop() -> None:
    brain = ScriptedBrain(echo)
    frames = [UserStartedSpeakingFrame(), TranscriptionFrame(text="book a", user_id="u", timestamp="", language="en"),
              TranscriptionFrame(text="table", user_id="u", timestamp=""), UserStoppedSpeakingFrame(),
              UserStartedSpeakingFrame(), UserStoppedSpeakingFrame()]  # noise: no turn
    down, _ = run_virtual(run_test(BrainProcessor(brain, silence_timeout_secs=None), frames_to_send=frames))
    assert _events(brain, UserTurn) == [UserTurn("book a table", "en", False)]
    assert not any(isinstance(f, TranscriptionFrame) for f in down)
    assert [f.text for f in down if isinstance(f, LLMTextFrame)] == ["Hi.", "You said book a table."]


def test_dtmf_keys_are_gathered_until_pound_or_a_pause() -> None:
    brain = ScriptedBrain(echo)
    keys = [InputDTMFFrame(button=KeypadEntry(k)) for k in "12#"]
    frames = [*keys, InputDTMFFrame(button=KeypadEntry.ZERO), *[]]
    proc = BrainProcessor(brain, silence_timeout_secs=None, dtmf_timeout_secs=1.0)
    run_virtual(run_test(proc, frames_to_send=[*frames, SleepFrame(sleep=1.5)]))
    assert _events(brain, Dtmf) == [Dtmf("12#"), Dtmf("0")]


def test_silence_counts_in_a_row_and_an_answer_resets_it() -> None:
    async def main() -> None:
        brain = ScriptedBrain(echo)
        async with BrainHarness(BrainProcessor(brain, silence_timeout_secs=4.0), speak_secs=1.0) as h:
            await h.greeting()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await h.next_reply(1) == "Silence 1."
            assert loop.time() - t0 == 5.0  # 1 s playing the greeting, then 4 s of silence
            assert await h.next_reply(2) == "Silence 2."
            assert await h.user("hello") == "You said hello."
            assert await h.next_reply(4) == "Silence 1."
        assert [e.count for e in _events(brain, Silence)] == [1, 2, 1]
        assert {e.seconds for e in _events(brain, Silence)} == {4.0}

    run_virtual(main())


def test_no_silence_while_the_user_speaks() -> None:
    async def main() -> None:
        brain = ScriptedBrain(echo)
        async with BrainHarness(BrainProcessor(brain, silence_timeout_secs=3.0), speak_secs=0.5) as h:
            await h.greeting()
            await h.send(UserStartedSpeakingFrame())
            await asyncio.sleep(10)
            assert _events(brain, Silence) == []
            await h.send(TranscriptionFrame(text="a long story", user_id="u", timestamp=""))
            await h.send(UserStoppedSpeakingFrame())
            assert await h.next_reply(1) == "You said a long story."

    run_virtual(main())


def test_events_run_one_at_a_time() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn):
            await asyncio.sleep(1.0)
            yield Say(f"Done {event.text}.")

    async def main() -> None:
        brain = ScriptedBrain(script)
        async with BrainHarness(BrainProcessor(brain, silence_timeout_secs=None)) as h:
            for t in ("a", "b", "c"):
                await h.send(TranscriptionFrame(text=t, user_id="u", timestamp=""))
            assert await h.next_reply(2) == "Done c."
        assert h.speaker.replies == ["Done a.", "Done b.", "Done c."]
        assert brain.max_active == 1

    run_virtual(main())


def test_barge_in_abandons_the_stream_and_reports_what_was_said() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn) and event.text == "tell me a story":
            yield Say("Once upon a time.")
            await asyncio.sleep(60)
            yield Say("The end.")
        elif isinstance(event, UserTurn):
            yield Say("OK.")

    async def main() -> None:
        brain = ScriptedBrain(script)
        proc = BrainProcessor(brain, silence_timeout_secs=None)
        async with BrainHarness(proc) as h:
            await h.send(TranscriptionFrame(text="tell me a story", user_id="u", timestamp=""))
            await asyncio.sleep(1)
            await h.send(BotStartedSpeakingFrame(), UP)
            await h.send(InterruptionFrame())
            await h.send(UserStartedSpeakingFrame())
            await asyncio.sleep(0.1)
            assert brain.closed_streams == 1  # the story's generator was closed
            await h.send(TranscriptionFrame(text="stop", user_id="u", timestamp=""))
            await h.send(UserStoppedSpeakingFrame())
            assert await h.next_reply(0) == "OK."
        assert brain.events[1:4] == [UserTurn("tell me a story"), BotInterrupted("Once upon a time."),
                                     UserTurn("stop", None, True)]
        assert not any(isinstance(f, LLMTextFrame) and f.text.strip() == "The end." for f in h.speaker.frames)

    run_virtual(main())


def test_bot_interrupted_takes_the_committed_text_from_the_assistant_aggregator() -> None:
    async def main() -> None:
        brain = ScriptedBrain(echo)
        async with BrainHarness(BrainProcessor(brain, silence_timeout_secs=None), speak_secs=30) as h:
            await h.greeting()
            await asyncio.sleep(0.5)  # the greeting is playing
            await h.send(InterruptionFrame())
            await h.send(LLMContextAssistantTurnFrame(text="Hi", timestamp=""), UP)
            assert await h.user("hey") == "You said hey."
        assert brain.events[1:3] == [BotInterrupted("Hi"), UserTurn("hey", None, True)]

    run_virtual(main())


def test_end_call_says_goodbye_then_ends_the_task() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn):
            yield SetVariable("reason", "done")
            yield EndCall(say="Bye now.", disposition="resolved")
            yield Say("never said")

    async def main() -> None:
        brain = ScriptedBrain(script)
        proc = BrainProcessor(brain, silence_timeout_secs=None)
        ended: list[Any] = []
        proc.add_event_handler("on_end_call", lambda p, d: ended.append(d))
        async with BrainHarness(proc) as h:
            await h.send(TranscriptionFrame(text="that's all", user_id="u", timestamp=""))
            await h.wait_ended()
        assert h.speaker.replies == ["Bye now."]
        kinds = [type(f) for f in h.speaker.frames]
        assert kinds[-4:] == [LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame, EndFrame]
        assert ended == ["resolved"] and proc.disposition == "resolved"
        assert proc.end_reason == "ended_by_agent" and brain.events[-1] == CallEnded("ended_by_agent")
        assert proc.call.variables == {"reason": "done"}

    run_virtual(main())


def test_end_call_pushes_end_task_upstream() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, CallStarted):
            yield EndCall(say="Closed today.")

    _, up = run_virtual(run_test(BrainProcessor(ScriptedBrain(script), silence_timeout_secs=None),
                                 frames_to_send=[SleepFrame(sleep=1.0)], send_end_frame=False))
    assert [type(f) for f in up] == [EndTaskFrame]


def test_transfer_says_then_pushes_the_transfer_frame() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn):
            yield Transition("handoff")
            yield Transfer("sip:desk@example.com", say="Transferring you.")

    async def main() -> None:
        proc = BrainProcessor(ScriptedBrain(script), silence_timeout_secs=None)
        moves: list[str] = []
        proc.add_event_handler("on_transition", lambda p, n: moves.append(n))
        targets: list[str] = []
        proc.add_event_handler("on_transfer", lambda p, t: targets.append(t))
        async with BrainHarness(proc) as h:
            assert await h.user("a person please") == "Transferring you."
            await asyncio.sleep(0.1)
            names = [type(f).__name__ for f in h.speaker.frames]
            assert names[names.index("LLMFullResponseEndFrame") + 1] == "TransferCallFrame"
        assert moves == ["handoff"] and proc.path == ["handoff"]
        assert targets == ["sip:desk@example.com"] and proc.transferred_to == "sip:desk@example.com"

    run_virtual(main())


def test_tool_calls_run_and_their_results_come_back() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn):
            yield Say("Let me check.")
            yield CallTool("t1", "lookup", {"order": "42"})
            yield CallTool("t2", "missing", {})
            yield CallTool("t3", "broken", {})
        elif isinstance(event, ToolResult) and event.tool_call_id == "t1":
            yield Say(f"It is {event.result['status']}.")

    async def lookup(args: Any) -> Any:
        await asyncio.sleep(2)
        return {"status": "shipped", "order": args["order"]}

    async def broken(args: Any) -> Any:
        raise ValueError("db down")

    async def main() -> None:
        brain = ScriptedBrain(script)
        proc = BrainProcessor(brain, tools={"lookup": lookup}, silence_timeout_secs=None)
        proc.register_tool("broken", broken)
        async with BrainHarness(proc) as h:
            assert await h.user("where is my order") == "Let me check."
            assert await h.next_reply(1) == "It is shipped."
        results = {e.tool_call_id: e for e in _events(brain, ToolResult)}
        assert results["t1"] == ToolResult("t1", "lookup", {"status": "shipped", "order": "42"}, None)
        assert results["t2"].error == "unknown tool 'missing'"
        assert results["t3"].error == "ValueError: db down"

    run_virtual(main())


def _fallback_case(script: Script, **kw: Any) -> tuple[ScriptedBrain, BrainHarness, list[Any]]:
    brain = ScriptedBrain(script)
    proc = BrainProcessor(brain, silence_timeout_secs=None, fallback_text="Sorry, say again?", **kw)
    errors: list[Any] = []
    proc.add_event_handler("on_brain_error", lambda p, e, why: errors.append((type(e).__name__, why)))
    return brain, BrainHarness(proc), errors


def test_a_brain_that_raises_gets_the_fallback_and_the_call_goes_on(caplog: Any) -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn) and event.text == "boom":
            yield Say("Part one.")
            raise RuntimeError("bug")
        if isinstance(event, UserTurn):
            yield Say("Fine.")

    async def main() -> None:
        brain, h, errors = _fallback_case(script, call=None)
        async with h:
            assert await h.user("boom") == "Part one. Sorry, say again?"
            assert await h.user("again") == "Fine."
        assert errors == [("UserTurn", "RuntimeError('bug')")]

    run_virtual(main())
    assert any("UserTurn failed" in r.getMessage() and "RuntimeError" in r.getMessage() for r in caplog.records)


def test_a_late_brain_gets_the_fallback_at_the_deadline() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn) and event.text == "slow":
            await asyncio.sleep(100)
            yield Say("too late")
        elif isinstance(event, UserTurn):
            yield Say("Quick.")

    async def main() -> None:
        brain, h, errors = _fallback_case(script, first_action_timeout_secs=3.0)
        async with h:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await h.user("slow") == "Sorry, say again?"
            assert loop.time() - t0 == 3.0
            assert await h.user("next") == "Quick."
        assert errors == [("UserTurn", "no action within the deadline")]
        assert brain.closed_streams == 1 and brain.active == 0  # the late stream was abandoned

    run_virtual(main())


def test_a_non_action_gets_the_fallback() -> None:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, UserTurn):
            yield "just a string"

    async def main() -> None:
        brain, h, errors = _fallback_case(script)
        async with h:
            assert await h.user("hi") == "Sorry, say again?"
            assert await h.user("hi again") == "Sorry, say again?"
        assert [e[0] for e in errors] == ["UserTurn", "UserTurn"]
        assert "not an action" in errors[0][1]

    run_virtual(main())


def test_a_brain_factory_gets_the_call() -> None:
    seen: list[Any] = []

    def factory(call: Any) -> AgentBrain:
        seen.append(call)
        return ScriptedBrain(echo)

    proc = BrainProcessor(factory, silence_timeout_secs=None)
    proc.call.variables["brand"] = "Acme"
    run_virtual(run_test(proc, frames_to_send=[]))
    assert seen == [proc.call] and isinstance(proc.brain, ScriptedBrain)
    assert isinstance(proc.brain.events[0], CallStarted) and proc.brain.events[0].call.variables == {"brand": "Acme"}


def test_audio_passes_inline_without_process_frame(monkeypatch: Any) -> None:
    from flowcat.frames import InputAudioRawFrame

    seen: list[Any] = []
    original = BrainProcessor.process_frame

    async def counting(self: Any, frame: Any, direction: FrameDirection) -> None:
        seen.append(type(frame))
        await original(self, frame, direction)

    monkeypatch.setattr(BrainProcessor, "process_frame", counting)
    audio = [InputAudioRawFrame(audio=b"\x00\x00" * 160, sample_rate=16000, num_channels=1) for _ in range(3)]
    down, _ = run_virtual(run_test(BrainProcessor(ScriptedBrain(echo), silence_timeout_secs=None),
                                   frames_to_send=audio))
    assert [f for f in down if isinstance(f, InputAudioRawFrame)] == audio
    assert InputAudioRawFrame not in seen and LLMTextFrame not in seen  # (own pushes never come back)
    assert seen  # the lifecycle frames did go through process_frame
