"""Pipecat 1.14 user-turn parity and preemptive generation, as timed event scripts.

Pipecat's tests (tests/test_user_turn_stop_strategy.py, test_user_turn_start_strategy.py,
test_user_turn_controller.py) describe timing with S (VAD start), E (VAD stop),
I (interim), T (final); these scripts reproduce the behaviours that matter, on the
virtual clock, with flowcat's processor.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowcat import Pipeline
from flowcat.frames import (
    EagerEndOfTurnCancelFrame,
    EagerEndOfTurnConfirmFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    STTMetadataFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnSpeculationFrame,
)
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.turns import (
    ExternalUserTurnStrategies,
    MinWordsUserTurnStartStrategy,
    PreemptiveGate,
    SpeechTimeoutUserTurnStopStrategy,
    TurnAnalyzerUserTurnStopStrategy,
    TurnPrediction,
    UserTurnProcessor,
    UserTurnStrategies,
    VADUserTurnStartStrategy,
)
from test_turns_processor import BOT_OFF, BOT_ON, DOWN, UP, E, I, Result, S, T, _Stamp, run_script

TURN = (
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    InterruptionFrame,
    UserTurnSpeculationFrame,
    EagerEndOfTurnConfirmFrame,
    EagerEndOfTurnCancelFrame,
)


def seq(r: Result, direction: Any = DOWN) -> list[tuple[str, float]]:
    seen = r.down if direction is DOWN else r.up
    return [(type(f).__name__, t) for t, f in seen if isinstance(f, TURN)]


def stops(r: Result) -> list[float]:
    return [t for name, t in seq(r) if name == "UserStoppedSpeakingFrame"]


def TF(text: str) -> Frame:  # a finalized transcript (the STT says nothing more is coming)
    return TranscriptionFrame(text=text, finalized=True)


# --------------------------------------------------- stop: wait for the transcript


def test_stop_waits_for_a_late_final_transcript() -> None:
    """S E ... T: the STT lags the VAD by 1.5 s; the turn does not end at E+0.6 (the
    pipecat #4279 drop) but the moment the final transcript arrives."""
    r = run_script(UserTurnProcessor(), [(0.0, S()), (1.0, E()), (2.5, T("what time is it"))], until=4.0)
    assert stops(r) == [2.5]
    names = [type(f).__name__ for _, f in r.down]
    assert names.index("TranscriptionFrame") < names.index("UserStoppedSpeakingFrame")


def test_stop_with_transcript_in_hand_ends_at_the_speech_timeout() -> None:
    """S I E T: the final came within the 0.6 s speech timeout: the turn ends at E+0.6."""
    r = run_script(
        UserTurnProcessor(), [(0.0, S()), (0.5, I("what")), (1.0, E()), (1.2, T("what now"))], until=3.0
    )
    assert stops(r) == [1.6]


def test_stt_p99_safety_net_waits_past_the_speech_timeout() -> None:
    """STT p99 1.2 s, VAD stop_secs 0.2: after E the turn waits 1.0 s for a final that
    may still revise the text (a non-finalized T before E does not end it at E+0.6)."""
    script = [(0.0, STTMetadataFrame(ttfs_p99_latency=1.2)), (0.1, S()), (0.8, T("book a")), (1.0, E())]
    r = run_script(UserTurnProcessor(), script, until=4.0)
    assert stops(r) == [2.0]


def test_finalized_transcript_short_circuits_the_stt_wait() -> None:
    """Same, but the STT finalizes at E+0.1: only the 0.6 s speech timeout remains."""
    script = [
        (0.0, STTMetadataFrame(ttfs_p99_latency=1.2)),
        (0.1, S()),
        (1.0, E()),
        (1.1, TF("book a table")),
    ]
    r = run_script(UserTurnProcessor(), script, until=4.0)
    assert stops(r) == [1.6]


def test_no_transcript_ends_at_the_stop_timeout_with_its_event() -> None:
    """S E and the STT never answers: user_turn_stop_timeout (5 s after E) ends the
    turn and fires on_user_turn_stop_timeout (stop strategy None)."""
    proc = UserTurnProcessor()
    events: list[tuple[str, Any]] = []
    proc.add_event_handler("on_user_turn_stop_timeout", lambda p: events.append(("timeout", None)))
    proc.add_event_handler("on_user_turn_stopped", lambda p, s: events.append(("stopped", s)))
    r = run_script(proc, [(0.0, S()), (1.0, E())], until=7.0)
    assert stops(r) == [6.0]
    assert events == [("timeout", None), ("stopped", None)]


def test_inference_triggered_fires_with_the_turn_stop() -> None:
    proc = UserTurnProcessor()
    events: list[str] = []
    proc.add_event_handler("on_user_turn_inference_triggered", lambda p, s: events.append(type(s).__name__))
    proc.add_event_handler("on_user_turn_stopped", lambda p, s: events.append("stopped"))
    run_script(proc, [(0.0, S()), (0.8, T("hi")), (1.0, E())], until=3.0)
    assert events == ["SpeechTimeoutUserTurnStopStrategy", "stopped"]


def test_user_turn_strategies_bundle() -> None:
    """pipecat's user_turn_strategies=UserTurnStrategies(start=..., stop=...)."""
    strategies = UserTurnStrategies(
        start=[VADUserTurnStartStrategy()], stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)]
    )
    proc = UserTurnProcessor(user_turn_strategies=strategies)
    r = run_script(proc, [(0.0, S()), (0.8, T("yes")), (1.0, E())], until=3.0)
    assert stops(r) == [1.3]
    assert UserTurnStrategies().stop is not None and len(UserTurnStrategies().stop or []) == 1


# ------------------------------------------------------------ min-words barge-in


def test_min_words_barge_in_starts_the_turn_as_soon_as_the_count_is_met() -> None:
    """VAD start over the bot pauses it; an interim with 2 words (min_words=2) starts
    the turn and interrupts at once — 0.1 s of speech, well under min_duration 0.5."""
    proc = UserTurnProcessor(
        start_strategies=[VADUserTurnStartStrategy(), MinWordsUserTurnStartStrategy(2)],
        stop_strategies=[SpeechTimeoutUserTurnStopStrategy(wait_for_transcript=False)],
    )
    r = run_script(proc, [(0.0, BOT_ON()), (1.0, S()), (1.05, I("wait")), (1.1, I("wait stop"))], until=1.5)
    assert seq(r) == [("UserStartedSpeakingFrame", 1.1), ("InterruptionFrame", 1.1)]
    assert [n for n, _ in r.passed(I("").__class__)] == ["InterimTranscriptionFrame"] * 2


def test_min_words_alone_interrupts_on_the_count_without_pause() -> None:
    """start=[MinWords(3)] over the bot: 1 word does nothing, 3 words start the turn now."""
    proc = UserTurnProcessor(start_strategies=[MinWordsUserTurnStartStrategy(3)])
    r = run_script(
        proc, [(0.0, BOT_ON()), (1.0, S()), (1.1, I("hold")), (1.2, I("hold on please"))], until=1.5
    )
    assert seq(r) == [("UserStartedSpeakingFrame", 1.2), ("InterruptionFrame", 1.2)]


# ---------------------------------------------------------------- external turns


def test_external_proposals_are_resolved_into_turn_frames() -> None:
    """An STT that reports turns: its proposals become the turn (with the interruption,
    even over the bot) and are not passed on."""
    proc = UserTurnProcessor(user_turn_strategies=ExternalUserTurnStrategies())
    script = [
        (0.0, BOT_ON()),
        (0.5, ProposedUserStartedSpeakingFrame()),
        (1.0, T("cancel my order")),
        (1.2, ProposedUserStoppedSpeakingFrame()),
    ]
    r = run_script(proc, script, until=3.0)
    expected = [
        ("UserStartedSpeakingFrame", 0.5),
        ("InterruptionFrame", 0.5),
        ("UserStoppedSpeakingFrame", 1.2),
    ]
    assert seq(r) == expected and seq(r, UP) == expected
    assert not r.passed(ProposedUserStartedSpeakingFrame, ProposedUserStoppedSpeakingFrame)


def test_external_stop_waits_for_a_late_transcript() -> None:
    """Proposed stop before the final transcript: the turn ends 0.5 s after it arrives."""
    proc = UserTurnProcessor(user_turn_strategies=ExternalUserTurnStrategies())
    script = [
        (0.0, ProposedUserStartedSpeakingFrame()),
        (1.0, ProposedUserStoppedSpeakingFrame()),
        (1.3, T("hi")),
    ]
    r = run_script(proc, script, until=3.0)
    assert stops(r) == [1.8]


def test_external_adopts_a_turn_announced_upstream() -> None:
    """UserStarted/Stopped from upstream: adopted (events fire), nothing re-announced."""
    proc = UserTurnProcessor(user_turn_strategies=ExternalUserTurnStrategies())
    events: list[str] = []
    proc.add_event_handler("on_user_turn_started", lambda p, s: events.append("started"))
    proc.add_event_handler("on_user_turn_stopped", lambda p, s: events.append("stopped"))
    script = [(0.5, UserStartedSpeakingFrame()), (1.0, T("hello")), (1.2, UserStoppedSpeakingFrame())]
    r = run_script(proc, script, until=2.0)
    assert seq(r) == [("UserStartedSpeakingFrame", 0.5), ("UserStoppedSpeakingFrame", 1.2)]
    assert seq(r, UP) == []  # not broadcast by the processor
    assert events == ["started", "stopped"]


# ---------------------------------------------------------- preemptive generation


def test_preemptive_speculates_at_the_vad_stop_and_confirms_at_the_turn_end() -> None:
    proc = UserTurnProcessor(preemptive_generation=True)
    specs: list[Any] = []
    proc.add_event_handler("on_user_turn_inference_triggered", lambda p, s: specs.append(p.speculation))
    r = run_script(proc, [(0.0, S()), (0.8, T("what time is it")), (1.0, E())], until=3.0)
    assert seq(r) == [
        ("UserStartedSpeakingFrame", 0.0),
        ("InterruptionFrame", 0.0),
        ("UserTurnSpeculationFrame", 1.0),
        ("EagerEndOfTurnConfirmFrame", 1.6),
        ("UserStoppedSpeakingFrame", 1.6),
    ]
    spec = next(f for _, f in r.down if isinstance(f, UserTurnSpeculationFrame))
    confirm = next(f for _, f in r.down if isinstance(f, EagerEndOfTurnConfirmFrame))
    assert (spec.generation_id, spec.text, confirm.generation_id) == (1, "what time is it", 1)
    # one inference event, the speculative one: the turn end confirmed it (no second inference)
    assert len(specs) == 1 and specs[0] is not None and specs[0].generation_id == 1


def test_preemptive_cancels_when_the_user_goes_on_and_speculates_again() -> None:
    """S T E (speculate 1) S (cancel 1) T E (speculate 2) → confirm 2."""
    proc = UserTurnProcessor(preemptive_generation=True)
    script = [
        (0.0, S()),
        (0.8, T("book a table")),
        (1.0, E()),
        (1.3, S()),
        (1.8, T("for two")),
        (2.0, E()),
    ]
    r = run_script(proc, script, until=4.0)
    assert seq(r)[2:] == [
        ("UserTurnSpeculationFrame", 1.0),
        ("EagerEndOfTurnCancelFrame", 1.3),
        ("UserTurnSpeculationFrame", 2.0),
        ("EagerEndOfTurnConfirmFrame", 2.6),
        ("UserStoppedSpeakingFrame", 2.6),
    ]
    ids = [f.generation_id for _, f in r.down if isinstance(f, TURN[3:])]
    assert ids == [1, 1, 2, 2]
    assert [f.text for _, f in r.down if isinstance(f, UserTurnSpeculationFrame)] == [
        "book a table",
        "book a table for two",
    ]


def test_preemptive_new_final_text_cancels_a_stale_speculation() -> None:
    """A second final transcript after the speculation changes the words: cancel, speculate anew."""
    proc = UserTurnProcessor(preemptive_generation=True)
    r = run_script(proc, [(0.0, S()), (0.8, T("hi")), (1.0, E()), (1.2, T("there"))], until=3.0)
    assert seq(r)[2:] == [
        ("UserTurnSpeculationFrame", 1.0),
        ("EagerEndOfTurnCancelFrame", 1.2),
        ("UserTurnSpeculationFrame", 1.2),
        ("EagerEndOfTurnConfirmFrame", 1.6),
        ("UserStoppedSpeakingFrame", 1.6),
    ]


def test_preemptive_off_by_default() -> None:
    r = run_script(UserTurnProcessor(), [(0.0, S()), (0.8, T("hi")), (1.0, E())], until=3.0)
    assert [n for n, _ in seq(r)] == [
        "UserStartedSpeakingFrame",
        "InterruptionFrame",
        "UserStoppedSpeakingFrame",
    ]


# ------------------------------------------------------------------ the gate


def _response(text: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), LLMTextFrame(text=text), LLMFullResponseEndFrame()]


def _gate(frames: list[Frame]) -> tuple[list[tuple[float, Frame]], list[Frame], PreemptiveGate]:
    """Run frames through a gate; returns (virtual time, frame) seen after it, frames sent upstream."""
    gate = PreemptiveGate()
    stamp = _Stamp(DOWN)

    async def go() -> list[Frame]:
        t0 = asyncio.get_running_loop().time()
        _, up = await run_test(Pipeline([gate, stamp]), frames_to_send=frames)
        stamp.seen = [(round(t - t0, 3), f) for t, f in stamp.seen]
        return up

    up = run_virtual(go())
    return stamp.seen, up, gate


def _texts(seen: list[tuple[float, Frame]]) -> list[tuple[str, float]]:
    return [(f.text, t) for t, f in seen if isinstance(f, LLMTextFrame)]


def test_gate_holds_until_confirmed_then_releases_in_order() -> None:
    frames = [
        UserTurnSpeculationFrame(generation_id=1),
        *_response("It is noon."),
        SleepFrame(sleep=0.5),
        EagerEndOfTurnConfirmFrame(generation_id=1),
    ]
    down, _, gate = _gate(frames)
    response = (LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame, EagerEndOfTurnConfirmFrame)
    after = [(type(f).__name__, t) for t, f in down if isinstance(f, response)]
    assert after == [  # held 0.5 s, then released in order (the verdict frame passes too)
        ("LLMFullResponseStartFrame", 0.5),
        ("LLMTextFrame", 0.5),
        ("LLMFullResponseEndFrame", 0.5),
        ("EagerEndOfTurnConfirmFrame", 0.5),
    ]
    assert gate.released == 1


def test_gate_drops_a_cancelled_generation_and_tells_the_llm() -> None:
    frames = [
        UserTurnSpeculationFrame(generation_id=1),
        LLMFullResponseStartFrame(),
        LLMTextFrame(text="stale"),
        SleepFrame(sleep=0.1),
        EagerEndOfTurnCancelFrame(generation_id=1),
        LLMTextFrame(text="late stale"),  # the LLM had not stopped yet
        LLMFullResponseEndFrame(),
        SleepFrame(sleep=0.1),
        UserStoppedSpeakingFrame(),
        *_response("fresh"),
    ]
    down, up, gate = _gate(frames)
    assert _texts(down) == [("fresh", 0.2)]
    assert [f.generation_id for f in up if isinstance(f, EagerEndOfTurnCancelFrame)] == [1]
    assert gate.discarded == 1


def test_gate_releases_on_the_turn_end_and_ignores_other_ids() -> None:
    """A confirm or cancel for another id does nothing; the turn's UserStoppedSpeakingFrame
    releases (pipecat's rule)."""
    frames = [
        UserTurnSpeculationFrame(generation_id=2),
        *_response("answer"),
        SleepFrame(sleep=0.1),
        EagerEndOfTurnConfirmFrame(generation_id=1),
        EagerEndOfTurnCancelFrame(generation_id=1),
        SleepFrame(sleep=0.1),
        UserStoppedSpeakingFrame(),
    ]
    down, up, _ = _gate(frames)
    assert _texts(down) == [("answer", 0.2)]
    assert not [f for f in up if isinstance(f, EagerEndOfTurnCancelFrame)]


def test_gate_passes_everything_without_speculation() -> None:
    down, _, _ = _gate([*_response("plain")])
    assert _texts(down) == [("plain", 0.0)]


def test_transcript_of_a_false_interruption_does_not_end_the_next_turn() -> None:
    """A backchannel over the bot ("mm", resumed) leaves no transcript behind: the next
    turn, with no transcript of its own, waits for one (here: the 5 s stop timeout)."""
    script = [
        (0.0, BOT_ON()),
        (1.0, S()),
        (1.2, T("mm")),
        (1.3, E()),
        (3.0, BOT_OFF()),
        (4.0, S()),
        (4.5, E()),
    ]
    r = run_script(UserTurnProcessor(), script, until=10.0)
    assert ("BotSpeechResumeFrame", 2.3) in r.outputs()
    assert stops(r) == [9.5]


_P99 = STTMetadataFrame(ttfs_p99_latency=2.0)  # with the VAD's 0.2 s stop_secs: a 1.8 s STT wait


@pytest.mark.parametrize(
    ("name", "script", "expected"),
    [
        # pipecat's event strings (S VAD start, E VAD stop, I interim, T final, TF finalized)
        ("S T E", [(0.0, S()), (0.5, T("hello")), (1.0, E())], [1.6]),
        ("S I T E", [(0.0, S()), (0.3, I("hel")), (0.5, T("hello")), (1.0, E())], [1.6]),
        (
            "S T I E S T E (one turn)",
            [
                (0.0, S()),
                (0.3, T("hello")),
                (0.4, I("how")),
                (0.5, E()),
                (0.8, S()),
                (1.2, T("how are you")),
                (1.5, E()),
            ],
            [2.1],
        ),
        (
            "S I E ... I TF",
            [(0.0, S()), (0.3, I("hel")), (0.5, E()), (2.0, I("hello")), (2.1, TF("hello"))],
            [2.1],
        ),
        ("S I E ... T", [(0.0, S()), (0.3, I("hel")), (0.5, E()), (2.0, T("hello"))], [2.0]),
        ("T without VAD ignores the STT wait", [(0.0, _P99), (0.5, T("hello"))], [1.1]),
        ("S TF (still speaking)", [(0.0, S()), (0.5, TF("so I was thinking"))], []),
        ("S E T, p99 wait runs out", [(0.0, _P99), (0.1, S()), (1.0, E()), (1.1, T("hello"))], [2.8]),
        ("S E TF, finalized ends the wait", [(0.0, _P99), (0.1, S()), (1.0, E()), (1.1, TF("hello"))], [1.6]),
    ],
)
def test_pipecat_stop_scripts(name: str, script: list[tuple[float, Frame]], expected: list[float]) -> None:
    r = run_script(UserTurnProcessor(), script, until=4.0)
    assert stops(r) == expected, name


def test_external_turn_has_no_stop_timeout_while_the_user_speaks() -> None:
    """pipecat: an upstream turn start (e.g. Deepgram Flux) keeps the turn open however
    long the user speaks; after its stop without a transcript the stop timeout ends it."""
    proc = UserTurnProcessor(user_turn_strategies=ExternalUserTurnStrategies())
    timeouts: list[float] = []
    proc.add_event_handler(
        "on_user_turn_stop_timeout", lambda p: timeouts.append(asyncio.get_running_loop().time())
    )
    r = run_script(proc, [(0.0, UserStartedSpeakingFrame()), (7.0, UserStoppedSpeakingFrame())], until=13.0)
    # only the upstream turn frames, passed on; the timeout (12.0) re-announces nothing
    assert seq(r) == [("UserStartedSpeakingFrame", 0.0), ("UserStoppedSpeakingFrame", 7.0)]
    t0 = r.t0
    assert [round(t - t0, 3) for t in timeouts] == [
        12.0
    ]  # 5 s after the upstream stop, not 5 s after the start


def test_late_transcript_between_turns_is_not_carried_into_the_next() -> None:
    """pipecat #4053: with VAD-only starts, a late final between turns must not let the
    next turn (no transcript of its own yet) end at its speech timeout."""
    proc = UserTurnProcessor(start_strategies=[VADUserTurnStartStrategy()])
    script = [
        (0.0, S()),
        (0.5, T("hello")),
        (1.0, E()),
        (2.0, T("hello")),
        (3.0, S()),
        (3.5, E()),
        (4.5, T("how are you")),
    ]
    r = run_script(proc, script, until=6.0)
    assert stops(r) == [1.6, 4.5]


class _FakeAnalyzer:
    """Stands in for SmartTurnAnalyzer: answers each check 50 ms later with a fixed verdict."""

    pre_speech_secs = 0.5
    stop_secs = 3.0

    def __init__(self, complete: bool) -> None:
        self.complete = complete

    def request(self, audio: bytes, sample_rate: int, callback: Any) -> None:
        verdict = TurnPrediction(self.complete, 0.9 if self.complete else 0.1, 1.0)
        asyncio.get_running_loop().call_later(0.05, callback, verdict)


def _speech() -> Frame:
    return InputAudioRawFrame(audio=b"\x01\x00" * 320, sample_rate=16000)


@pytest.mark.parametrize(
    ("complete", "transcript_at", "expected"),
    [
        (True, 0.8, [1.05]),  # final in hand: the model's "complete" ends the turn
        (True, 2.0, [2.0]),  # "complete" but no transcript yet: the final ends it
        (False, 0.8, [4.0]),  # "incomplete": the 3 s fallback (with the transcript in hand)
    ],
)
def test_smart_turn_stop_waits_for_the_transcript(
    complete: bool, transcript_at: float, expected: list[float]
) -> None:
    strategy = TurnAnalyzerUserTurnStopStrategy(_FakeAnalyzer(complete))  # type: ignore[arg-type]
    proc = UserTurnProcessor(stop_strategies=[strategy])
    script = [(0.0, S()), (0.1, _speech()), (transcript_at, T("is it raining")), (1.0, E())]
    r = run_script(proc, sorted(script, key=lambda x: x[0]), until=6.0)
    assert stops(r) == expected
