"""UserTurnProcessor: turn timing, barge-in/resume, mute and idle as timed event scripts.

Each script lists input frames at virtual times (s); the test checks the frames the
processor *produces* (UserStarted/Stopped, Interruption, BotSpeechPause/Resume)
in each direction, with their times, and which inputs it lets through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from flowcat import FrameDirection, FrameProcessor, Pipeline
from flowcat.frames import (
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EmulateUserStartedSpeakingFrame,
    EmulateUserStoppedSpeakingFrame,
    Frame,
    FunctionCallFromLLM,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    SystemFrame,
    TranscriptionFrame,
    UserIdleTimeoutUpdateFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
    frame_dataclass,
)
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.testing._harness import upstream
from flowcat.turns import (
    AlwaysUserMuteStrategy,
    FirstSpeechUserMuteStrategy,
    FunctionCallUserMuteStrategy,
    InterruptionParams,
    MinWordsUserTurnStartStrategy,
    MuteUntilFirstBotCompleteUserMuteStrategy,
    SpeechTimeoutUserTurnStopStrategy,
    TranscriptionUserTurnStopStrategy,
    UserTurnProcessor,
)

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM

OUTPUTS = (
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    InterruptionFrame,
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
)


@frame_dataclass
class _Mark(SystemFrame):
    """Time zero of a script."""


class _Stamp(FrameProcessor):
    """Records (virtual time, frame) of frames going ``direction``."""

    def __init__(self, direction: FrameDirection) -> None:
        super().__init__()
        self.direction = direction
        self.seen: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is self.direction:
            self.seen.append((asyncio.get_running_loop().time(), frame))
        await self.push_frame(frame, direction)


def _proc(**kw: Any) -> UserTurnProcessor:
    """The scripts here have no STT unless they say so: the default stop strategy
    without the transcript wait (flowcat's behaviour before pipecat-1.14 parity)."""
    kw.setdefault("stop_strategies", [SpeechTimeoutUserTurnStopStrategy(wait_for_transcript=False)])
    for s in kw["stop_strategies"]:
        s.wait_for_transcript = False
    return UserTurnProcessor(**kw)


# Script shorthands (pipecat's test vocabulary: S VAD start, E VAD stop, I interim, T final).
def S(start_secs: float = 0.2) -> Frame:
    return VADUserStartedSpeakingFrame(start_secs=start_secs)


def E(stop_secs: float = 0.2) -> Frame:
    return VADUserStoppedSpeakingFrame(stop_secs=stop_secs)


def I(text: str) -> Frame:  # noqa: E743
    return InterimTranscriptionFrame(text=text)


def T(text: str) -> Frame:
    return TranscriptionFrame(text=text)


def BOT_ON() -> Frame:  # the output transport reports upstream
    return upstream(BotStartedSpeakingFrame())


def BOT_OFF() -> Frame:
    return upstream(BotStoppedSpeakingFrame())


class Result:
    """Outcome of a script: frames seen each way with times relative to the script start."""

    def __init__(self, down: list[tuple[float, Frame]], up: list[tuple[float, Frame]]) -> None:
        t0 = next(t for t, f in down if isinstance(f, _Mark))
        self.t0 = t0
        self.down = [(round(t - t0, 3), f) for t, f in down if not isinstance(f, _Mark)]
        self.up = [(round(t - t0, 3), f) for t, f in up]

    def outputs(self, direction: FrameDirection = DOWN) -> list[tuple[str, float]]:
        seen = self.down if direction is DOWN else self.up
        return [(type(f).__name__, t) for t, f in seen if isinstance(f, OUTPUTS)]

    def count(self, cls: type[Frame], direction: FrameDirection = DOWN) -> int:
        seen = self.down if direction is DOWN else self.up
        return sum(1 for _, f in seen if type(f) is cls)

    def passed(self, *classes: type[Frame]) -> list[tuple[str, float]]:
        return [(type(f).__name__, t) for t, f in self.down if isinstance(f, classes)]


def run_script(proc: UserTurnProcessor, script: Sequence[tuple[float, Frame]], until: float) -> Result:
    """Send each frame at its time (s), wait until ``until``, return what came out."""
    frames: list[Frame] = [_Mark()]
    now = 0.0
    for t, frame in script:
        if t > now:
            frames.append(SleepFrame(sleep=t - now))
            now = t
        frames.append(frame)
    if until > now:
        frames.append(SleepFrame(sleep=until - now))
    up_stamp, down_stamp = _Stamp(UP), _Stamp(DOWN)

    async def go() -> None:
        await run_test(Pipeline([up_stamp, proc, down_stamp]), frames_to_send=frames)

    run_virtual(go())
    return Result(down_stamp.seen, up_stamp.seen)


def both_ways(result: Result, expected: list[tuple[str, float]]) -> None:
    """Turn frames and interruptions are broadcast: same sequence each way."""
    assert result.outputs(DOWN) == expected
    up_expected = [e for e in expected if e[0] not in ("BotSpeechPauseFrame", "BotSpeechResumeFrame")]
    assert result.outputs(UP) == up_expected


# ----------------------------------------------------------------- turn timing


def test_vad_start_stop_speech_timeout() -> None:
    """S E: the turn starts at the VAD start and stops 0.6 s after the VAD stop."""
    r = run_script(_proc(), [(0.0, S()), (1.0, E())], until=3.0)
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 0.0), ("InterruptionFrame", 0.0), ("UserStoppedSpeakingFrame", 1.6)],
    )
    assert r.passed(VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame) == [
        ("VADUserStartedSpeakingFrame", 0.0),
        ("VADUserStoppedSpeakingFrame", 1.0),
    ]


def test_custom_speech_timeout_and_vad_flaps_within_turn() -> None:
    """S E S E: speech again before the timeout keeps one turn; stop after the last E."""
    proc = _proc(stop_strategies=[SpeechTimeoutUserTurnStopStrategy(timeout=0.4)])
    r = run_script(proc, [(0.0, S()), (1.0, E()), (1.3, S()), (2.0, E())], until=4.0)
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 0.0), ("InterruptionFrame", 0.0), ("UserStoppedSpeakingFrame", 2.4)],
    )


def test_two_turns() -> None:
    """S E ... S E with a gap longer than the timeout: two turns, two interruptions."""
    r = run_script(_proc(), [(0.0, S()), (0.5, E()), (2.0, S()), (3.0, E())], until=5.0)
    both_ways(
        r,
        [
            ("UserStartedSpeakingFrame", 0.0),
            ("InterruptionFrame", 0.0),
            ("UserStoppedSpeakingFrame", 1.1),
            ("UserStartedSpeakingFrame", 2.0),
            ("InterruptionFrame", 2.0),
            ("UserStoppedSpeakingFrame", 3.6),
        ],
    )


def test_transcription_only_turn() -> None:
    """T without VAD: the transcription starts the turn (announced before the text) and
    the speech timeout runs from it."""
    r = run_script(_proc(), [(0.5, T("hello there"))], until=2.0)
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 0.5), ("InterruptionFrame", 0.5), ("UserStoppedSpeakingFrame", 1.1)],
    )
    names = [type(f).__name__ for _, f in r.down]
    assert names.index("UserStartedSpeakingFrame") < names.index("TranscriptionFrame")


def test_transcription_stop_final_after_vad_stop() -> None:
    """S I E T: stop when the final transcription arrives after the VAD stop."""
    proc = _proc(stop_strategies=[TranscriptionUserTurnStopStrategy()])
    r = run_script(
        proc, [(0.0, S()), (0.5, I("what is")), (1.0, E()), (1.3, T("what is the time"))], until=4.0
    )
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 0.0), ("InterruptionFrame", 0.0), ("UserStoppedSpeakingFrame", 1.3)],
    )
    names = [type(f).__name__ for _, f in r.down]
    assert names.index("TranscriptionFrame") < names.index("UserStoppedSpeakingFrame")


def test_transcription_stop_final_before_vad_stop() -> None:
    """S T E: the STT finalised before the VAD stop (no interim since): stop at the VAD stop."""
    proc = _proc(stop_strategies=[TranscriptionUserTurnStopStrategy()])
    r = run_script(proc, [(0.0, S()), (0.8, T("yes please")), (1.0, E())], until=3.0)
    assert r.outputs()[-1] == ("UserStoppedSpeakingFrame", 1.0)


def test_transcription_stop_fallback_without_transcript() -> None:
    """S E and no transcript: the wall-clock fallback (2 s) ends the turn."""
    proc = _proc(stop_strategies=[TranscriptionUserTurnStopStrategy(timeout=2.0)])
    r = run_script(proc, [(0.0, S()), (1.0, E())], until=5.0)
    assert r.outputs()[-1] == ("UserStoppedSpeakingFrame", 3.0)


def test_transcription_stop_interim_after_final_waits() -> None:
    """S E T(seg) I T: an interim after a final means more is coming; the next final stops."""
    proc = _proc(stop_strategies=[TranscriptionUserTurnStopStrategy()])
    r = run_script(
        proc,
        [
            (0.0, S()),
            (0.9, I("book a")),
            (1.0, E()),
            (1.2, S()),
            (1.5, I("book a table")),
            (1.8, E()),
            (2.1, T("book a table")),
        ],
        until=5.0,
    )
    assert r.count(UserStartedSpeakingFrame) == 1
    assert r.outputs()[-1] == ("UserStoppedSpeakingFrame", 2.1)


def test_user_turn_stop_timeout_fallback() -> None:
    """A stop strategy that would wait 30 s is capped by user_turn_stop_timeout (5 s)."""
    proc = _proc(stop_strategies=[TranscriptionUserTurnStopStrategy(timeout=30.0)])
    r = run_script(proc, [(0.0, S()), (1.0, E())], until=8.0)
    assert r.outputs()[-1] == ("UserStoppedSpeakingFrame", 6.0)


def test_emulated_turn() -> None:
    r = run_script(
        _proc(),
        [(0.2, EmulateUserStartedSpeakingFrame()), (0.7, EmulateUserStoppedSpeakingFrame())],
        until=1.0,
    )
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 0.2), ("InterruptionFrame", 0.2), ("UserStoppedSpeakingFrame", 0.7)],
    )
    started = next(f for _, f in r.down if type(f) is UserStartedSpeakingFrame)
    assert started.emulated  # type: ignore[attr-defined]


def test_turn_events() -> None:
    proc = _proc()
    events: list[tuple[str, float]] = []

    strategies: list[Any] = []

    @proc.event_handler("on_user_turn_started")
    async def _started(p: Any, strategy: Any) -> None:  # pipecat 1.14: (processor, strategy)
        events.append(("started", round(asyncio.get_running_loop().time(), 3)))
        strategies.append(strategy)

    @proc.event_handler("on_user_turn_stopped")
    def _stopped(p: Any, strategy: Any) -> None:
        events.append(("stopped", round(asyncio.get_running_loop().time(), 3)))
        strategies.append(strategy)

    run_script(proc, [(0.0, S()), (1.0, E())], until=2.0)
    assert [e[0] for e in events] == ["started", "stopped"]
    assert [type(s).__name__ for s in strategies] == [
        "VADUserTurnStartStrategy",
        "SpeechTimeoutUserTurnStopStrategy",
    ]
    assert events[1][1] - events[0][1] == pytest.approx(1.6, abs=1e-3)


# -------------------------------------------------------------------- barge-in


def test_barge_in_long_speech_pause_then_one_interruption() -> None:
    """User speaks over the bot: Pause at once, the turn and ONE interruption once
    0.5 s of speech (counting the VAD's 0.2 s start delay) are in — known once the
    VAD's 0.2 s stop hang-over has passed without a stop; VAD flaps after
    that add nothing."""
    r = run_script(
        _proc(),
        [
            (0.0, BOT_ON()),
            (1.0, S()),  # speech began at 0.8
            (1.6, BOT_OFF()),  # the output transport stops after the interruption
            (1.8, E()),
            (1.9, S()),
            (2.1, E()),
            (2.2, S()),
            (2.5, E()),
        ],
        until=5.0,
    )
    both_ways(
        r,
        [
            ("BotSpeechPauseFrame", 1.0),
            ("UserStartedSpeakingFrame", 1.5),
            ("InterruptionFrame", 1.5),
            ("UserStoppedSpeakingFrame", 3.1),
        ],
    )
    assert r.count(InterruptionFrame, DOWN) == 1
    assert r.count(InterruptionFrame, UP) == 1
    assert r.count(BotSpeechResumeFrame) == 0


def test_backchannel_pause_then_resume_no_interruption() -> None:
    """ "mm-hm" (0.2 s of speech) over the bot: Pause, then Resume 1 s after the VAD
    stop; no user turn, no interruption, its transcription is dropped."""
    r = run_script(
        _proc(),
        [(0.0, BOT_ON()), (1.0, S()), (1.2, E()), (1.5, T("mm-hm"))],
        until=4.0,
    )
    assert r.outputs(DOWN) == [("BotSpeechPauseFrame", 1.0), ("BotSpeechResumeFrame", 2.2)]
    assert r.outputs(UP) == []
    assert r.count(InterruptionFrame, DOWN) == r.count(InterruptionFrame, UP) == 0
    assert r.passed(TranscriptionFrame) == []


def test_backchannel_with_flap_accumulates_speech() -> None:
    """Two short bursts over the bot add up past min_duration: one interruption, no resume."""
    r = run_script(
        _proc(),
        [(0.0, BOT_ON()), (1.0, S()), (1.2, E()), (1.5, S()), (1.9, BOT_OFF())],
        until=4.0,
    )
    # Burst 1: 0.8–1.0 (0.2 s). Burst 2 from 1.3: 0.5 s in total at 1.6, known at 1.8
    # once the VAD's 0.2 s stop hang-over has passed with the user still speaking.
    assert r.outputs(DOWN)[:3] == [
        ("BotSpeechPauseFrame", 1.0),
        ("UserStartedSpeakingFrame", 1.8),
        ("InterruptionFrame", 1.8),
    ]
    assert r.count(BotSpeechResumeFrame) == 0
    assert r.count(InterruptionFrame, DOWN) == r.count(InterruptionFrame, UP) == 1


def test_repeated_backchannels_resume_each_time() -> None:
    r = run_script(
        _proc(),
        [(0.0, BOT_ON()), (1.0, S()), (1.1, E()), (3.0, S()), (3.1, E())],
        until=6.0,
    )
    assert r.outputs() == [
        ("BotSpeechPauseFrame", 1.0),
        ("BotSpeechResumeFrame", 2.1),
        ("BotSpeechPauseFrame", 3.0),
        ("BotSpeechResumeFrame", 4.1),
    ]


def test_min_words_backchannel_resumes() -> None:
    """min_words=3: a long "hmmmm" with one word is judged false and the bot resumes."""
    proc = _proc(interruption=InterruptionParams(min_words=3))
    r = run_script(
        proc,
        [(0.0, BOT_ON()), (1.0, S()), (1.4, I("okay")), (1.8, E()), (2.0, T("okay"))],
        until=4.0,
    )
    assert r.outputs() == [("BotSpeechPauseFrame", 1.0), ("BotSpeechResumeFrame", 2.8)]
    assert r.count(InterruptionFrame, UP) == 0
    assert r.passed(TranscriptionFrame, InterimTranscriptionFrame) == []


def test_min_words_reached_interrupts_and_releases_transcripts() -> None:
    """min_words=3: the interim with 3 words commits; held transcriptions follow the turn start."""
    proc = _proc(interruption=InterruptionParams(min_words=3))
    r = run_script(
        proc,
        [
            (0.0, BOT_ON()),
            (1.0, S()),
            (1.4, I("wait")),
            (1.6, I("wait stop talking")),
            (1.7, BOT_OFF()),
            (2.0, E()),
            (2.3, T("wait stop talking")),
        ],
        until=4.0,
    )
    both_ways(
        r,
        [
            ("BotSpeechPauseFrame", 1.0),
            ("UserStartedSpeakingFrame", 1.6),
            ("InterruptionFrame", 1.6),
            ("UserStoppedSpeakingFrame", 2.6),
        ],
    )
    assert r.passed(InterimTranscriptionFrame, TranscriptionFrame) == [
        ("InterimTranscriptionFrame", 1.6),
        ("InterimTranscriptionFrame", 1.6),
        ("TranscriptionFrame", 2.3),
    ]


def test_min_words_final_after_vad_stop_commits() -> None:
    """min_words=2: words arriving after the VAD stop (STT lag) still commit before the resume time."""
    proc = _proc(
        interruption=InterruptionParams(min_words=2),
        stop_strategies=[TranscriptionUserTurnStopStrategy()],
    )
    r = run_script(proc, [(0.0, BOT_ON()), (1.0, S()), (1.8, E()), (2.2, T("no thanks"))], until=4.0)
    both_ways(
        r,
        [
            ("BotSpeechPauseFrame", 1.0),
            ("UserStartedSpeakingFrame", 2.2),
            ("InterruptionFrame", 2.2),
            ("UserStoppedSpeakingFrame", 2.2),
        ],
    )


def test_min_words_start_strategy_qualifies_at_once() -> None:
    """MinWords start strategy: the turn starts on 3 words; 0.7 s of speech is already in,
    so the interruption is immediate (no pause)."""
    proc = _proc(start_strategies=[MinWordsUserTurnStartStrategy(3)])
    r = run_script(
        proc,
        [(0.0, BOT_ON()), (1.0, S()), (1.2, I("yeah")), (1.5, I("hold on a")), (1.6, BOT_OFF()), (2.0, E())],
        until=4.0,
    )
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 1.5), ("InterruptionFrame", 1.5), ("UserStoppedSpeakingFrame", 2.6)],
    )


def test_no_resume_mode_keeps_bot_talking() -> None:
    proc = _proc(interruption=InterruptionParams(resume_false_interruption=False))
    r = run_script(
        proc, [(0.0, BOT_ON()), (1.0, S()), (1.1, E()), (3.0, S()), (3.6, BOT_OFF()), (4.0, E())], until=6.0
    )
    both_ways(
        r,
        # Speech from 2.8 is 0.5 s long at 3.3, known at 3.5 past the VAD's 0.2 s stop hang-over.
        [("UserStartedSpeakingFrame", 3.5), ("InterruptionFrame", 3.5), ("UserStoppedSpeakingFrame", 4.6)],
    )


def test_interruptions_disabled() -> None:
    proc = _proc(enable_interruptions=False)
    r = run_script(proc, [(0.0, BOT_ON()), (1.0, S()), (2.0, E())], until=4.0)
    both_ways(r, [("UserStartedSpeakingFrame", 1.0), ("UserStoppedSpeakingFrame", 2.6)])


# ------------------------------------------------------------------------ mute


def test_mute_during_function_calls() -> None:
    call = FunctionCallFromLLM(function_name="lookup", tool_call_id="c1", arguments={})
    proc = _proc(mute_strategies=[FunctionCallUserMuteStrategy()])
    r = run_script(
        proc,
        [
            (0.0, upstream(FunctionCallsStartedFrame(function_calls=[call]))),
            (0.5, S()),
            (0.8, T("hello")),
            (1.0, E()),
            (
                1.5,
                upstream(
                    FunctionCallResultFrame(
                        function_name="lookup", tool_call_id="c1", arguments={}, result={"ok": True}
                    )
                ),
            ),
            (2.0, S()),
            (2.5, E()),
        ],
        until=4.0,
    )
    both_ways(
        r,
        [("UserStartedSpeakingFrame", 2.0), ("InterruptionFrame", 2.0), ("UserStoppedSpeakingFrame", 3.1)],
    )
    assert r.passed(VADUserStartedSpeakingFrame, TranscriptionFrame) == [("VADUserStartedSpeakingFrame", 2.0)]


def test_first_speech_mute() -> None:
    """Muted during the bot's first speech only: later speech over the bot barges in."""
    proc = _proc(mute_strategies=[FirstSpeechUserMuteStrategy()])
    r = run_script(
        proc,
        [
            (0.0, BOT_ON()),
            (0.5, S()),
            (1.0, E()),
            (1.5, BOT_OFF()),
            (3.0, BOT_ON()),
            (3.5, S()),
            (4.1, BOT_OFF()),
            (4.5, E()),
        ],
        until=6.0,
    )
    assert r.outputs() == [
        ("BotSpeechPauseFrame", 3.5),
        ("UserStartedSpeakingFrame", 4.0),  # 0.5 s from 3.3, known past the 0.2 s hang-over
        ("InterruptionFrame", 4.0),
        ("UserStoppedSpeakingFrame", 5.1),
    ]


def test_mute_until_first_bot_complete() -> None:
    """Muted from the start until the bot's first speech ended."""
    proc = _proc(mute_strategies=[MuteUntilFirstBotCompleteUserMuteStrategy()])
    r = run_script(
        proc,
        [
            (0.0, S()),
            (0.5, E()),
            (1.0, BOT_ON()),
            (1.5, S()),
            (1.8, E()),
            (2.0, BOT_OFF()),
            (3.0, S()),
            (3.5, E()),
        ],
        until=5.0,
    )
    assert r.outputs() == [
        ("UserStartedSpeakingFrame", 3.0),
        ("InterruptionFrame", 3.0),
        ("UserStoppedSpeakingFrame", 4.1),
    ]


def test_always_mute_while_bot_speaks() -> None:
    proc = _proc(mute_strategies=[AlwaysUserMuteStrategy()])
    r = run_script(
        proc,
        [
            (0.0, BOT_ON()),
            (0.5, S()),
            (1.5, E()),
            (2.0, BOT_OFF()),
            (2.5, BOT_ON()),
            (3.0, S()),
            (4.0, E()),
            (4.5, BOT_OFF()),
        ],
        until=6.0,
    )
    assert r.outputs() == []
    assert r.passed(VADUserStartedSpeakingFrame) == []


def test_mute_events() -> None:
    proc = _proc(mute_strategies=[AlwaysUserMuteStrategy()])
    seen: list[str] = []
    proc.add_event_handler("on_user_mute_started", lambda p: seen.append("muted"))
    proc.add_event_handler("on_user_mute_stopped", lambda p: seen.append("unmuted"))
    run_script(proc, [(0.0, BOT_ON()), (1.0, BOT_OFF())], until=1.5)
    assert seen == ["muted", "unmuted"]


# ------------------------------------------------------------------------ idle


def test_user_idle_fires_rearms_and_is_bounded() -> None:
    proc = _proc(user_idle_max_retries=3)
    fired: list[tuple[float, int]] = []

    @proc.event_handler("on_user_idle")
    def _idle(p: Any, retry: int) -> None:
        fired.append((round(asyncio.get_running_loop().time(), 3), retry))

    run_script(
        proc,
        [
            (0.0, UserIdleTimeoutUpdateFrame(timeout=2.0)),
            (0.5, BOT_OFF()),  # bot finished: wait for the user
            (10.0, S()),
            (10.5, E()),  # turn ends at 11.1: count down again, retries reset
            (11.5, BOT_ON()),  # the bot answers: no idle while it speaks
            (12.0, BOT_OFF()),
        ],
        until=20.0,
    )
    t0 = fired[0][0] - 2.5
    assert [(round(t - t0, 3), n) for t, n in fired] == [
        (2.5, 1),
        (4.5, 2),
        (6.5, 3),  # bounded: 3 firings
        (14.0, 1),
        (16.0, 2),
        (18.0, 3),
    ]


def test_user_idle_update_and_disable() -> None:
    proc = _proc(user_idle_timeout=5.0)
    fired: list[float] = []
    proc.add_event_handler("on_user_idle", lambda p, n: fired.append(asyncio.get_running_loop().time()))
    run_script(
        proc,
        [
            (0.0, BOT_OFF()),
            (1.0, UserIdleTimeoutUpdateFrame(timeout=1.0)),
            (2.5, UserIdleTimeoutUpdateFrame(timeout=0)),
        ],
        until=8.0,
    )
    assert len(fired) == 1  # at 2.0 (restarted at 1.0 with 1 s), then disabled at 2.5
