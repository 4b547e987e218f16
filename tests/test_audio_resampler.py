"""StreamResampler: frequency, level and length preserved across chunked streams."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr

from flowcat.audio import StreamResampler, rms_dbfs, tone

RATES = (8000, 16000, 24000, 48000)
PAIRS = [(a, b) for a, b in itertools.product(RATES, RATES) if a != b]


def _stream(r: StreamResampler, pcm: bytes, chunk_ms: int = 20) -> bytes:
    step = 2 * r.num_channels * r.in_rate * chunk_ms // 1000
    out = [r.resample(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    return b"".join(out) + r.flush()


def _close(a: bytes, b: bytes) -> bool:
    """Same stream up to int16 rounding (soxr's block split can move the last bits)."""
    x = np.frombuffer(a, dtype="<i2").astype(int)
    y = np.frombuffer(b, dtype="<i2").astype(int)
    return len(x) == len(y) and int(np.max(np.abs(x - y), initial=0)) <= 2


def _peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * rate / len(x)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_tone_keeps_frequency_level_and_length(in_rate: int, out_rate: int) -> None:
    src = tone(440.0, 1.0, in_rate, amplitude=0.5)
    out = _stream(StreamResampler(in_rate, out_rate), src)
    n_out = len(out) // 2
    assert abs(n_out - out_rate) <= 2  # 1 s in -> 1 s out (after flush)
    assert abs(_peak_hz(out, out_rate) - 440.0) <= 1.0
    mid = out[out_rate // 2 : 3 * out_rate // 2]  # skip edges (filter transients)
    assert rms_dbfs(mid) == pytest.approx(rms_dbfs(src), abs=0.1)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (48000, 16000), (16000, 24000)])
def test_chunked_output_matches_one_shot(in_rate: int, out_rate: int) -> None:
    src = tone(300.0, 0.5, in_rate, 0.3) + tone(1200.0, 0.5, in_rate, 0.3)
    chunked = np.frombuffer(_stream(StreamResampler(in_rate, out_rate), src), dtype="<i2").astype(int)
    one_shot = soxr.resample(np.frombuffer(src, dtype="<i2"), in_rate, out_rate, quality="MQ").astype(int)
    assert abs(len(chunked) - len(one_shot)) <= 2
    n = min(len(chunked), len(one_shot))
    assert np.max(np.abs(chunked[:n] - one_shot[:n])) <= 2  # int16 rounding only


def test_length_tracks_ratio_over_long_stream() -> None:
    r = StreamResampler(8000, 48000)
    total = 0
    chunk = tone(440.0, 0.02, 8000, 0.1)
    for i in range(1, 3001):  # 60 s of 20 ms chunks
        total += len(r.resample(chunk)) // 2
        if i % 500 == 0:
            lag_ms = (i * 960 - total) / 48
            assert 0 <= lag_ms <= 200  # bounded soxr block latency, no drift
    assert 3000 * 960 - total < 48 * 200
    total += len(r.flush()) // 2
    assert abs(total - 3000 * 960) <= 2


def test_passthrough_when_rates_equal() -> None:
    r = StreamResampler(16000, 16000)
    pcm = tone(440.0, 0.02, 16000)
    assert r.passthrough
    assert r.resample(pcm) is pcm
    assert r.flush() == b""


def test_stereo_channels_stay_separate() -> None:
    left = np.frombuffer(tone(440.0, 1.0, 16000), dtype="<i2")
    right = np.frombuffer(tone(1000.0, 1.0, 16000), dtype="<i2")
    inter = np.column_stack([left, right]).astype("<i2").tobytes()
    out = np.frombuffer(_stream(StreamResampler(16000, 8000, num_channels=2), inter), dtype="<i2")
    assert abs(len(out) // 2 - 8000) <= 2
    assert abs(_peak_hz(out[0::2].tobytes(), 8000) - 440.0) <= 1.0
    assert abs(_peak_hz(out[1::2].tobytes(), 8000) - 1000.0) <= 1.0


def test_odd_byte_chunks_are_carried() -> None:
    src = tone(440.0, 0.5, 16000)
    whole = _stream(StreamResampler(16000, 8000), src)
    r = StreamResampler(16000, 8000)
    pieces = [r.resample(src[i : i + 301]) for i in range(0, len(src), 301)]
    assert _close(b"".join(pieces) + r.flush(), whole)


def test_reset_and_flush_start_a_fresh_stream() -> None:
    src = tone(440.0, 0.3, 16000)
    first = _stream(StreamResampler(16000, 48000), src)
    r = StreamResampler(16000, 48000)
    r.resample(tone(2000.0, 0.1, 16000))
    r.reset()
    assert _close(_stream(r, src), first)
    assert _close(_stream(r, src), first)  # flush also leaves it fresh


def test_rejects_bad_rates() -> None:
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
