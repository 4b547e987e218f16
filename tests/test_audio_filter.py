"""Noise filters: RNNoiseFilter on a noisy speech-like signal, AudioFilterProcessor framing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from _helpers import require
from flowcat.audio import AudioFilterProcessor, BaseAudioFilter, rms_dbfs
from flowcat.errors import MissingExtraError
from flowcat.frames import FilterEnableFrame, InputAudioRawFrame, TextFrame
from flowcat.testing import SleepFrame, run_test, run_virtual


def _speech_like(rate: int, seconds: float) -> np.ndarray:
    """Voiced harmonics with a gliding pitch and a syllable-rate envelope (float, ~-17 dBFS)."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 15) if k * 170 < rate / 2)
    return 0.2 * x * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)


def _noisy_call(rate: int) -> bytes:
    """1 s of white noise (-30 dBFS), then 1 s of speech-like signal plus the same noise."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 0.03, 2 * rate)
    x[rate:] += _speech_like(rate, 1.0)
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _chunks(pcm: bytes, rate: int) -> list[bytes]:
    step = 2 * rate // 50
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


@pytest.fixture(scope="module")
def rnnoise():
    require("pyrnnoise.rnnoise")
    from flowcat.audio import RNNoiseFilter

    return RNNoiseFilter


def test_rnnoise_processor_removes_noise_keeps_speech(rnnoise) -> None:
    rate = 16000
    pcm = _noisy_call(rate)
    frames = [InputAudioRawFrame(audio=c, sample_rate=rate) for c in _chunks(pcm, rate)]
    script: list = []
    for f in frames:
        script += [f, SleepFrame(sleep=0.02)]
    from flowcat.runtime import PipelineParams

    proc = AudioFilterProcessor(rnnoise())
    down, _ = run_virtual(
        run_test(proc, frames_to_send=script, params=PipelineParams(audio_in_sample_rate=rate))
    )
    out_frames = [f for f in down if isinstance(f, InputAudioRawFrame)]
    assert len(out_frames) == len(frames) and all(len(f.audio) == 640 for f in out_frames)
    out = b"".join(f.audio for f in out_frames)
    noise_in, noise_out = rms_dbfs(pcm[rate : 2 * rate]), rms_dbfs(out[rate : 2 * rate])  # 0.5-1.0 s
    assert noise_in == pytest.approx(-30.5, abs=0.5)
    assert noise_out < noise_in - 20  # measured: ~ -88 dBFS
    speech = slice(int(2.6 * rate), int(3.8 * rate))  # 1.3-1.9 s, well past the filter delay
    assert rms_dbfs(out[speech]) == pytest.approx(rms_dbfs(pcm[speech]), abs=3)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_rnnoise_filter_direct(rnnoise, rate: int) -> None:
    pcm = _noisy_call(rate)
    f = rnnoise()

    async def main() -> bytes:
        await f.start(rate)
        out = b"".join(f.filter(c) for c in _chunks(pcm, rate))
        await f.stop()
        return out

    out = run_virtual(main())
    assert len(pcm) - len(out) < 2 * rate * 0.2  # bounded delay, no drift
    assert rms_dbfs(out[rate // 2 : rate]) < rms_dbfs(pcm[rate // 2 : rate]) - 20
    assert f.filter(b"\x01\x00" * 160) == b"\x01\x00" * 160  # stopped: pass through


def test_rnnoise_filter_enable_frame(rnnoise) -> None:
    f = rnnoise()
    chunk = _noisy_call(16000)[:640]

    async def main() -> None:
        await f.start(16000)
        await f.process_frame(FilterEnableFrame(enable=False))
        assert f.filter(chunk) is chunk and not f.enabled
        await f.process_frame(FilterEnableFrame(enable=True))
        assert f.enabled
        await f.stop()

    run_virtual(main())


def test_missing_wheel_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcat.audio import RNNoiseFilter

    monkeypatch.setitem(sys.modules, "pyrnnoise", None)
    with pytest.raises(MissingExtraError) as exc:
        RNNoiseFilter()
    assert exc.value.extra == "rnnoise" and "flowcat[rnnoise]" in str(exc.value)


class _BurstyDelay(BaseAudioFilter):
    """Returns input only in 50 ms bursts (like a block-based resampler), negated."""

    def __init__(self) -> None:
        self.held = b""
        self.enabled = True
        self.started_at: int | None = None

    async def start(self, sample_rate: int) -> None:
        self.started_at = sample_rate

    async def process_frame(self, frame) -> None:
        if isinstance(frame, FilterEnableFrame):
            self.enabled = frame.enable

    def filter(self, audio: bytes) -> bytes:
        self.held += (-np.frombuffer(audio, "<i2")).astype("<i2").tobytes()
        if len(self.held) >= 1600:
            out, self.held = self.held, b""
            return out
        return b""


def test_processor_keeps_frame_sizes_with_a_bursty_filter() -> None:
    rate = 16000
    src = np.arange(1, 8001, dtype="<i2")  # 0.5 s ramp
    frames = [InputAudioRawFrame(audio=c, sample_rate=rate) for c in _chunks(src.tobytes(), rate)]
    filt = _BurstyDelay()
    down, _ = run_virtual(
        run_test(
            AudioFilterProcessor(filt),
            frames_to_send=[*frames, FilterEnableFrame(enable=False), TextFrame(text="x")],
        )
    )
    audio = [f for f in down if isinstance(f, InputAudioRawFrame)]
    assert len(audio) == 25 and all(len(f.audio) == 640 for f in audio)
    out = np.frombuffer(b"".join(f.audio for f in audio), "<i2")
    # Silence while the filter primes, then the filtered stream, contiguous, delayed once.
    nz = np.flatnonzero(out)
    assert not out[: nz[0]].any()
    np.testing.assert_array_equal(out[nz[0] :], -src[: len(out) - nz[0]])
    assert nz[0] <= 800  # at most the burst size (50 ms) of delay
    assert not filt.enabled and filt.started_at == 16000  # control frame forwarded
    assert [type(f).__name__ for f in down[-3:]] == ["FilterEnableFrame", "TextFrame", "EndFrame"]
