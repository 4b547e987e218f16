"""VADProcessor in a pipeline: frame order, VAD frames and their audio-position timestamps."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from _helpers import require

require("onnxruntime")

from flowcat.audio.vad import EnergyVADAnalyzer, SileroVADAnalyzer, VADParams, VADProcessor  # noqa: E402
from flowcat.frames import (  # noqa: E402
    EndFrame,
    InputAudioRawFrame,
    SpeechControlParamsFrame,
    UserSpeakingFrame,
    VADParamsUpdateFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import PipelineParams  # noqa: E402
from flowcat.testing import SleepFrame, run_test, run_virtual  # noqa: E402
from test_vad_support import frames, load  # noqa: E402

VAD_TYPES = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)


def paced(fs):
    """Yield to the loop between frames (as a transport would), so results interleave."""
    out = []
    for f in fs:
        out += [f, SleepFrame(sleep=0)]
    return out


def check_stream(down, sent, spans, start_secs=0.2, stop_secs=0.2, max_lag_frames=None):
    audio = [f for f in down if isinstance(f, InputAudioRawFrame)]
    assert audio == sent  # every audio frame passed on, unchanged and in order
    assert isinstance(down[0], SpeechControlParamsFrame)
    pos = 0.0
    seen = []
    for f in down:
        if isinstance(f, InputAudioRawFrame):
            pos += len(f.audio) / 2 / f.sample_rate
        elif isinstance(f, VAD_TYPES):
            assert f.timestamp <= pos + 1e-6  # never before the audio that decided it
            if max_lag_frames is not None:
                assert pos - f.timestamp <= 0.032 + 0.02 * max_lag_frames
            seen.append(f)
    assert [type(f) for f in seen] == [VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame] * len(spans)
    for (a, b), start, stop in zip(spans, seen[::2], seen[1::2], strict=True):
        assert start.start_secs == start_secs and stop.stop_secs == stop_secs
        assert -0.12 <= start.timestamp - (a + start_secs) <= 0.25
        assert abs(stop.timestamp - (b + stop_secs)) <= 0.12
    # UserSpeakingFrame while speaking, at most every 0.2 s of audio
    speaking = [f for f in down if isinstance(f, UserSpeakingFrame)]
    speech = sum(b - a for a, b in spans)
    assert len(spans) <= len(speaking) <= speech / 0.2 + 2 * len(spans)
    return seen


@pytest.mark.parametrize("name", ["two_utterances.wav", "two_utterances_8k.wav"])
async def test_silero_processor_two_utterances(name: str) -> None:
    pcm, rate, spans = load(name)
    sent = frames(pcm, rate)
    proc = VADProcessor(vad_analyzer=SileroVADAnalyzer())
    down, up = await run_test(
        proc, frames_to_send=paced(sent), params=PipelineParams(audio_in_sample_rate=rate)
    )
    assert proc.vad_analyzer.sample_rate == rate  # 8 kHz runs Silero's 8 kHz mode, no resampling
    check_stream(down, sent, spans, max_lag_frames=2)
    # broadcast: the same VAD frames go upstream, as siblings
    up_vad = [f for f in up if isinstance(f, VAD_TYPES)]
    down_vad = [f for f in down if isinstance(f, VAD_TYPES)]
    assert [f.broadcast_sibling_id for f in up_vad] == [f.id for f in down_vad]
    assert isinstance(down[-1], EndFrame)


async def test_unpaced_input_still_gives_every_event_before_end() -> None:
    pcm, rate, spans = load("two_utterances.wav")
    sent = frames(pcm, rate, ms=60)  # 60 ms chunks, all queued at once
    down, _ = await run_test(VADProcessor(vad_analyzer=SileroVADAnalyzer()), frames_to_send=sent)
    check_stream(down, sent, spans)
    assert isinstance(down[-1], EndFrame)


async def test_48k_input_is_resampled_to_16k() -> None:
    pcm, rate, spans = load("two_utterances.wav")
    x48 = soxr.resample(np.frombuffer(pcm, "<i2"), rate, 48000).astype("<i2").tobytes()
    sent = frames(x48, 48000)
    proc = VADProcessor(vad_analyzer=SileroVADAnalyzer())
    down, _ = await run_test(
        proc, frames_to_send=paced(sent), params=PipelineParams(audio_in_sample_rate=48000)
    )
    assert proc.vad_analyzer.sample_rate == 16000
    check_stream(down, sent, spans, max_lag_frames=3)


async def test_silence_produces_no_vad_frames() -> None:
    sent = frames(bytes(16000 * 2 * 2), 16000)
    down, up = await run_test(
        VADProcessor(vad_analyzer=SileroVADAnalyzer()),
        frames_to_send=sent,
        expected_down_frames=[SpeechControlParamsFrame] + [InputAudioRawFrame] * len(sent),
        expected_up_frames=[SpeechControlParamsFrame],
    )


async def test_params_update_frame() -> None:
    pcm, rate, spans = load("two_utterances.wav")
    sent = frames(pcm, rate)
    new = VADParams(start_secs=0.4, stop_secs=0.4)
    down, up = await run_test(
        VADProcessor(vad_analyzer=SileroVADAnalyzer()),
        frames_to_send=[VADParamsUpdateFrame(params=new)] + paced(sent),
    )
    assert [f.vad_params for f in up if isinstance(f, SpeechControlParamsFrame)][-1] is new
    assert any(isinstance(f, VADParamsUpdateFrame) for f in down)  # passed on
    down = [f for f in down if not isinstance(f, VADParamsUpdateFrame)]
    seen = [f for f in down if isinstance(f, VAD_TYPES)]
    assert [f.start_secs for f in seen[::2]] == [0.4, 0.4]
    for (a, b), start, stop in zip(spans, seen[::2], seen[1::2], strict=True):
        assert -0.12 <= start.timestamp - (a + 0.4) <= 0.25
        assert abs(stop.timestamp - (b + 0.4)) <= 0.12


async def test_energy_analyzer_in_processor() -> None:
    pcm, rate, spans = load("utterance_weather.wav")
    sent = frames(pcm, rate)
    down, _ = await run_test(VADProcessor(vad_analyzer=EnergyVADAnalyzer()), frames_to_send=sent)
    # synchronous analyzer: VAD frames follow the audio frame that decided them directly
    check_stream(down, sent, spans, max_lag_frames=0)


async def test_a_frame_whose_feed_produced_events_is_fed_once() -> None:
    """Input audio is fed inline; when the feed produced VAD events the frame goes on through
    process_frame (audio first, then the events) and is not fed a second time."""
    pcm, rate, spans = load("utterance_weather.wav")
    sent = frames(pcm, rate)
    analyzer = EnergyVADAnalyzer()
    down, _ = await run_test(VADProcessor(vad_analyzer=analyzer), frames_to_send=paced(sent))
    window = analyzer.num_frames_required() * 2
    assert analyzer._scored == sum(len(f.audio) for f in sent) // window
    check_stream(down, sent, spans, max_lag_frames=0)


def test_audio_idle_timeout_forces_a_stop() -> None:
    pcm, rate, spans = load("utterance_weather.wav")
    speech = frames(pcm[: int(1.5 * rate) * 2], rate)  # cut off mid-utterance

    async def main():
        return await run_test(
            VADProcessor(vad_analyzer=SileroVADAnalyzer(), audio_idle_timeout=0.5),
            frames_to_send=paced(speech) + [SleepFrame(sleep=2.0)],
        )

    down, _ = run_virtual(main())
    seen = [f for f in down if isinstance(f, VAD_TYPES)]
    assert [type(f) for f in seen] == [VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame]
    assert seen[1].timestamp == pytest.approx(1.5, abs=0.04)  # where the audio stopped
