"""The realtime-service mode of LLMContextAggregatorPair, one test (or group) per sentence of
its specification (the pipecat commit "Add RealtimeServiceModeConfig to
LLMContextAggregatorPair", seeds/004):

1. "Add a realtime_service_mode: RealtimeServiceModeConfig | None = None kwarg on
   LLMContextAggregatorPair." -> test_mode_is_off_by_default_and_cascade_writes_at_turn_end,
   test_mode_links_both_halves_with_one_lock
2. "When set, the pair switches both halves to trailing context writes: user messages are
   flushed on the first assistant content frame" -> test_user_message_waits_for_the_first_assistant_content,
   test_tts_started_also_counts_as_first_assistant_content
3. "... assistant messages on the next user transcript" -> test_assistant_message_waits_for_the_next_user_transcript
4. "... both halves on EndFrame." -> test_both_halves_flush_on_end_frame
5. "Turn-end strategies stop waiting for transcripts by default." ->
   test_turns_end_without_waiting_for_transcripts
6. "Two fine-grained boolean fields (context_writes_await_turns, turns_await_transcripts) let
   callers dial back to cascade-style behavior selectively" -> test_dial_back_to_cascade_writes,
   test_dial_back_turns_only
7. "their invalid combination is rejected in __post_init__." -> test_invalid_combination_rejected
8. "Cross-half coordination uses an asyncio.Lock and a back-reference shared by both halves; the
   assistant signals user.flush() on LLMFullResponseStartFrame, and the user signals
   assistant.flush() on the first new transcript after the assistant turn." ->
   test_mode_links_both_halves_with_one_lock (plus 2 and 3), and
   test_late_transcript_during_the_answer_goes_in_first (only the first transcript after the
   turn flushes it; a transcript during the answer is the previous turn's)
9. "The mechanism reuses the existing push_aggregation() — no parallel write path." ->
   test_assistant_flush_goes_through_push_aggregation
10. "Two new events fire when messages are flushed to context: on_user_message_added and
    on_assistant_message_added." -> test_message_added_events_fire_on_flush
11. "In cascade mode they coincide with the existing turn-stopped events" ->
    test_cascade_message_added_coincides_with_turn_stopped
12. "in realtime mode (where the turn-stopped event fires before the message is finalized)
    they're the canonical way ..." and "UserTurnStoppedMessage.content is now typed str | None
    to reflect that realtime mode fires the event with None." ->
    test_realtime_turn_stopped_fires_first_with_none
13. "When a RealtimeServiceMetadataFrame arrives and realtime_service_mode is None, the
    aggregator logs a one-time INFO recommendation pointing users at the option." ->
    test_metadata_without_the_mode_logs_one_recommendation, test_no_recommendation_with_the_mode
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowcat.agent import (
    LLMContext,
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
    RealtimeServiceModeConfig,
)
from flowcat.agent._realtime_mode import _reset_recommendation
from flowcat.errors import ConfigError
from flowcat.frames import (
    ControlFrame,
    Frame,
    InterruptionFrame,
    LLMContextAssistantTimestampFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    RealtimeServiceMetadataFrame,
    TranscriptionFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
    frame_dataclass,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.turns import ExternalUserTurnStrategies, SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies


@frame_dataclass
class Mark(ControlFrame):
    """Records the context when it reaches the end of the pipeline."""

    name: str = ""


class Probe(FrameProcessor):
    def __init__(self, ctx: LLMContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.seen: dict[str, list[Any]] = {}

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Mark):
            self.seen[frame.name] = [dict(m) for m in self.ctx.messages]
        await self.push_frame(frame, direction)


def _t(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="u", timestamp="")


REALTIME = RealtimeServiceModeConfig()


def _pair(ctx: LLMContext, mode: RealtimeServiceModeConfig | None = REALTIME,
          strategies: Any = None) -> LLMContextAggregatorPair:
    return LLMContextAggregatorPair(ctx, realtime_service_mode=mode, user_params=LLMUserAggregatorParams(
        user_turn_strategies=strategies if strategies is not None else ExternalUserTurnStrategies()))


def _run(pair: LLMContextAggregatorPair, ctx: LLMContext, frames: list[Frame]) -> tuple[Probe, list, list]:
    probe = Probe(ctx)
    down, up = run_virtual(run_test(Pipeline([pair.user(), pair.assistant(), probe]), frames_to_send=frames))
    return probe, down, up


def _reply(*words: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), TTSStartedFrame(), *(TTSTextFrame(w) for w in words), TTSStoppedFrame(),
            LLMFullResponseEndFrame()]


def _user_turn(text: str | None) -> list[Frame]:
    return [UserStartedSpeakingFrame(), UserStoppedSpeakingFrame(), *([_t(text)] if text else [])]


U = {"role": "user", "content": "What time is it?"}
A = {"role": "assistant", "content": "It is noon."}


# 1 --------------------------------------------------------------------------


def test_mode_is_off_by_default_and_cascade_writes_at_turn_end() -> None:
    ctx = LLMContext()
    pair = LLMContextAggregatorPair(ctx, user_params=LLMUserAggregatorParams(
        user_turn_strategies=ExternalUserTurnStrategies()))
    assert pair.realtime_service_mode is None
    probe, _, _ = _run(pair, ctx, [UserStartedSpeakingFrame(), _t("What time is it?"), UserStoppedSpeakingFrame(),
                                   Mark("turn"), *_reply("It is", "noon."), Mark("reply")])
    assert probe.seen["turn"] == [U]
    assert probe.seen["reply"] == [U, A]


def test_mode_links_both_halves_with_one_lock() -> None:
    pair = _pair(LLMContext())
    user, assistant = pair.user(), pair.assistant()
    assert user._rt is assistant._rt and user._rt is not None
    assert user._rt.user is user and user._rt.assistant is assistant
    assert user._rt.lock is assistant._rt.lock


# 2, 8 ------------------------------------------------------------------------


def test_user_message_waits_for_the_first_assistant_content() -> None:
    ctx = LLMContext()
    probe, _, _ = _run(_pair(ctx), ctx, [
        *_user_turn("What time is it?"), Mark("turn_over"),
        LLMFullResponseStartFrame(), Mark("started"), TTSStartedFrame(), TTSTextFrame("It is"),
        TTSTextFrame("noon."), TTSStoppedFrame(), LLMFullResponseEndFrame(), Mark("reply_over"),
    ])
    assert probe.seen["turn_over"] == []  # the turn ended (its transcript came late): nothing yet
    assert probe.seen["started"] == [U]
    assert probe.seen["reply_over"] == [U]  # trailing: the reply waits for the next transcript


def test_tts_started_also_counts_as_first_assistant_content() -> None:
    ctx = LLMContext()
    probe, _, _ = _run(_pair(ctx), ctx, [*_user_turn("What time is it?"), TTSStartedFrame(), Mark("tts")])
    assert probe.seen["tts"] == [U]


# 3, 8 ------------------------------------------------------------------------


def test_assistant_message_waits_for_the_next_user_transcript() -> None:
    ctx = LLMContext()
    probe, _, _ = _run(_pair(ctx), ctx, [
        *_user_turn("What time is it?"), *_reply("It is", "noon."),
        UserStartedSpeakingFrame(), Mark("speaking"), UserStoppedSpeakingFrame(), Mark("stopped"),
        _t("Thanks."), Mark("transcript"), TTSStartedFrame(), Mark("next"),
    ])
    assert probe.seen["speaking"] == [U] and probe.seen["stopped"] == [U]
    assert probe.seen["transcript"] == [U, A]  # the new transcript writes the previous reply first
    assert probe.seen["next"] == [U, A, {"role": "user", "content": "Thanks."}]


def test_late_transcript_during_the_answer_goes_in_first() -> None:
    ctx = LLMContext()
    probe, _, _ = _run(_pair(ctx), ctx, [
        UserStartedSpeakingFrame(), UserStoppedSpeakingFrame(), LLMFullResponseStartFrame(), TTSStartedFrame(),
        TTSTextFrame("It is"), _t("What time is it?"), Mark("late"), TTSTextFrame("noon."), TTSStoppedFrame(),
        LLMFullResponseEndFrame(), _t("Thanks."), Mark("after"),
    ])
    assert probe.seen["late"] == [U]
    assert probe.seen["after"] == [U, A]


def test_interrupted_reply_keeps_what_was_said_until_the_next_transcript() -> None:
    ctx = LLMContext()
    probe, _, _ = _run(_pair(ctx), ctx, [
        *_user_turn("What time is it?"), LLMFullResponseStartFrame(), TTSStartedFrame(), TTSTextFrame("It is"),
        InterruptionFrame(), Mark("cut"), _t("Stop."), Mark("after"),
    ])
    assert probe.seen["cut"] == [U]
    assert probe.seen["after"] == [U, {"role": "assistant", "content": "It is"}]


# 4 ---------------------------------------------------------------------------


def test_both_halves_flush_on_end_frame() -> None:
    ctx = LLMContext()
    _run(_pair(ctx), ctx, [*_user_turn("What time is it?"), *_reply("It is", "noon.")])
    assert ctx.messages == [U, A]  # the reply, held, went in at the EndFrame
    ctx2 = LLMContext()
    _run(_pair(ctx2), ctx2, [*_user_turn("What time is it?")])
    assert ctx2.messages == [U]  # the user's text, held, went in at the EndFrame


# 5, 6 ------------------------------------------------------------------------


def _vad_turn_ends(mode: RealtimeServiceModeConfig | None) -> tuple[list, LLMContextAggregatorPair]:
    ctx = LLMContext()
    strategies = UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(0.2)])
    pair = _pair(ctx, mode, strategies)
    _, down, _ = _run(pair, ctx, [VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame(), SleepFrame(1.0),
                                  Mark("after")])
    idx = next(i for i, f in enumerate(down) if isinstance(f, Mark))
    return down[:idx], pair


def test_turns_end_without_waiting_for_transcripts() -> None:
    before, pair = _vad_turn_ends(RealtimeServiceModeConfig())
    assert any(isinstance(f, UserStoppedSpeakingFrame) for f in before), "the turn waited for a transcript"
    assert all(not s.wait_for_transcript for s in pair.user()._stop)
    cascade, _ = _vad_turn_ends(None)
    assert not any(isinstance(f, UserStoppedSpeakingFrame) for f in cascade)  # cascade waits (5 s fallback)


def test_dial_back_turns_only() -> None:
    before, pair = _vad_turn_ends(RealtimeServiceModeConfig(turns_await_transcripts=True))
    assert not any(isinstance(f, UserStoppedSpeakingFrame) for f in before)
    assert all(s.wait_for_transcript for s in pair.user()._stop)
    assert pair.user()._rt is not None and pair.user()._rt.config.trailing  # writes stay trailing


def test_dial_back_to_cascade_writes() -> None:
    ctx = LLMContext()
    mode = RealtimeServiceModeConfig(context_writes_await_turns=True, turns_await_transcripts=True)
    probe, _, _ = _run(_pair(ctx, mode), ctx, [
        UserStartedSpeakingFrame(), _t("What time is it?"), UserStoppedSpeakingFrame(), Mark("turn"),
        *_reply("It is", "noon."), Mark("reply"),
    ])
    assert probe.seen["turn"] == [U]
    assert probe.seen["reply"] == [U, A]


# 7 ---------------------------------------------------------------------------


def test_invalid_combination_rejected() -> None:
    with pytest.raises(ConfigError, match="turns_await_transcripts"):
        RealtimeServiceModeConfig(context_writes_await_turns=True, turns_await_transcripts=False)
    RealtimeServiceModeConfig(context_writes_await_turns=False, turns_await_transcripts=True)  # valid


# 9 ---------------------------------------------------------------------------


def test_assistant_flush_goes_through_push_aggregation() -> None:
    ctx = LLMContext()
    _, down, _ = _run(_pair(ctx), ctx, [*_user_turn("What time is it?"), *_reply("It is", "noon."),
                                        Mark("reply"), _t("Thanks.")])
    idx = next(i for i, f in enumerate(down) if isinstance(f, Mark))
    after = [type(f) for f in down[idx:]]
    # push_aggregation's frames: the context, then the assistant timestamp
    i = after.index(LLMContextFrame)
    assert after[i + 1] is LLMContextAssistantTimestampFrame


# 10, 11, 12 ------------------------------------------------------------------


def _events(pair: LLMContextAggregatorPair, log: list[tuple[str, Any]]) -> None:
    user, assistant = pair.user(), pair.assistant()

    @user.event_handler("on_user_turn_stopped")
    async def _uts(_agg: Any, _strategy: Any, message: Any) -> None:
        log.append(("user_turn_stopped", message.content))

    @user.event_handler("on_user_message_added")
    async def _uma(_agg: Any, message: Any) -> None:
        log.append(("user_message_added", message.content))

    @assistant.event_handler("on_assistant_turn_stopped")
    async def _ats(_agg: Any, message: Any) -> None:
        log.append(("assistant_turn_stopped", message.content))

    @assistant.event_handler("on_assistant_message_added")
    async def _ama(_agg: Any, message: Any) -> None:
        log.append(("assistant_message_added", message.content))


def test_message_added_events_fire_on_flush() -> None:
    ctx = LLMContext()
    pair = _pair(ctx)
    log: list[tuple[str, Any]] = []
    _events(pair, log)
    _run(pair, ctx, [*_user_turn("What time is it?"), *_reply("It is", "noon."), _t("Thanks.")])
    added = [e for e in log if e[0].endswith("message_added")]
    assert added == [("user_message_added", "What time is it?"), ("assistant_message_added", "It is noon."),
                     ("user_message_added", "Thanks.")]


def test_cascade_message_added_coincides_with_turn_stopped() -> None:
    ctx = LLMContext()
    pair = _pair(ctx, None)
    log: list[tuple[str, Any]] = []
    _events(pair, log)
    _run(pair, ctx, [UserStartedSpeakingFrame(), _t("What time is it?"), UserStoppedSpeakingFrame(),
                     *_reply("It is", "noon.")])
    assert log == [("user_message_added", "What time is it?"), ("user_turn_stopped", "What time is it?"),
                   ("assistant_turn_stopped", "It is noon."), ("assistant_message_added", "It is noon.")]


def test_realtime_turn_stopped_fires_first_with_none() -> None:
    ctx = LLMContext()
    pair = _pair(ctx)
    log: list[tuple[str, Any]] = []
    _events(pair, log)
    _run(pair, ctx, [*_user_turn("What time is it?"), *_reply("It is", "noon."), _t("Thanks.")])
    assert log[:4] == [("user_turn_stopped", None), ("user_message_added", "What time is it?"),
                       ("assistant_turn_stopped", "It is noon."), ("assistant_message_added", "It is noon.")]


# 13 --------------------------------------------------------------------------


def test_metadata_without_the_mode_logs_one_recommendation(caplog: pytest.LogCaptureFixture) -> None:
    _reset_recommendation()
    ctx = LLMContext()
    with caplog.at_level(logging.INFO, logger="flowcat.agent"):
        _run(_pair(ctx, None), ctx, [RealtimeServiceMetadataFrame(service_name="rt"),
                                     RealtimeServiceMetadataFrame(service_name="rt")])
        _run(_pair(ctx, None), ctx, [RealtimeServiceMetadataFrame(service_name="rt")])
    hits = [r for r in caplog.records if "realtime_service_mode" in r.getMessage()]
    assert len(hits) == 1 and hits[0].levelno == logging.INFO


def test_no_recommendation_with_the_mode(caplog: pytest.LogCaptureFixture) -> None:
    _reset_recommendation()
    ctx = LLMContext()
    with caplog.at_level(logging.INFO, logger="flowcat.agent"):
        _, down, _ = _run(_pair(ctx), ctx, [RealtimeServiceMetadataFrame(service_name="rt")])
    assert not [r for r in caplog.records if "realtime_service_mode" in r.getMessage()]
    assert any(isinstance(f, RealtimeServiceMetadataFrame) for f in down)  # passed on
