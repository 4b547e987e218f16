"""The per-turn latency breakdown observer, on the virtual clock: stages of answered
turns from frame sequences, metrics frames, dropped and interrupted turns, summary."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowcat.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TurnLatencyMetricsData,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, TurnLatencyObserver
from flowcat.testing import SleepFrame, run_test, run_virtual
from test_transport_support import RATE, RecordingOutput


def _audio() -> TTSAudioRawFrame:
    return TTSAudioRawFrame(b"\0\0" * 160, 8000, 1)


def _turn(stt: float = 0.1, turn: float = 0.05, llm: float = 0.2, tts: float = 0.08, out: float = 0.02) -> list[Frame]:
    """One answered turn with the given stage gaps (seconds)."""
    return [
        VADUserStartedSpeakingFrame(), UserStartedSpeakingFrame(), SleepFrame(1.0),
        VADUserStoppedSpeakingFrame(stop_secs=0.2), SleepFrame(stt),
        TranscriptionFrame("hello", "u", ""), SleepFrame(turn),
        UserStoppedSpeakingFrame(), LLMFullResponseStartFrame(), SleepFrame(llm),
        LLMTextFrame("Hi"), LLMTextFrame(" there."), LLMFullResponseEndFrame(), SleepFrame(tts),
        _audio(), _audio(), SleepFrame(out),
        BotStartedSpeakingFrame(), SleepFrame(0.5), BotStoppedSpeakingFrame(),
    ]


class Relay(FrameProcessor):
    """A pass-through hop (observers see every push, so each frame is seen twice)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


def _run(frames: list[Frame], obs: TurnLatencyObserver) -> list[Frame]:
    down, _ = run_virtual(run_test(Pipeline([Relay(), Relay()]), frames_to_send=frames, observers=[obs], timeout=600))
    return down


def test_one_turn_stage_by_stage() -> None:
    obs = TurnLatencyObserver()
    seen: list[Any] = []
    obs.add_event_handler("on_turn_latency", lambda _o, d: seen.append(d))
    down = _run(_turn(), obs)
    [rec] = obs.turns
    assert seen == [rec]
    assert rec.turn == 1 and rec.vad_stop_secs == 0.2
    assert rec.stt_secs == pytest.approx(0.1)
    assert rec.turn_secs == pytest.approx(0.05)
    assert rec.llm_secs == pytest.approx(0.2)
    assert rec.tts_secs == pytest.approx(0.08)
    assert rec.output_secs == pytest.approx(0.02)
    assert rec.total_secs == pytest.approx(0.45)
    # Pushed downstream as a metrics frame, right behind the BotStartedSpeakingFrame.
    metrics = [f for f in down if isinstance(f, MetricsFrame)]
    assert [m.data for m in metrics] == [[rec]]
    kinds = [type(f) for f in down]
    assert kinds.index(MetricsFrame) == kinds.index(BotStartedSpeakingFrame) + 1


def test_summary_percentiles_over_turns() -> None:
    obs = TurnLatencyObserver(push_metrics=False)
    summaries: list[Any] = []
    obs.add_event_handler("on_summary", lambda _o, s: summaries.append(s))
    frames: list[Frame] = []
    for i in range(20):
        frames += _turn(llm=0.1 + 0.01 * i)
    down = _run(frames, obs)
    assert not [f for f in down if isinstance(f, MetricsFrame)]
    assert [r.turn for r in obs.turns] == list(range(1, 21))
    s = obs.summary
    assert s is not None and summaries == [s]
    assert s.turns == 20 and s.interrupted == 0
    assert s.stages["llm"].count == 20
    assert s.stages["llm"].p50 == pytest.approx(0.19)  # nearest rank: the 10th of 20
    assert s.stages["llm"].p95 == pytest.approx(0.28)  # the 19th
    assert s.stages["llm"].max == pytest.approx(0.29)
    assert s.stages["stt"].p50 == pytest.approx(0.1)
    assert s.stages["total"].p95 == pytest.approx(0.1 + 0.05 + 0.28 + 0.08 + 0.02)


def test_summary_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowcat.latency")
    _run(_turn(), TurnLatencyObserver())
    lines = [r.getMessage() for r in caplog.records if r.name == "flowcat.latency"]
    assert lines[0] == "turn latency: 1 turns answered, 0 interrupted"
    assert any(line.startswith("turn latency total ") and "450.0 ms" in line for line in lines)


def test_transcript_before_vad_stop_counts_as_zero_stt() -> None:
    obs = TurnLatencyObserver()
    frames: list[Frame] = [
        VADUserStartedSpeakingFrame(), SleepFrame(0.5), TranscriptionFrame("early", "u", ""), SleepFrame(0.1),
        VADUserStoppedSpeakingFrame(), SleepFrame(0.3), LLMFullResponseStartFrame(), SleepFrame(0.1),
        LLMTextFrame("ok"), SleepFrame(0.1), _audio(), BotStartedSpeakingFrame(),
    ]
    _run(frames, obs)
    [rec] = obs.turns
    assert rec.stt_secs == 0.0 and rec.turn_secs == pytest.approx(0.3)
    assert rec.total_secs == pytest.approx(0.5)


def test_user_going_on_is_one_turn_and_barge_in_drops_the_reply() -> None:
    obs = TurnLatencyObserver()
    frames: list[Frame] = [
        # A pause, then more speech: the later stop is the end of the turn.
        VADUserStartedSpeakingFrame(), SleepFrame(0.5), VADUserStoppedSpeakingFrame(), SleepFrame(0.3),
        VADUserStartedSpeakingFrame(), SleepFrame(0.5), VADUserStoppedSpeakingFrame(), SleepFrame(0.1),
        TranscriptionFrame("one turn", "u", ""), LLMFullResponseStartFrame(), SleepFrame(0.2),
        # The user speaks again before any bot audio: the reply is dropped, not measured.
        VADUserStartedSpeakingFrame(), SleepFrame(0.1), LLMTextFrame("stale"), _audio(), SleepFrame(0.4),
        VADUserStoppedSpeakingFrame(), SleepFrame(0.1), InterimTranscriptionFrame("x", "u", ""),
        TranscriptionFrame("again", "u", ""), LLMFullResponseStartFrame(), SleepFrame(0.2),
        LLMTextFrame("fresh"), SleepFrame(0.05), _audio(), BotStartedSpeakingFrame(),
    ]
    _run(frames, obs)
    [rec] = obs.turns
    assert obs.interrupted == 1
    assert rec.stt_secs == pytest.approx(0.1) and rec.llm_secs == pytest.approx(0.2)
    assert rec.tts_secs == pytest.approx(0.05) and rec.total_secs == pytest.approx(0.35)


def test_bot_audio_without_a_user_turn_is_not_a_turn_and_missing_stages_are_none() -> None:
    obs = TurnLatencyObserver()
    frames: list[Frame] = [
        _audio(), BotStartedSpeakingFrame(), SleepFrame(1.0), BotStoppedSpeakingFrame(),  # a greeting
        UserStartedSpeakingFrame(), SleepFrame(0.5), UserStoppedSpeakingFrame(), SleepFrame(0.3),
        _audio(), SleepFrame(0.01), BotStartedSpeakingFrame(),  # e.g. a canned reply: no STT, no LLM
    ]
    _run(frames, obs)
    [rec] = obs.turns
    assert rec.vad_stop_secs is None
    assert (rec.stt_secs, rec.turn_secs, rec.llm_secs) == (None, None, None)
    assert rec.tts_secs == pytest.approx(0.3) and rec.output_secs == pytest.approx(0.01)
    assert rec.total_secs == pytest.approx(0.31)
    assert isinstance(rec, TurnLatencyMetricsData)


def test_metrics_frame_goes_downstream_from_the_processor_that_started_speaking() -> None:
    class Output(FrameProcessor):
        """Stands in for an output transport: bot audio in, BotStartedSpeakingFrame both ways."""

        speaking = False

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame) and not self.speaking:
                self.speaking = True
                await self.push_frame(BotStartedSpeakingFrame(), FrameDirection.DOWNSTREAM)
                await self.push_frame(BotStartedSpeakingFrame(), FrameDirection.UPSTREAM)
                return
            await self.push_frame(frame, direction)

    obs = TurnLatencyObserver()
    frames: list[Frame] = [VADUserStoppedSpeakingFrame(), SleepFrame(0.2), LLMFullResponseStartFrame(),
                           LLMTextFrame("a"), SleepFrame(0.1), _audio()]
    down, up = run_virtual(run_test(Pipeline([Relay(), Output()]), frames_to_send=frames, observers=[obs], timeout=600))
    [rec] = obs.turns
    assert rec.total_secs == pytest.approx(0.3) and rec.output_secs == 0.0
    assert [type(f) for f in down if isinstance(f, BotStartedSpeakingFrame | MetricsFrame)] == [
        BotStartedSpeakingFrame, MetricsFrame]
    assert not [f for f in up if isinstance(f, MetricsFrame)]


def test_first_audio_out_is_when_the_output_transport_writes_the_first_bot_chunk() -> None:
    out = RecordingOutput()
    obs = TurnLatencyObserver()
    frames: list[Frame] = [
        VADUserStoppedSpeakingFrame(stop_secs=0.2), SleepFrame(0.15), TranscriptionFrame("hi", "u", ""),
        LLMFullResponseStartFrame(), SleepFrame(0.25), LLMTextFrame("Hello."), SleepFrame(0.05),
        TTSAudioRawFrame(b"\1\0" * (RATE // 50 * 3), RATE, 1), LLMFullResponseEndFrame(), SleepFrame(0.5),
    ]
    down, _ = run_virtual(run_test(Pipeline([Relay(), out]), frames_to_send=frames, observers=[obs], timeout=600))
    [rec] = obs.turns
    first_write = out.audio()[0][0]
    assert rec.user_stopped_at + rec.total_secs == pytest.approx(first_write)
    assert rec.stt_secs == pytest.approx(0.15) and rec.llm_secs == pytest.approx(0.25)
    assert rec.tts_secs == pytest.approx(0.05) and rec.total_secs == pytest.approx(0.45, abs=0.021)
    assert [f.data for f in down if isinstance(f, MetricsFrame)] == [[rec]]
