"""PCM helpers and AudioChunker."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowcat.audio import (
    AudioChunker,
    apply_gain,
    float_to_pcm16,
    mix,
    pcm16_to_float,
    rms_dbfs,
    silence,
    tone,
)


def _i16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def test_float_roundtrip_is_exact_and_saturates() -> None:
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    f = pcm16_to_float(pcm)
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() < 1.0
    assert float_to_pcm16(f) == pcm
    assert _i16(float_to_pcm16([1.5, -2.0, 0.5, 1.0])).tolist() == [32767, -32768, 16384, 32767]


def test_rms_dbfs_levels() -> None:
    assert rms_dbfs(b"") == -math.inf
    assert rms_dbfs(silence(0.1, 16000)) == -math.inf
    assert rms_dbfs(np.full(160, -32768, dtype="<i2").tobytes()) == pytest.approx(0.0)
    assert rms_dbfs(tone(1000.0, 1.0, 16000, 1.0)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(tone(1000.0, 1.0, 16000, 0.1)) == pytest.approx(-23.01, abs=0.01)


def test_apply_gain_db_and_factor() -> None:
    pcm = tone(440.0, 0.5, 16000, 0.25)
    assert rms_dbfs(apply_gain(pcm, -6.0)) == pytest.approx(rms_dbfs(pcm) - 6.0, abs=0.01)
    assert _i16(apply_gain(pcm, factor=0.5)).tolist() == np.rint(_i16(pcm) * 0.5).astype(int).tolist()
    assert apply_gain(pcm, 0.0) is pcm
    loud = _i16(apply_gain(pcm, factor=10.0))
    assert loud.max() == 32767 and loud.min() == -32768  # saturates, no wrap-around


def test_silence_length() -> None:
    assert silence(0.02, 8000) == bytes(320)
    assert len(silence(0.02, 48000, num_channels=2)) == 3840


def test_mix_sums_saturates_and_pads() -> None:
    a = np.array([1000, 30000, -30000, 5], dtype="<i2").tobytes()
    b = np.array([-500, 10000, -10000], dtype="<i2").tobytes()
    assert _i16(mix(a, b)).tolist() == [500, 32767, -32768, 5]
    assert mix(b, a) == mix(a, b)
    assert mix(a, b"") == a


def test_tone_frequency_and_amplitude() -> None:
    pcm = tone(440.0, 1.0, 16000, 0.5)
    x = _i16(pcm)
    assert len(x) == 16000 and x[0] == 0
    assert abs(int(x.max()) - 16384) <= 1
    assert int(np.argmax(np.abs(np.fft.rfft(x)))) == 440


@pytest.mark.parametrize("chunk_ms", [10, 20, 40])
def test_chunker_rechunks_exactly(chunk_ms: int) -> None:
    rate = 16000
    src = tone(300.0, 0.5, rate)  # 16000 bytes
    ch = AudioChunker(rate, chunk_ms)
    size = rate * chunk_ms // 1000 * 2
    out: list[bytes] = []
    rng = np.random.default_rng(1)
    pos = 0
    while pos < len(src):
        n = int(rng.integers(1, 1500))
        out += ch.push(src[pos : pos + n])
        pos += n
    assert all(len(c) == size for c in out)
    tail = ch.flush(pad=False)
    assert b"".join(out) + b"".join(tail) == src
    assert ch.buffered == 0 and ch.flush() == []


def test_chunker_flush_pads_with_silence_and_fast_path() -> None:
    ch = AudioChunker(8000, 20)
    frame = bytes(range(256)) + bytes(64)
    assert ch.push(frame)[0] is frame  # exact chunk, nothing buffered: no copy
    assert ch.push(b"\x01\x02" * 10) == []
    (padded,) = ch.flush()
    assert len(padded) == 320 and padded[:20] == b"\x01\x02" * 10 and padded[20:] == bytes(300)


def test_chunker_stereo_and_validation() -> None:
    assert AudioChunker(48000, 20, num_channels=2).chunk_bytes == 3840
    with pytest.raises(ValueError):
        AudioChunker(22050, 10 // 3)
    with pytest.raises(ValueError):
        AudioChunker(16000, 0)
