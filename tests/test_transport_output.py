"""Output transport: pacing on the shared clock, send-ahead, interruption, pause/resume,
bot speaking frames, EndFrame drain, cancel. All on the virtual clock."""

from __future__ import annotations

import asyncio

import pytest

from flowcat.frames import (
    BotSpeakingFrame,
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from flowcat.testing import run_virtual
from flowcat.transports import AudioClock, TransportParams
from test_transport_support import CHUNK, RATE, Harness, RecordingOutput, pcm

SPEAKING = (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, BotSpeakingFrame)


def _audio(n_chunks: int, seed: int = 1, rate: int = RATE) -> OutputAudioRawFrame:
    return TTSAudioRawFrame(audio=pcm(n_chunks * CHUNK * rate // RATE, seed), sample_rate=rate)


def test_pacing_is_real_time_with_send_ahead_window() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(10))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        assert len(sends) == 10
        assert all(len(p) == CHUNK for _, p in sends)
        t0 = sends[0][0]
        offsets = [round((t - t0) * 1000) for t, _ in sends]
        # Two chunks go at once (the send-ahead window), then one per 20 ms tick.
        assert offsets == [0, 0, 20, 40, 60, 80, 100, 120, 140, 160]
        # Never more than 2 chunks (40 ms) ahead of real time.
        for i, (t, _) in enumerate(sends):
            assert (i + 1) * 0.02 - (t - t0) <= 0.04 + 1e-9
        assert b"".join(p for _, p in sends) == _audio(10).audio

    run_virtual(main())


def test_send_ahead_window_is_configurable() -> None:
    async def main() -> None:
        out = RecordingOutput(TransportParams(audio_out_sample_rate=RATE, audio_out_send_ahead_chunks=4))
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(8))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        t0 = sends[0][0]
        assert [round((t - t0) * 1000) for t, _ in sends] == [0, 0, 0, 0, 20, 40, 60, 80]

    run_virtual(main())


def test_resamples_and_rechunks_to_transport_rate() -> None:
    async def main() -> None:
        out = RecordingOutput()  # 16 kHz wire
        async with Harness([out]) as h:
            # 300 ms at 24 kHz in odd-sized frames
            for size in (4800, 2400, 3002, 4198):
                await h.task.queue_frame(OutputAudioRawFrame(audio=bytes(size), sample_rate=24000))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        total = sum(len(p) for _, p in sends)
        assert abs(total - 9600) <= 2 * 64  # 300 ms at 16 kHz, within resampler rounding
        assert all(len(p) == CHUNK for _, p in sends[:-1])

    run_virtual(main())


def test_interruption_clears_queue_and_clear_is_next_on_wire() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(50))
            await asyncio.sleep(0.1)
            n_before = len(out.audio())
            mark = len(out.wire)
            t_int = asyncio.get_running_loop().time()
            await h.task.queue_frame(InterruptionFrame())
            await asyncio.sleep(0.5)
            kinds_after = [k for _, k, _ in out.wire[mark:]]
            assert kinds_after[0] == "InterruptionFrame"
            clear_t = out.wire[mark][0]
            assert clear_t - t_int <= 0.02  # within one tick (in fact at once)
            assert "audio" not in kinds_after  # the queued 40+ chunks are gone
            assert out.queued_bytes == 0
            assert 2 <= n_before <= 8
            # Bot stopped speaking right away, both directions.
            assert BotStoppedSpeakingFrame in h.up_types()
            assert BotStoppedSpeakingFrame in h.down_types()
            # New audio after the interruption plays again.
            await h.task.queue_frame(_audio(3, seed=9))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        assert b"".join(p for t, p in out.audio() if t > clear_t) == _audio(3, seed=9).audio

    run_virtual(main())


def test_interruption_keeps_uninterruptible_frames() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(20))
            await h.task.queue_frame(EndFrame())
            await asyncio.sleep(0.05)
            await h.task.queue_frame(InterruptionFrame())
            await h.finish(5)
        assert h.task.stats.finished_by == "end"
        assert isinstance(out.closed_by, EndFrame)
        assert len(out.audio()) < 20

    run_virtual(main())


def test_pause_holds_and_resume_continues_same_bytes() -> None:
    async def main() -> None:
        out = RecordingOutput()
        audio = _audio(30)
        async with Harness([out]) as h:
            await h.task.queue_frame(audio)
            await asyncio.sleep(0.1)
            await h.task.queue_frame(BotSpeechPauseFrame())
            loop = asyncio.get_running_loop()
            t_pause = loop.time()
            n_paused = len(out.audio())
            await asyncio.sleep(1.0)
            assert len(out.audio()) == n_paused  # nothing sent while paused
            await h.task.queue_frame(BotSpeechResumeFrame())
            t_resume = loop.time()
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        assert not [t for t, _ in sends if t_pause < t < t_resume]
        assert b"".join(p for _, p in sends) == audio.audio  # nothing lost or repeated
        assert len(sends) == 30

    run_virtual(main())


def test_pause_holds_a_real_time_stream_that_was_being_sent_on_arrival() -> None:
    # Chunks arriving in real time are written as they arrive (no queue); a pause must
    # stop that path too, and the resume sends the held chunks in order.
    async def main() -> None:
        out = RecordingOutput()
        loop = asyncio.get_running_loop()
        async with Harness([out]) as h:
            for seed in (1, 2, 3, 4):
                await h.task.queue_frame(_audio(1, seed=seed))
                await asyncio.sleep(0.02)
            assert len(out.audio()) == 4 and not out.queued_bytes  # none of them waited
            await h.task.queue_frame(BotSpeechPauseFrame())
            t_pause = loop.time()
            for seed in (5, 6, 7):
                await h.task.queue_frame(_audio(1, seed=seed))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            assert len(out.audio()) == 4  # held while paused
            await h.task.queue_frame(BotSpeechResumeFrame())
            t_resume = loop.time()
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        assert not [t for t, _ in sends if t_pause < t < t_resume]
        assert b"".join(p for _, p in sends) == b"".join(_audio(1, seed=i).audio for i in range(1, 8))

    run_virtual(main())


def test_continuous_output_sends_silence_while_paused() -> None:
    async def main() -> None:
        out = RecordingOutput(TransportParams(audio_out_sample_rate=RATE, audio_out_continuous=True))
        async with Harness([out]) as h:
            await asyncio.sleep(0.2)
            silent = [p for _, p in out.audio()]
            assert len(silent) >= 9 and all(p == bytes(CHUNK) for p in silent)
            await h.task.queue_frame(BotSpeechPauseFrame())
            await h.task.queue_frame(_audio(5))
            await asyncio.sleep(0.2)
            assert all(p == bytes(CHUNK) for _, p in out.audio())
            await h.task.queue_frame(BotSpeechResumeFrame())
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sent = b"".join(p for _, p in out.audio() if p != bytes(CHUNK))
        assert sent == _audio(5).audio

    run_virtual(main())


def test_bot_speaking_frames_follow_actual_sends() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            loop = asyncio.get_running_loop()
            await h.task.queue_frame(_audio(50))  # 1 s of audio
            await asyncio.sleep(0.01)
            assert h.up_types(skip=(BotSpeakingFrame,)) == [BotStartedSpeakingFrame]
            await asyncio.sleep(1.2)
            # Last chunk sent at ~0.96 s; stopped ~0.35 s later, not before.
            assert BotStoppedSpeakingFrame not in h.up_types()
            while BotStoppedSpeakingFrame not in h.up_types():  # noqa: ASYNC110 - 10 ms virtual steps
                await asyncio.sleep(0.01)
            stop_time = loop.time()
            assert h.up_types(skip=(BotSpeakingFrame,)) == [BotStartedSpeakingFrame, BotStoppedSpeakingFrame]
            last_send = out.audio()[-1][0]
            assert 0.34 <= stop_time - last_send <= 0.38
            await h.task.queue_frame(EndFrame())
            await h.finish()
        speaking = [f for f in h.up.frames if isinstance(f, BotSpeakingFrame)]
        assert 4 <= len(speaking) <= 6  # every 0.2 s over ~1 s of sending
        down = h.down_types(skip=(OutputAudioRawFrame, EndFrame, BotSpeakingFrame))
        assert down == [BotStartedSpeakingFrame, BotStoppedSpeakingFrame]

    run_virtual(main())


def test_sent_frames_are_pushed_downstream_in_order() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(3))
            await h.task.queue_frame(OutputTransportMessageFrame(message={"a": 1}))
            await h.task.queue_frame(_audio(2, seed=5))
            await h.task.queue_frame(TTSStoppedFrame())
            await h.task.queue_frame(EndFrame())
            await h.finish()
        down = h.down_types(skip=SPEAKING)
        # The chunks written and passed on keep the class of the audio they were cut
        # from (TTSAudioRawFrame here), as pipecat's output does.
        assert down == [TTSAudioRawFrame] * 3 + [OutputTransportMessageFrame] + [
            TTSAudioRawFrame
        ] * 2 + [
            TTSStoppedFrame,
            EndFrame,
        ]
        kinds = [k for _, k, _ in out.wire]
        assert kinds == ["audio"] * 3 + ["OutputTransportMessageFrame"] + ["audio"] * 2 + [
            "TTSStoppedFrame",
            "EndFrame",
            "close",
        ]

    run_virtual(main())


def test_end_frame_drains_queued_audio_before_close() -> None:
    async def main() -> None:
        out = RecordingOutput(TransportParams(audio_out_sample_rate=RATE, audio_out_end_silence_secs=0.1))
        goodbye = _audio(25, seed=3)
        async with Harness([out]) as h:
            await h.task.queue_frame(goodbye)
            t_end = asyncio.get_running_loop().time()
            await h.task.queue_frame(EndFrame())
            await h.finish()
        audio = out.audio()
        assert b"".join(p for _, p in audio[:25]) == goodbye.audio
        assert [p for _, p in audio[25:]] == [bytes(CHUNK)] * 5  # 0.1 s end silence
        close_t = out.wire[-1][0]
        assert out.wire[-1][1] == "close"
        assert close_t - t_end >= 0.5  # it waited for ~0.6 s of audio
        assert h.task.stats.finished_by == "end"
        assert isinstance(h.down.frames[-1], EndFrame)

    run_virtual(main())


def test_end_frame_wait_is_bounded_by_hook_timeout() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out], hook_timeout_secs=1.0) as h:
            await h.task.queue_frame(_audio(500))  # 10 s of audio
            await h.task.queue_frame(EndFrame())
            t0 = asyncio.get_running_loop().time()
            await h.finish()
            assert asyncio.get_running_loop().time() - t0 == pytest.approx(1.0, abs=0.05)
        assert h.task.stats.finished_by == "end"
        assert out.wire[-1][1] == "close"
        assert 45 <= len(out.audio()) <= 55

    run_virtual(main())


def test_cancel_closes_at_once() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(100))
            await asyncio.sleep(0.1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await h.task.cancel()
            await h.finish()
            assert loop.time() - t0 < 0.02
        assert isinstance(out.closed_by, CancelFrame)
        n = len(out.audio())
        assert n < 10
        assert out.wire[-1][1] == "close"

    run_virtual(main())


def test_one_clock_serves_many_outputs() -> None:
    async def main() -> None:
        outs = [RecordingOutput() for _ in range(3)]
        harnesses = [Harness([o]) for o in outs]
        for h in harnesses:
            await h.__aenter__()
        tasks_before = len(asyncio.all_tasks())
        for i, h in enumerate(harnesses):
            await h.task.queue_frame(_audio(20, seed=i))
        await asyncio.sleep(0.1)
        clocks = AudioClock.clocks()
        assert len(clocks) == 1
        clock = clocks[0]
        assert len(clock) == 3 and all(o in clock for o in outs)
        assert len(asyncio.all_tasks()) == tasks_before  # pacing creates no task per call
        for h in harnesses:
            await h.task.queue_frame(EndFrame())
        for h in harnesses:
            await h.finish()
        assert not clock.running and len(clock) == 0  # idle: the timer stops
        for i, o in enumerate(outs):
            assert b"".join(p for _, p in o.audio()) == _audio(20, seed=i).audio
            # all three were sent on the same ticks
            assert [t for t, _ in o.audio()] == [t for t, _ in outs[0].audio()]

    run_virtual(main())


def test_mixer_mixes_every_chunk() -> None:
    class AddOne:
        def __init__(self) -> None:
            self.rate = 0

        def start(self, sample_rate: int) -> None:
            self.rate = sample_rate

        def mix(self, audio: bytes) -> bytes:
            return bytes((b + 1) & 0xFF for b in audio)

    async def main() -> None:
        mixer = AddOne()
        out = RecordingOutput(TransportParams(audio_out_sample_rate=RATE, audio_out_mixer=mixer))
        async with Harness([out]) as h:
            await asyncio.sleep(0.05)
            await h.task.queue_frame(_audio(2))
            await asyncio.sleep(0.1)
        assert mixer.rate == RATE
        payloads = [p for _, p in out.audio()]
        assert payloads[0] == bytes([1]) * CHUNK  # mixed silence while idle
        mixed = AddOne().mix(_audio(2).audio)
        assert mixed[:CHUNK] in payloads and mixed[CHUNK:] in payloads

    run_virtual(main())


def _lags(catch_up: int, gaps: list[float]) -> list[int]:
    """One-chunk frames pushed after ``gaps[i]`` seconds each (a real-time stream with
    jitter). Returns each chunk's send lag (ms) behind its frame's arrival."""
    lags: list[int] = []

    async def main() -> None:
        params = TransportParams(audio_out_sample_rate=RATE, audio_out_catch_up_chunks=catch_up)
        out = RecordingOutput(params)
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        async with Harness([out]) as h:
            for seed, gap in enumerate(gaps, start=1):
                if gap:
                    await asyncio.sleep(gap)
                arrivals.append(loop.time())
                await h.task.queue_frame(_audio(1, seed=seed))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        assert len(sends) == len(arrivals) == len(gaps)
        expected = b"".join(_audio(1, seed=i).audio for i in range(1, len(gaps) + 1))
        assert b"".join(p for _, p in sends) == expected
        lags.extend(round((t - a) * 1000) for (t, _), a in zip(sends, arrivals, strict=True))

    run_virtual(main())
    return lags


ON_TIME = [0.0] + [0.02] * 9


def _stall(ms: int) -> list[float]:
    """10 frames on time, a stall of ``ms``, the late frames at once, then 10 on time."""
    late = ms // 20
    return ON_TIME + [0.02 + ms / 1000] + [0.0] * late + [0.02] * 10


def test_late_burst_catches_up_instead_of_lagging_the_rest_of_the_turn() -> None:
    # The window grows by the 80 ms the stream fell behind, so the late burst goes out
    # at once and every later chunk leaves the moment it arrives.
    assert _lags(4, _stall(80)) == [0] * 25


def test_without_catch_up_a_late_burst_lags_for_the_rest_of_the_turn() -> None:
    # Window fixed (2 chunks, plus one for a steady stream): the fourth chunk of the
    # burst waits for a tick, and since the stream never runs faster than real time,
    # every later chunk waits too.
    lags = _lags(0, _stall(80))
    assert lags[:13] == [0] * 13
    assert all(lag >= 15 for lag in lags[14:])


def test_a_steady_stream_read_three_frames_at_a_time_does_not_lag() -> None:
    # A busy server reads a call's frames in groups: three at once every 60 ms. The
    # third would overflow the 2-chunk window; a steady stream may overshoot by one chunk.
    gaps = ON_TIME + [0.02, 0.0, 0.0] + [0.06, 0.0, 0.0] * 5
    assert _lags(0, gaps) == [0] * len(gaps)


def test_a_stream_that_starts_with_a_burst_stops_lagging_once_it_runs_in_real_time() -> None:
    # Three frames fed at once when the call starts (read before the pipeline ran): the
    # third waits for a tick. The stream then arrives in real time: after three such
    # frames it counts as steady again and every chunk leaves the moment it arrives,
    # instead of each waiting for the next tick for the rest of the turn.
    assert _lags(4, [0.0] * 3 + [0.02] * 12) == [0, 0, 20, 20, 20, 20] + [0] * 9


def test_a_real_time_stream_with_a_backlog_from_its_start_catches_up() -> None:
    # Five frames at once when the call starts, then real time: three go out, two wait.
    # The stream comes no faster than it plays, so that backlog would never drain; once
    # the stream is steady the window takes it (as after a stall) and the lag goes away.
    lags = _lags(4, [0.0] * 5 + [0.02] * 14)
    assert lags[:5] == [0, 0, 20, 40, 60] and lags[10:] == [0] * 9
    # Without catch-up the window stays put and the backlog stays for the turn.
    assert _lags(0, [0.0] * 5 + [0.02] * 14)[5:] == [60] * 14


def test_a_tts_burst_does_not_get_the_steady_stream_tolerance() -> None:
    # Six one-chunk frames at once at the start of a turn: two go, then one per tick.
    assert _lags(4, [0.0] * 6) == [0, 0, 20, 40, 60, 80]


def test_catch_up_does_not_widen_the_window_at_the_start_of_speech() -> None:
    # A TTS burst at the start of a turn is not late audio: two chunks go at once,
    # then one per tick, exactly as with the plain window.
    async def main() -> None:
        out = RecordingOutput(TransportParams(audio_out_sample_rate=RATE, audio_out_catch_up_chunks=4))
        async with Harness([out]) as h:
            for i in range(6):
                await h.task.queue_frame(_audio(1, seed=i))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sends = out.audio()
        t0 = sends[0][0]
        assert [round((t - t0) * 1000) for t, _ in sends] == [0, 0, 20, 40, 60, 80]

    run_virtual(main())


def test_stats_count_every_chunk_sent_on_arrival_and_queued_across_a_rate_change() -> None:
    async def main() -> None:
        out = RecordingOutput()
        async with Harness([out]) as h:
            for seed in (1, 2, 3):  # real time: each chunk written as it arrives
                await h.task.queue_frame(_audio(1, seed=seed))
                await asyncio.sleep(0.02)
            await h.task.queue_frame(_audio(4, seed=4))  # a burst: partly queued
            await asyncio.sleep(0.2)
            out.set_sample_rate(RATE // 2)  # the wire changes rate mid-call
            for seed in (5, 6):
                await h.task.queue_frame(_audio(1, seed=seed, rate=RATE // 2))
                await asyncio.sleep(0.02)
            await h.task.queue_frame(EndFrame())
            await h.finish()
        sent = out.audio()
        assert [len(p) for _, p in sent] == [CHUNK] * 7 + [CHUNK // 2] * 2
        assert out.stats.chunks_sent == len(sent)
        assert out.stats.bot_bytes_sent == sum(len(p) for _, p in sent)

    run_virtual(main())


def test_set_audio_writer_takes_every_chunk_instead_of_write_audio() -> None:
    async def main() -> None:
        out = RecordingOutput()
        fused: list[bytes] = []
        out.set_audio_writer(lambda frame: fused.append(frame.audio))
        async with Harness([out]) as h:
            await h.task.queue_frame(_audio(4))
            await h.task.queue_frame(EndFrame())
            await h.finish()
        assert out.audio() == []  # write_audio never ran
        assert fused == [_audio(4).audio[i : i + CHUNK] for i in range(0, 4 * CHUNK, CHUNK)]

    run_virtual(main())
