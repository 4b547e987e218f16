"""Shared audio for the VAD tests (fixtures, noise, music) and checks on the fixtures."""

from __future__ import annotations

import json
import os
import wave

import numpy as np

from flowcat.frames import InputAudioRawFrame

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "speech")
NOISE_FLOOR_DBFS = -60.0
"""espeak fixtures are digital silence between utterances, which no microphone
produces; tests mix in a seeded white-noise floor at this level (a quiet room)."""


def segments() -> dict[str, dict]:
    with open(os.path.join(FIXTURES, "segments.json")) as f:
        return json.load(f)


def load(
    name: str, noise_floor_dbfs: float | None = NOISE_FLOOR_DBFS
) -> tuple[bytes, int, list[list[float]]]:
    """(pcm16 bytes, sample rate, true segments) of a fixture, with a noise floor mixed in."""
    with wave.open(os.path.join(FIXTURES, name)) as w:
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes())
    if noise_floor_dbfs is not None:
        x = np.frombuffer(pcm, "<i2").astype(np.float64)
        x += np.random.default_rng(1).standard_normal(x.shape[0]) * 32768 * 10 ** (noise_floor_dbfs / 20)
        pcm = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
    return pcm, rate, segments()[name]["segments"]


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def white_noise(secs: float, rate: int, dbfs: float = -20.0, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    return to_pcm(rng.standard_normal(int(secs * rate)) * 32768 * 10 ** (dbfs / 20))


def pink_noise(secs: float, rate: int, dbfs: float = -20.0, seed: int = 11) -> bytes:
    n = int(secs * rate)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    x *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x * x))
    return to_pcm(x)


def chords(secs: float, rate: int, dbfs: float = -18.0) -> bytes:
    """Synthesised music: a I-V-vi-IV progression of organ-like triads with harmonics, 0.5 s each."""
    n = int(secs * rate)
    t = np.arange(n) / rate
    roots = [261.63, 392.0, 440.0, 349.23]
    x = np.zeros(n)
    seg = int(0.5 * rate)
    for k in range(0, n, seg):
        root = roots[(k // seg) % len(roots)]
        tt = t[k : k + seg]
        env = np.minimum(1.0, np.minimum(tt - tt[0], tt[-1] - tt + 1e-3) / 0.02)
        for ratio in (1.0, 1.26, 1.5):  # triad
            for h, amp in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)):
                x[k : k + seg] += env * amp * np.sin(2 * np.pi * root * ratio * h * tt)
    x *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x * x))
    return to_pcm(x)


def frames(pcm: bytes, rate: int, ms: int = 20) -> list[InputAudioRawFrame]:
    step = rate * ms // 1000 * 2
    return [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate) for i in range(0, len(pcm), step)]


def test_fixtures_are_small_16bit_mono_with_segments() -> None:
    segs = segments()
    assert {
        "utterance_weather.wav",
        "utterance_booking.wav",
        "backchannel_uhhuh.wav",
        "two_utterances.wav",
        "two_utterances_8k.wav",
    } <= set(segs)
    for name, meta in segs.items():
        path = os.path.join(FIXTURES, name)
        assert os.path.getsize(path) < 250_000
        with wave.open(path) as w:
            assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
            assert w.getframerate() == meta["sample_rate"]
            assert abs(w.getnframes() / w.getframerate() - meta["duration"]) < 1e-3
        # the true segments contain the sound and the gaps are digital silence
        pcm, rate, spans = load(name, noise_floor_dbfs=None)
        x = np.abs(np.frombuffer(pcm, "<i2"))
        for a, b in spans:
            assert x[int(a * rate) : int(b * rate)].max() > 3000
        assert x[: int(spans[0][0] * rate) - 1].max() == 0
        assert x[int(spans[-1][1] * rate) + 1 :].max() == 0
    _, _, spans = load("backchannel_uhhuh.wav")
    assert 0.25 < spans[0][1] - spans[0][0] < 0.5
