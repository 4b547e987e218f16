"""LLMAssistantAggregator: replies as spoken, interruptions, TTS utterances, function calls (frame sequences)."""

from __future__ import annotations

import json
from typing import Any

from flowcat import FrameDirection
from flowcat.agent import LLMAssistantAggregator, LLMContext
from flowcat.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    FunctionCallCancelFrame,
    FunctionCallFromLLM,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    FunctionCallResultProperties,
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMAssistantPushAggregationFrame,
    LLMContextAssistantTimestampFrame,
    LLMContextAssistantTurnFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMMessagesTransformFrame,
    LLMMessagesUpdateFrame,
    LLMRunFrame,
    LLMTextFrame,
    LLMThoughtTextFrame,
    TextFrame,
    TranscriptionFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.testing import SleepFrame, run_test, run_virtual

COMMITTED = [LLMContextFrame, LLMContextAssistantTimestampFrame, LLMContextAssistantTurnFrame]


def run(agg: Any, frames: list, down: list | None = None, up: list | None = None) -> tuple[list, list]:
    return run_virtual(run_test(agg, frames_to_send=frames, expected_down_frames=down, expected_up_frames=up))


class Events:
    def __init__(self, agg: Any) -> None:
        self.started = 0
        self.stopped: list[Any] = []
        self.added: list[Any] = []

        @agg.event_handler("on_assistant_turn_started")
        async def _started(_a: Any) -> None:
            self.started += 1

        @agg.event_handler("on_assistant_turn_stopped")
        async def _stopped(_a: Any, message: Any) -> None:
            self.stopped.append(message)

        @agg.event_handler("on_assistant_message_added")
        async def _added(_a: Any, message: Any) -> None:
            self.added.append(message)


def reply(*texts: str, frame: type = LLMTextFrame) -> list:
    return [LLMFullResponseStartFrame(), *(frame(text=t) for t in texts), LLMFullResponseEndFrame()]


# ------------------------------------------------------------------ text


def test_empty_reply_writes_nothing() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    run(agg, reply(), down=[], up=[])
    assert ctx.messages == []
    assert ev.started == 1 and [(m.content, m.interrupted) for m in ev.stopped] == [("", False)]
    assert ev.added == []


def test_llm_tokens_are_joined_as_produced() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    down, up = run(
        agg, reply("Hello ", "from ", "flowcat", "!"), down=COMMITTED, up=[LLMContextAssistantTurnFrame]
    )
    assert ctx.messages == [{"role": "assistant", "content": "Hello from flowcat!"}]
    assert down[0].context is ctx
    assert down[2].text == "Hello from flowcat!"
    assert ev.stopped[0].content == "Hello from flowcat!" and not ev.stopped[0].interrupted
    assert ev.added[0].content == "Hello from flowcat!"


def test_spoken_words_are_joined_with_spaces() -> None:
    ctx = LLMContext()
    run(
        LLMAssistantAggregator(ctx),
        reply("Hello", "Pipecat.", "How are", "you?", frame=TTSTextFrame),
        down=COMMITTED,
    )
    assert ctx.messages[0]["content"] == "Hello Pipecat. How are you?"


def test_mixed_spacing_runs() -> None:
    ctx = LLMContext()
    frames = [
        LLMFullResponseStartFrame(),
        LLMTextFrame(text="Here's some"),
        LLMTextFrame(text=" code:"),
        TextFrame(text="```print(1)```"),
        LLMTextFrame(text=" And more "),
        TextFrame(text="```x```"),
        LLMTextFrame(text="Done."),
        LLMFullResponseEndFrame(),
    ]
    run(LLMAssistantAggregator(ctx), frames)
    assert ctx.messages[0]["content"] == "Here's some code: ```print(1)``` And more ```x``` Done."


def test_text_not_for_the_context_and_user_text_are_skipped() -> None:
    ctx = LLMContext()
    frames = [
        LLMFullResponseStartFrame(),
        LLMTextFrame(text="Hi. "),
        LLMTextFrame(text="[aside]", append_to_context=False),
        TranscriptionFrame(text="user words", user_id="", timestamp=""),
        LLMThoughtTextFrame(text="thinking"),
        LLMTextFrame(text="Bye."),
        LLMFullResponseEndFrame(),
    ]
    down, _ = run(LLMAssistantAggregator(ctx), frames, down=[TranscriptionFrame, *COMMITTED])
    assert ctx.messages == [{"role": "assistant", "content": "Hi. Bye."}]


def test_two_replies_two_messages() -> None:
    ctx = LLMContext()
    run(LLMAssistantAggregator(ctx), reply("One.") + reply("Two."), down=COMMITTED * 2)
    assert [m["content"] for m in ctx.messages] == ["One.", "Two."]


# ------------------------------------------------------------ interruptions


def test_interruption_commits_what_was_said() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    frames = [
        LLMFullResponseStartFrame(),
        LLMTextFrame(text="Hello "),
        LLMTextFrame(text="there"),
        SleepFrame(),
        InterruptionFrame(),
        *reply("Yes?"),
    ]
    down, _ = run(agg, frames, down=[*COMMITTED, InterruptionFrame, *COMMITTED])
    assert [m["content"] for m in ctx.messages] == ["Hello there", "Yes?"]
    assert [(m.content, m.interrupted) for m in ev.stopped] == [("Hello there", True), ("Yes?", False)]


def test_interrupted_tts_reply_keeps_only_the_played_words() -> None:
    """The output transport releases each word's TTSTextFrame as its audio is sent; the
    interruption drops the rest, so only the words that reached us are committed."""
    ctx = LLMContext()
    frames = [
        LLMFullResponseStartFrame(),
        TTSStartedFrame(context_id="c1"),
        TTSTextFrame(text="The", aggregated_by="word"),
        TTSTextFrame(text="weather", aggregated_by="word"),
        SleepFrame(),
        InterruptionFrame(),
    ]
    run(LLMAssistantAggregator(ctx), frames)
    assert ctx.messages == [{"role": "assistant", "content": "The weather"}]


def test_interruption_without_a_turn_does_nothing() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    run(agg, [LLMTextFrame(text="stray"), InterruptionFrame()], down=[InterruptionFrame])
    assert ctx.messages == [] and ev.stopped == []


def test_pending_text_is_committed_at_end() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    down, _ = run(
        agg, [LLMFullResponseStartFrame(), LLMTextFrame(text="Goodbye.")], down=[*COMMITTED, EndFrame]
    )
    assert ctx.messages == [{"role": "assistant", "content": "Goodbye."}]
    assert not ev.stopped[0].interrupted


# ------------------------------------------------------------ TTS utterances


def test_tts_speak_utterance_is_a_turn() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    frames = [TTSStartedFrame(), TTSTextFrame(text="Welcome"), TTSTextFrame(text="back."), TTSStoppedFrame()]
    run(agg, frames, down=[TTSStartedFrame, *COMMITTED, TTSStoppedFrame])
    assert ctx.messages == [{"role": "assistant", "content": "Welcome back."}]
    assert ev.started == 1 and len(ev.stopped) == 1


def test_tts_inside_a_reply_does_not_open_a_second_turn() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    frames = [
        LLMFullResponseStartFrame(),
        TTSStartedFrame(),
        TTSTextFrame(text="Hi"),
        TTSStoppedFrame(),
        TTSStartedFrame(),
        TTSTextFrame(text="again."),
        TTSStoppedFrame(),
        LLMFullResponseEndFrame(),
    ]
    run(agg, frames)
    assert ev.started == 1 and len(ev.stopped) == 1
    assert ctx.messages == [{"role": "assistant", "content": "Hi again."}]


def test_push_aggregation_frame_commits_once() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    ev = Events(agg)
    frames = [
        TTSStartedFrame(),
        TTSTextFrame(text="Hold on."),
        LLMAssistantPushAggregationFrame(),
        TTSStoppedFrame(),
    ]
    run(agg, frames, down=[TTSStartedFrame, *COMMITTED, TTSStoppedFrame])
    assert len(ev.stopped) == 1 and ctx.messages == [{"role": "assistant", "content": "Hold on."}]


# ------------------------------------------------------------ context edits


def test_edits_run_the_llm_upstream() -> None:
    ctx = LLMContext([{"role": "user", "content": "a"}])
    frames = [
        LLMRunFrame(),
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "b"}]),
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "c"}], run_llm=True),
        LLMMessagesUpdateFrame(messages=[{"role": "user", "content": "d"}], run_llm=True),
        LLMMessagesTransformFrame(transform=lambda ms: ms + [{"role": "user", "content": "e"}], run_llm=True),
    ]
    run(LLMAssistantAggregator(ctx), frames, down=[], up=[LLMContextFrame] * 4)
    assert [m["content"] for m in ctx.messages] == ["d", "e"]


def test_tool_edits_are_applied_and_consumed() -> None:
    from flowcat.frames import LLMSetToolChoiceFrame, LLMSetToolsFrame

    ctx = LLMContext([{"role": "user", "content": "a"}])
    frames = [LLMSetToolsFrame(tools=[]), LLMSetToolChoiceFrame(tool_choice="none")]
    run(LLMAssistantAggregator(ctx), frames, down=[], up=[])
    assert ctx.tool_choice == "none"


def test_append_with_run_llm_waits_for_the_bot_to_stop() -> None:
    ctx = LLMContext()
    frames = [
        BotStartedSpeakingFrame(),
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "x"}], run_llm=True),
        SleepFrame(),
        BotStoppedSpeakingFrame(),
    ]
    run(
        LLMAssistantAggregator(ctx),
        frames,
        down=[BotStartedSpeakingFrame, BotStoppedSpeakingFrame],
        up=[LLMContextFrame],
    )


# ------------------------------------------------------------ function calls


def call(i: int, name: str = "get_weather") -> FunctionCallFromLLM:
    return FunctionCallFromLLM(function_name=name, tool_call_id=f"call_{i}", arguments={"city": "Paris"})


def in_progress(i: int, name: str = "get_weather", **kw: Any) -> FunctionCallInProgressFrame:
    return FunctionCallInProgressFrame(
        function_name=name, tool_call_id=f"call_{i}", arguments={"city": "Paris"}, **kw
    )


def result(i: int, value: Any = None, name: str = "get_weather", **kw: Any) -> FunctionCallResultFrame:
    return FunctionCallResultFrame(
        function_name=name,
        tool_call_id=f"call_{i}",
        arguments={"city": "Paris"},
        result={"temp": 21} if value is None else value,
        **kw,
    )


def test_function_call_bookkeeping_and_rerun() -> None:
    ctx = LLMContext([{"role": "user", "content": "Weather?"}])
    frames = [FunctionCallsStartedFrame(function_calls=[call(1)]), in_progress(1), SleepFrame()]
    agg = LLMAssistantAggregator(ctx)
    run(agg, frames, up=[])
    assert ctx.messages[1:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "IN_PROGRESS", "tool_call_id": "call_1"},
    ]
    ctx2 = LLMContext([{"role": "user", "content": "Weather?"}])
    run(LLMAssistantAggregator(ctx2), [*frames, result(1)], up=[LLMContextFrame])
    assert ctx2.messages[-1] == {
        "role": "tool",
        "content": json.dumps({"temp": 21}),
        "tool_call_id": "call_1",
    }


def test_parallel_calls_run_the_llm_once_after_the_last_result() -> None:
    ctx = LLMContext()
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1), call(2, "get_time")], group_id="llm:1"),
        in_progress(1),
        in_progress(2, "get_time"),
        result(1),
        SleepFrame(),
        result(2, "12:00", "get_time"),
    ]
    agg = LLMAssistantAggregator(ctx)
    _, up = run(agg, frames, up=[LLMContextFrame])
    assert [m["content"] for m in ctx.messages if m["role"] == "tool"] == ['{"temp": 21}', '"12:00"']
    assert not agg.has_function_calls_in_progress


def test_result_run_llm_false_and_properties() -> None:
    ctx = LLMContext()
    updated: list[str] = []

    async def on_updated() -> None:
        updated.append("yes")

    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1), call(2)]),
        in_progress(1),
        in_progress(2),
        result(1, run_llm=False),
        result(2, properties=FunctionCallResultProperties(run_llm=False, on_context_updated=on_updated)),
        SleepFrame(),
    ]
    run(LLMAssistantAggregator(ctx), frames, up=[])
    assert updated == ["yes"]


def test_empty_result_is_completed_and_does_not_rerun() -> None:
    ctx = LLMContext()
    frames = [FunctionCallsStartedFrame(function_calls=[call(1)]), in_progress(1), result(1, value="")]
    run(LLMAssistantAggregator(ctx), frames, up=[])
    assert ctx.messages[-1]["content"] == "COMPLETED"


def test_cancelled_call() -> None:
    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1)]),
        in_progress(1),
        FunctionCallCancelFrame(function_name="get_weather", tool_call_id="call_1"),
        result(1),
    ]
    run(agg, frames, up=[])  # the late result is ignored
    assert ctx.messages[-1] == {"role": "tool", "content": "CANCELLED", "tool_call_id": "call_1"}
    assert not agg.has_function_calls_in_progress


def test_result_while_the_user_speaks_leaves_the_run_to_their_turn() -> None:
    ctx = LLMContext()
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1)]),
        in_progress(1),
        UserStartedSpeakingFrame(),
        result(1),
        SleepFrame(),
        UserStoppedSpeakingFrame(),
    ]
    run(LLMAssistantAggregator(ctx), frames, up=[])
    assert ctx.messages[-1]["content"] == '{"temp": 21}'


def test_result_while_the_bot_speaks_runs_when_it_stops() -> None:
    ctx = LLMContext()
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1)]),
        in_progress(1),
        BotStartedSpeakingFrame(),
        result(1),
        SleepFrame(),
        BotStoppedSpeakingFrame(),
    ]
    down, up = run(LLMAssistantAggregator(ctx), frames, up=[LLMContextFrame])


def test_results_for_unknown_or_unannounced_calls_are_ignored() -> None:
    ctx = LLMContext()
    frames = [result(9), FunctionCallsStartedFrame(function_calls=[call(1)]), result(1)]
    agg = LLMAssistantAggregator(ctx)
    run(agg, frames, up=[])
    assert ctx.messages == []
    assert agg.stray_results == 2


def test_barge_in_behind_a_real_output_transport_commits_only_played_words() -> None:
    """Word frames queued behind audio in the output transport reach the aggregator as their
    audio goes out; an interruption at 250 ms leaves only the words already played."""
    import asyncio

    from flowcat.frames import TTSAudioRawFrame
    from test_transport_support import CHUNK, Harness, RecordingOutput, pcm

    async def main() -> None:
        ctx = LLMContext()
        agg = LLMAssistantAggregator(ctx)
        ev = Events(agg)
        async with Harness([RecordingOutput(), agg]) as h:
            await h.task.queue_frame(LLMFullResponseStartFrame())
            await h.task.queue_frame(TTSStartedFrame(context_id="c"))
            for i, word in enumerate(["One", "two", "three", "four"]):
                await h.task.queue_frame(TTSTextFrame(text=word, aggregated_by="word", context_id="c"))
                await h.task.queue_frame(
                    TTSAudioRawFrame(audio=pcm(10 * CHUNK, i), sample_rate=16000, context_id="c")
                )
            await asyncio.sleep(0.25)
            await h.task.queue_frame(InterruptionFrame())
            await asyncio.sleep(0.1)
            await h.task.queue_frame(EndFrame())
            await h.finish()
        assert ctx.messages == [{"role": "assistant", "content": "One two"}]
        assert [(m.content, m.interrupted) for m in ev.stopped] == [("One two", True)]

    run_virtual(main())


def test_thoughts_are_reported_and_kept_when_asked() -> None:
    from flowcat.agent import AnthropicLLMAdapter, LLMSpecificMessage
    from flowcat.frames import LLMThoughtEndFrame, LLMThoughtStartFrame

    ctx = LLMContext()
    agg = LLMAssistantAggregator(ctx)
    thoughts: list[Any] = []

    @agg.event_handler("on_assistant_thought")
    async def _thought(_a: Any, message: Any) -> None:
        thoughts.append(message)

    frames = [
        LLMThoughtStartFrame(append_to_context=True, llm="anthropic"),
        LLMThoughtTextFrame(text="The user "),
        LLMThoughtTextFrame(text="wants weather."),
        LLMThoughtEndFrame(signature="sig-1"),
        LLMThoughtStartFrame(),
        LLMThoughtTextFrame(text="not kept"),
        LLMThoughtEndFrame(),
        *reply("Sunny."),
    ]
    run(agg, frames, down=COMMITTED)
    assert [t.content for t in thoughts] == ["The user wants weather.", "not kept"]
    assert ctx.messages[0] == LLMSpecificMessage(
        "anthropic", {"type": "thought", "text": "The user wants weather.", "signature": "sig-1"}
    )
    assert len(ctx.messages) == 2
    msgs = AnthropicLLMAdapter().get_llm_invocation_params(
        LLMContext([{"role": "user", "content": "q"}, *ctx.messages])
    )
    assert msgs["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig-1"},
            {"type": "text", "text": "Sunny."},
        ],
    }


def test_audio_and_speaking_ticks_pass_inline() -> None:
    from flowcat.frames import BotSpeakingFrame, OutputAudioRawFrame

    agg = LLMAssistantAggregator(LLMContext())
    audio = OutputAudioRawFrame(audio=b"\x00\x00" * 160, sample_rate=8000)
    assert agg.process_inline(audio, FrameDirection.DOWNSTREAM) is audio
    down, _ = run(agg, [audio, BotSpeakingFrame()], down=[OutputAudioRawFrame, BotSpeakingFrame])
    assert down[0] is audio


def test_timed_words_count_once_their_audio_went_out() -> None:
    """Words with pts arriving ahead of their audio are held until the sent audio reaches them."""
    from flowcat.frames import TTSAudioRawFrame

    def word(text: str, at_ms: int) -> TTSTextFrame:
        f = TTSTextFrame(text=text, aggregated_by="word", context_id="c")
        f.pts = at_ms * 1_000_000
        return f

    def sent(ms: int) -> TTSAudioRawFrame:  # a chunk the output transport sent (16 kHz)
        return TTSAudioRawFrame(audio=b"\x01\x00" * (16 * ms), sample_rate=16000)

    ctx = LLMContext()
    frames = [
        LLMFullResponseStartFrame(),
        TTSStartedFrame(context_id="c"),
        word("Tomorrow", 0),
        word("it", 400),
        word("will", 550),
        word("rain", 700),
        sent(200),
        sent(200),
        sent(100),  # 500 ms out: "Tomorrow" and "it" have started
        SleepFrame(),
        InterruptionFrame(),
        *reply("Okay."),
    ]
    run(LLMAssistantAggregator(ctx), frames)
    assert [m["content"] for m in ctx.messages] == ["Tomorrow it", "Okay."]


def test_timed_words_all_count_when_the_utterance_ends() -> None:
    ctx = LLMContext()
    words = []
    for i, w in enumerate(["All", "of", "it."]):
        f = TTSTextFrame(text=w, aggregated_by="word")
        f.pts = i * 300_000_000
        words.append(f)
    run(
        LLMAssistantAggregator(ctx),
        [
            LLMFullResponseStartFrame(),
            TTSStartedFrame(),
            *words,
            TTSStoppedFrame(),
            LLMFullResponseEndFrame(),
        ],
    )
    assert ctx.messages == [{"role": "assistant", "content": "All of it."}]


def test_async_call_settles_in_place_until_the_user_speaks() -> None:
    from flowcat.agent._tool_calls import ASYNC_TOOL_PLACEHOLDER

    ctx = LLMContext()
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1), call(2)]),
        in_progress(1, cancel_on_interruption=False),
        in_progress(2, cancel_on_interruption=False),
        SleepFrame(),
    ]
    run(LLMAssistantAggregator(ctx), frames)
    assert [m["content"] for m in ctx.messages if m["role"] == "tool"] == [ASYNC_TOOL_PLACEHOLDER] * 2

    ctx = LLMContext()
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1), call(2)]),
        in_progress(1, cancel_on_interruption=False),
        in_progress(2, cancel_on_interruption=False),
        result(1),  # nothing happened since: the placeholder becomes the result
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "Anything else?"}]),
        result(2, {"temp": 9}),  # the user spoke since: a developer message, history untouched
        SleepFrame(),
    ]
    run(LLMAssistantAggregator(ctx), frames)
    tools = [m["content"] for m in ctx.messages if m["role"] == "tool"]
    assert tools == ['{"temp": 21}', ASYNC_TOOL_PLACEHOLDER]
    last = ctx.messages[-1]
    assert last["role"] == "developer" and "call_2" in last["content"] and '{"temp": 9}' in last["content"]


def test_async_call_cancelled_after_the_user_spoke_is_announced() -> None:
    ctx = LLMContext()
    frames = [
        FunctionCallsStartedFrame(function_calls=[call(1)]),
        in_progress(1, cancel_on_interruption=False),
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "Hello?"}]),
        FunctionCallCancelFrame(function_name="get_weather", tool_call_id="call_1"),
    ]
    run(LLMAssistantAggregator(ctx), frames)
    assert ctx.messages[-1]["role"] == "developer" and "cancelled" in ctx.messages[-1]["content"]
