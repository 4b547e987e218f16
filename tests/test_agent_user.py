"""LLMUserAggregator: turns into context, context edits, mute, external turns (frame sequences)."""

from __future__ import annotations

from typing import Any

from flowcat.agent import (
    FunctionSchema,
    LLMAssistantAggregator,
    LLMContext,
    LLMContextAggregatorPair,
    LLMUserAggregator,
    LLMUserAggregatorParams,
    ToolsSchema,
)
from flowcat.frames import (
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FunctionCallFromLLM,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMContextUserTurnFrame,
    LLMMessagesAppendFrame,
    LLMMessagesTransformFrame,
    LLMMessagesUpdateFrame,
    LLMRunFrame,
    LLMSetToolChoiceFrame,
    LLMSetToolsFrame,
    TranscriptionFrame,
    TranslationFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import Pipeline
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.testing._harness import upstream
from flowcat.turns import (
    ExternalUserTurnStrategies,
    FirstSpeechUserMuteStrategy,
    FunctionCallUserMuteStrategy,
    SpeechTimeoutUserTurnStopStrategy,
    UserTurnStrategies,
)

WEATHER = FunctionSchema("get_weather", "Weather", {"city": {"type": "string"}}, ["city"])
TIME = FunctionSchema("get_time", "Time", {}, [])


def T(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="u", timestamp="now")


def run(agg: Any, frames: list, down: list | None = None, up: list | None = None) -> tuple[list, list]:
    return run_virtual(run_test(agg, frames_to_send=frames, expected_down_frames=down, expected_up_frames=up))


class Events:
    """Records an aggregator's events."""

    def __init__(self, agg: Any, *names: str) -> None:
        self.seen: list[tuple[str, tuple]] = []
        for name in names:
            agg.add_event_handler(name, self._make(name))

    def _make(self, name: str):
        async def handler(_agg: Any, *args: Any) -> None:
            self.seen.append((name, args))

        return handler

    def named(self, name: str) -> list[tuple]:
        return [a for n, a in self.seen if n == name]


# ------------------------------------------------------------ context edits


def test_llm_run_pushes_the_context() -> None:
    ctx = LLMContext()
    down, _ = run(LLMUserAggregator(ctx), [LLMRunFrame()], down=[LLMContextFrame])
    assert down[0].context is ctx


def test_messages_append_update_transform() -> None:
    ctx = LLMContext([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}])
    agg = LLMUserAggregator(ctx)
    frames = [
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "How are you?"}]),
        LLMMessagesTransformFrame(transform=lambda ms: [m for m in ms if m["role"] == "user"]),
    ]
    run(agg, frames, down=[])  # no run_llm: no LLMContextFrame
    assert ctx.messages == [{"role": "user", "content": "Hello"}, {"role": "user", "content": "How are you?"}]
    run(
        LLMUserAggregator(ctx), [LLMMessagesUpdateFrame(messages=[{"role": "user", "content": "x"}])], down=[]
    )
    assert ctx.messages == [{"role": "user", "content": "x"}]


def test_messages_edits_with_run_llm_push_the_context() -> None:
    ctx = LLMContext([{"role": "user", "content": "hello"}])
    frames = [
        LLMMessagesAppendFrame(messages=[{"role": "user", "content": "a"}], run_llm=True),
        LLMMessagesUpdateFrame(messages=[{"role": "user", "content": "b"}], run_llm=True),
        LLMMessagesTransformFrame(
            transform=lambda ms: [{**m, "content": m["content"].upper()} for m in ms], run_llm=True
        ),
    ]
    run(LLMUserAggregator(ctx), frames, down=[LLMContextFrame] * 3)
    assert ctx.messages == [{"role": "user", "content": "B"}]


def test_set_tools_and_tool_choice() -> None:
    ctx = LLMContext()
    down, _ = run(
        LLMUserAggregator(ctx),
        [LLMSetToolsFrame(tools=[WEATHER]), LLMSetToolChoiceFrame(tool_choice="required")],
        down=[LLMSetToolsFrame],  # passed on for live services; the tool choice is consumed
    )
    assert isinstance(ctx.tools, ToolsSchema) and ctx.tools.names() == {"get_weather"}
    assert ctx.tool_choice == "required"
    assert ctx.messages == []  # tool-change messages are off by default


def test_tool_change_messages_are_added_once_by_the_pair() -> None:
    ctx = LLMContext(tools=[WEATHER])
    user, assistant = LLMContextAggregatorPair(ctx, add_tool_change_messages=True)
    run(Pipeline([user, assistant]), [LLMSetToolsFrame(tools=ToolsSchema([TIME]))])
    assert len(ctx.messages) == 1
    note = ctx.messages[0]
    assert note["role"] == "developer"
    assert "`get_time`" in note["content"] and "`get_weather`" in note["content"]
    assert note["content"].index("`get_time`") < note["content"].index("withdrawn")


def test_tool_change_messages_removing_all_tools() -> None:
    ctx = LLMContext(tools=[WEATHER, TIME])
    agg = LLMAssistantAggregator(ctx)
    agg._tool_change = True
    run(agg, [LLMSetToolsFrame(tools=None), LLMSetToolsFrame(tools=[])])
    assert len(ctx.messages) == 1 and "withdrawn" in ctx.messages[0]["content"]
    assert ctx.tools is None


# ---------------------------------------------------------------- turns


def _stop_fast() -> LLMUserAggregatorParams:
    return LLMUserAggregatorParams(
        user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.1)])
    )


def test_turn_writes_context_and_runs_the_llm_before_the_stop_frame() -> None:
    ctx = LLMContext([{"role": "system", "content": "Be brief."}])
    agg = LLMUserAggregator(ctx, params=_stop_fast())
    ev = Events(
        agg,
        "on_user_turn_started",
        "on_user_turn_stopped",
        "on_user_turn_message_added",
        "on_user_message_added",
    )
    frames = [
        VADUserStartedSpeakingFrame(),
        T("Hello"),
        T("there."),
        SleepFrame(),
        VADUserStoppedSpeakingFrame(),
        SleepFrame(0.3),
    ]
    down, up = run(
        agg,
        frames,
        down=[
            UserStartedSpeakingFrame,
            InterruptionFrame,
            VADUserStartedSpeakingFrame,
            VADUserStoppedSpeakingFrame,
            LLMContextUserTurnFrame,
            LLMContextFrame,
            UserStoppedSpeakingFrame,
        ],
        up=[UserStartedSpeakingFrame, InterruptionFrame, LLMContextUserTurnFrame, UserStoppedSpeakingFrame],
    )
    assert ctx.messages[-1] == {"role": "user", "content": "Hello there."}
    assert not any(isinstance(f, TranscriptionFrame) for f in down)  # consumed
    assert ev.named("on_user_turn_started") == [(None,)]
    ((strategy, message),) = ev.named("on_user_turn_stopped")
    assert strategy is None and message.content == "Hello there." and message.timestamp.endswith("Z")
    assert [m.content for (m,) in ev.named("on_user_turn_message_added")] == ["Hello there."]
    assert len(ev.named("on_user_message_added")) == 1
    assert [f.text for f in down if isinstance(f, LLMContextUserTurnFrame)] == ["Hello there."]


def empty_turn() -> list:
    """Speech long enough to barge in, nothing transcribed.

    The turn waits for a transcript that never comes, so it ends at the 5 s stop timeout (as in pipecat).
    """
    return [VADUserStartedSpeakingFrame(), SleepFrame(0.6), VADUserStoppedSpeakingFrame(), SleepFrame(5.3)]


def bot_spoke() -> list:
    return [upstream(BotStartedSpeakingFrame()), upstream(BotStoppedSpeakingFrame())]


def test_empty_turn_while_the_bot_waits_writes_nothing() -> None:
    ctx = LLMContext()
    agg = LLMUserAggregator(ctx, params=_stop_fast())
    ev = Events(agg, "on_user_turn_stopped")
    down, _ = run(agg, [*bot_spoke(), *empty_turn()])
    assert ctx.messages == []
    assert not any(isinstance(f, LLMContextFrame) for f in down)
    assert [m.content for _s, m in ev.named("on_user_turn_stopped")] == [None]


def test_transcription_alone_starts_and_ends_a_turn() -> None:
    ctx = LLMContext()
    agg = LLMUserAggregator(ctx, params=_stop_fast())
    down, _ = run(agg, [T("Anyone there?"), SleepFrame(6.0)])
    # No VAD: the transcription starts the turn, the 5 s fallback ends it.
    assert [
        type(f)
        for f in down
        if isinstance(f, (UserStartedSpeakingFrame, LLMContextFrame, UserStoppedSpeakingFrame))
    ] == [UserStartedSpeakingFrame, LLMContextFrame, UserStoppedSpeakingFrame]
    assert ctx.messages == [{"role": "user", "content": "Anyone there?"}]


def test_interim_and_translation_are_consumed() -> None:
    ctx = LLMContext()
    down, _ = run(
        LLMUserAggregator(ctx),
        [
            InterimTranscriptionFrame(text="Hel", user_id="", timestamp=""),
            TranslationFrame(text="Hola", user_id="", timestamp=""),
        ],
        down=[UserStartedSpeakingFrame, InterruptionFrame],  # the interim starts a turn
    )
    assert ctx.messages == []


def test_pending_transcription_is_written_at_end_without_running_the_llm() -> None:
    ctx = LLMContext()
    agg = LLMUserAggregator(ctx)
    ev = Events(agg, "on_user_turn_stopped")
    down, _ = run(agg, [VADUserStartedSpeakingFrame(), T("Hello!")])  # no VAD stop: EndFrame comes first
    assert ctx.messages == [{"role": "user", "content": "Hello!"}]
    assert not any(isinstance(f, LLMContextFrame) for f in down)
    ((strategy, message),) = ev.named("on_user_turn_stopped")
    assert strategy is None and message.content == "Hello!"


def test_mute_strategies_keep_speech_out_of_the_context() -> None:
    ctx = LLMContext()
    agg = LLMUserAggregator(
        ctx,
        params=LLMUserAggregatorParams(
            user_mute_strategies=[FirstSpeechUserMuteStrategy(), FunctionCallUserMuteStrategy()]
        ),
    )
    ev = Events(agg, "on_user_turn_started")
    call = FunctionCallFromLLM(function_name="fn", tool_call_id="1", arguments={})
    frames = [
        upstream(BotStartedSpeakingFrame()),
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(),
        T("Hello!"),
        SleepFrame(),
        upstream(BotStoppedSpeakingFrame()),
        FunctionCallsStartedFrame(function_calls=[call]),
        SleepFrame(),
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(),
        T("Hello again!"),
        FunctionCallResultFrame(function_name="fn", tool_call_id="1", arguments={}, result={}),
        SleepFrame(),
    ]
    run(agg, frames)
    assert ev.named("on_user_turn_started") == []
    assert ctx.messages == []


def test_backchannel_over_the_bot_is_not_written() -> None:
    """Speech over the bot that never qualifies as a barge-in: resumed, its words dropped."""
    ctx = LLMContext()
    agg = LLMUserAggregator(ctx, params=_stop_fast())
    frames = [
        upstream(BotStartedSpeakingFrame()),
        VADUserStartedSpeakingFrame(),
        SleepFrame(0.1),
        VADUserStoppedSpeakingFrame(),
        T("mhm"),
        SleepFrame(2.0),
    ]
    down, _ = run(agg, frames)
    assert [
        type(f)
        for f in down
        if isinstance(f, (BotSpeechPauseFrame, BotSpeechResumeFrame, UserStartedSpeakingFrame))
    ] == [BotSpeechPauseFrame, BotSpeechResumeFrame]
    assert ctx.messages == []


def test_barge_in_words_are_written_after_the_interruption() -> None:
    ctx = LLMContext()
    agg = LLMUserAggregator(ctx, params=_stop_fast())
    frames = [
        upstream(BotStartedSpeakingFrame()),
        VADUserStartedSpeakingFrame(),
        T("Wait,"),
        SleepFrame(0.6),
        T("stop please."),
        VADUserStoppedSpeakingFrame(),
        SleepFrame(0.5),
    ]
    down, _ = run(agg, frames)
    kinds = [
        type(f)
        for f in down
        if isinstance(
            f,
            (
                BotSpeechPauseFrame,
                UserStartedSpeakingFrame,
                InterruptionFrame,
                LLMContextFrame,
                UserStoppedSpeakingFrame,
            ),
        )
    ]
    assert kinds == [
        BotSpeechPauseFrame,
        UserStartedSpeakingFrame,
        InterruptionFrame,
        LLMContextFrame,
        UserStoppedSpeakingFrame,
    ]
    assert ctx.messages == [{"role": "user", "content": "Wait, stop please."}]


def test_idle_event() -> None:
    agg = LLMUserAggregator(LLMContext(), params=LLMUserAggregatorParams(user_idle_timeout=1.0))
    ev = Events(agg, "on_user_turn_idle", "on_user_idle")
    run(agg, [upstream(BotStartedSpeakingFrame()), upstream(BotStoppedSpeakingFrame()), SleepFrame(1.5)])
    assert ev.named("on_user_turn_idle") == [()]
    assert ev.named("on_user_idle") == [(1,)]


# ---------------------------------------------------------------- external turns


def test_external_turns_follow_turn_frames_without_re_emitting() -> None:
    ctx = LLMContext()
    agg = LLMUserAggregator(
        ctx, params=LLMUserAggregatorParams(user_turn_strategies=ExternalUserTurnStrategies())
    )
    ev = Events(agg, "on_user_turn_started", "on_user_turn_stopped")
    frames = [
        UserStartedSpeakingFrame(),
        VADUserStartedSpeakingFrame(),
        T("Book a table"),
        VADUserStoppedSpeakingFrame(),
        T("for two."),
        SleepFrame(1.0),
        UserStoppedSpeakingFrame(),
    ]
    run(
        agg,
        frames,
        down=[
            UserStartedSpeakingFrame,
            VADUserStartedSpeakingFrame,
            VADUserStoppedSpeakingFrame,
            LLMContextUserTurnFrame,
            LLMContextFrame,
            UserStoppedSpeakingFrame,
        ],
    )
    assert ctx.messages == [{"role": "user", "content": "Book a table for two."}]
    assert len(ev.named("on_user_turn_started")) == 1
    assert ev.named("on_user_turn_stopped")[0][1].content == "Book a table for two."


def test_external_turns_behind_a_turn_processor() -> None:
    """UserTurnProcessor decides, the aggregator follows: one interruption, one context run."""
    from flowcat.turns import UserTurnProcessor

    ctx = LLMContext()
    turns = UserTurnProcessor(stop_strategies=[SpeechTimeoutUserTurnStopStrategy(timeout=0.1)])
    agg = LLMUserAggregator(
        ctx, params=LLMUserAggregatorParams(user_turn_strategies=ExternalUserTurnStrategies())
    )
    frames = [VADUserStartedSpeakingFrame(), T("Hi."), VADUserStoppedSpeakingFrame(), SleepFrame(0.5)]
    down, _ = run(Pipeline([turns, agg]), frames)
    kinds = [
        type(f)
        for f in down
        if isinstance(
            f, (UserStartedSpeakingFrame, InterruptionFrame, LLMContextFrame, UserStoppedSpeakingFrame)
        )
    ]
    assert kinds == [UserStartedSpeakingFrame, InterruptionFrame, LLMContextFrame, UserStoppedSpeakingFrame]
    assert ctx.messages == [{"role": "user", "content": "Hi."}]


def test_external_turns_still_apply_mute_strategies() -> None:
    from flowcat.turns import MuteUntilFirstBotCompleteUserMuteStrategy

    ctx = LLMContext()
    params = LLMUserAggregatorParams(
        user_turn_strategies=ExternalUserTurnStrategies(),
        user_mute_strategies=[MuteUntilFirstBotCompleteUserMuteStrategy()],
    )
    agg = LLMUserAggregator(ctx, params=params)
    ev = Events(agg, "on_user_mute_stopped")
    frames = [
        UserStartedSpeakingFrame(),
        T("over the greeting"),
        UserStoppedSpeakingFrame(),
        upstream(BotStartedSpeakingFrame()),
        upstream(BotStoppedSpeakingFrame()),
        SleepFrame(),
        UserStartedSpeakingFrame(),
        T("now heard"),
        UserStoppedSpeakingFrame(),
    ]
    down, _ = run(agg, frames)
    assert ctx.messages == [{"role": "user", "content": "now heard"}]
    assert sum(isinstance(f, UserStartedSpeakingFrame) for f in down) == 1
    assert len(ev.named("on_user_mute_stopped")) == 1


def test_empty_turn_over_the_bot_asks_the_user_to_repeat_once() -> None:
    from flowcat.agent import DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT

    ctx = LLMContext()
    agg = LLMUserAggregator(ctx, params=_stop_fast())
    frames = [
        upstream(BotStartedSpeakingFrame()),
        *empty_turn(),
        upstream(BotStartedSpeakingFrame()),
        *empty_turn(),
    ]
    down, _ = run(agg, frames)
    kinds = [
        type(f) for f in down if isinstance(f, (InterruptionFrame, LLMContextFrame, UserStoppedSpeakingFrame))
    ]
    # The first empty barge-in runs the LLM (before the turn's stop frame); the second is left alone.
    assert kinds == [
        InterruptionFrame,
        LLMContextFrame,
        UserStoppedSpeakingFrame,
        InterruptionFrame,
        UserStoppedSpeakingFrame,
    ]
    assert ctx.messages == [{"role": "developer", "content": DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT}]


def test_transcribed_turn_resets_the_empty_turn_count() -> None:
    from flowcat.agent import EmptyUserTurnConfig

    ctx = LLMContext()
    params = _stop_fast()
    params.empty_user_turn = EmptyUserTurnConfig(interrupted_prompt="again?", idle_prompt="hello?")
    agg = LLMUserAggregator(ctx, params=params)
    spoken = [VADUserStartedSpeakingFrame(), T("Hi."), VADUserStoppedSpeakingFrame(), SleepFrame(0.3)]
    frames = [*bot_spoke(), *empty_turn(), *empty_turn(), *spoken, *bot_spoke(), *empty_turn()]
    run(agg, frames)
    assert [m["content"] for m in ctx.messages] == ["hello?", "Hi.", "hello?"]


def test_empty_turn_recovery_can_be_turned_off() -> None:
    ctx = LLMContext()
    params = _stop_fast()
    params.empty_user_turn = None
    down, _ = run(LLMUserAggregator(ctx, params=params), [upstream(BotStartedSpeakingFrame()), *empty_turn()])
    assert ctx.messages == [] and not any(isinstance(f, LLMContextFrame) for f in down)


def test_tool_change_messages_only_for_real_changes() -> None:
    ctx = LLMContext()
    user = LLMUserAggregator(ctx, params=LLMUserAggregatorParams(add_tool_change_messages=True))
    custom = ToolsSchema([WEATHER], custom_tools={})
    run(
        user,
        [
            LLMSetToolsFrame(tools=[WEATHER]),
            LLMSetToolsFrame(tools=ToolsSchema([WEATHER])),
            LLMSetToolsFrame(tools=custom),
        ],
    )
    assert len(ctx.messages) == 1  # from none to get_weather; the same tools again add nothing
    assert "`get_weather`" in ctx.messages[0]["content"] and "withdrawn" not in ctx.messages[0]["content"]
