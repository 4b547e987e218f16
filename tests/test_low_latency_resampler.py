"""LowLatencyResampler: exact share per chunk, the stated delay, filter quality, stream semantics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flowcat.audio import LowLatencyResampler, StreamResampler, tone
from flowcat.errors import ConfigError

PAIRS = [
    (24000, 8000),
    (16000, 8000),
    (48000, 8000),
    (24000, 16000),
    (48000, 16000),
    (8000, 16000),
    (16000, 24000),
    (8000, 24000),
    (22050, 16000),
    (44100, 8000),
]


def _i16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def _snr_db(out: bytes, rate: int, hz: float, amp: float, delay: float) -> float:
    """Signal over error against the ideal tone delayed by ``delay`` (edges skipped)."""
    y = _i16(out)
    t = np.arange(len(y)) / rate - delay
    ideal = amp * 32767 * np.sin(2 * np.pi * hz * t)
    body = slice(rate // 50, -rate // 50)
    err = y[body] - ideal[body]
    return float(10 * np.log10(np.mean(ideal[body] ** 2) / np.mean(err**2)))


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_every_20ms_chunk_gives_its_exact_share_at_once(in_rate: int, out_rate: int) -> None:
    rs = LowLatencyResampler(in_rate, out_rate)
    audio = tone(440.0, 1.0, in_rate, 0.4)
    step = in_rate // 50 * 2
    sizes = [len(rs.resample(audio[i : i + step])) for i in range(0, len(audio), step)]
    assert sizes == [out_rate // 50 * 2] * 50  # the first chunk included: nothing is held
    # soxr's block recipe, for contrast: nothing for the first chunks, then bursts.
    soxr_sizes = [len(StreamResampler(in_rate, out_rate).resample(audio[:step]))]
    assert soxr_sizes[0] < out_rate // 50 * 2


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_output_is_the_input_tone_delayed_by_the_stated_delay(in_rate: int, out_rate: int) -> None:
    rs = LowLatencyResampler(in_rate, out_rate)
    assert 0.0009 < rs.delay_secs < 0.0025
    out = rs.resample(tone(440.0, 1.0, in_rate, 0.4))
    assert _snr_db(out, out_rate, 440.0, 0.4, rs.delay_secs) > 80
    # Off by one output sample, the match is far worse: the delay is the real one.
    assert _snr_db(out, out_rate, 440.0, 0.4, rs.delay_secs + 1 / out_rate) < 40


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(24000, 8000), (16000, 8000), (8000, 16000), (16000, 24000)]
)
def test_impulse_peaks_at_the_stated_delay(in_rate: int, out_rate: int) -> None:
    rs = LowLatencyResampler(in_rate, out_rate)
    impulse = np.zeros(in_rate // 10, dtype="<i2")
    impulse[0] = 30000
    y = _i16(rs.resample(impulse.tobytes()))
    # The peak lies within one output sample of the group delay.
    assert abs(np.argmax(y) / out_rate - rs.delay_secs) <= 1 / out_rate


def test_downsampling_rejects_what_would_alias() -> None:
    def level(hz: float) -> float:
        rs = LowLatencyResampler(24000, 8000)
        y = _i16(rs.resample(tone(hz, 0.5, 24000, 0.5)))[200:]
        return float(20 * np.log10(np.sqrt(np.mean(y * y)) / (0.5 * 32767 / np.sqrt(2)) + 1e-12))

    assert abs(level(1000.0)) < 0.01
    assert abs(level(3400.0)) < 0.05  # the telephone band is flat
    for hz in (4600.0, 6000.0, 8000.0, 11000.0):  # would fold into 0-3.4 kHz
        assert level(hz) < -75, hz


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 8000), (16000, 24000), (22050, 16000)])
def test_chunking_does_not_change_the_output(in_rate: int, out_rate: int) -> None:
    audio = tone(440.0, 0.5, in_rate, 0.9)
    whole = LowLatencyResampler(in_rate, out_rate).resample(audio)
    rs = LowLatencyResampler(in_rate, out_rate)
    rng = random.Random(7)
    parts, i = [], 0
    while i < len(audio):
        k = rng.randint(1, 1500)  # odd byte counts too: the half sample is carried
        parts.append(rs.resample(audio[i : i + k]))
        i += k
    assert b"".join(parts) == whole
    assert len(whole) == len(audio) * out_rate // in_rate


def test_full_scale_input_saturates_instead_of_wrapping() -> None:
    square = np.where(np.arange(4800) % 60 < 30, 32767, -32768).astype("<i2").tobytes()
    y = np.frombuffer(LowLatencyResampler(24000, 8000).resample(square), dtype="<i2")
    body = y[40:]
    assert body.max() == 32767 and body.min() == -32768  # the filter overshoots; clipped
    # No wrap-around: a 400 Hz square keeps long runs of one sign (a wrapped sample
    # would flip the sign of a single sample inside a run).
    signs = np.sign(body.astype(np.int32))
    flips = np.count_nonzero(np.diff(signs))
    assert flips <= 2 * len(body) // 20 + 2


def test_flush_releases_the_filter_tail_then_starts_afresh() -> None:
    rs = LowLatencyResampler(24000, 8000)
    audio = tone(440.0, 0.2, 24000, 0.5)
    first = rs.resample(audio)
    tail = rs.flush()
    assert len(first) == 1600 * 2
    assert len(tail) // 2 == pytest.approx(rs.delay_secs * 8000, abs=1)
    assert np.abs(_i16(tail)).max() > 1000  # the last ~2 ms of the tone
    assert rs.resample(audio) == first  # a new stream: same as a fresh resampler
    rs.resample(audio[:1001])
    rs.reset()
    assert rs.resample(audio) == first


def test_equal_rates_pass_through_and_carry_odd_bytes() -> None:
    rs = LowLatencyResampler(16000, 16000)
    assert rs.passthrough and rs.delay_secs == 0.0
    assert rs.resample(b"\x01\x02\x03") == b"\x01\x02"
    assert rs.resample(b"\x04") == b"\x03\x04"
    assert rs.flush() == b""


def test_stereo_is_two_mono_streams() -> None:
    left = tone(440.0, 0.2, 24000, 0.5)
    right = tone(1000.0, 0.2, 24000, 0.3)
    both = np.stack([np.frombuffer(left, "<i2"), np.frombuffer(right, "<i2")], axis=1).astype("<i2").tobytes()
    for in_rate, out_rate in ((24000, 8000), (24000, 16000)):
        out = np.frombuffer(LowLatencyResampler(in_rate, out_rate, 2).resample(both), "<i2").reshape(-1, 2)
        mono_l = LowLatencyResampler(in_rate, out_rate).resample(left)
        mono_r = LowLatencyResampler(in_rate, out_rate).resample(right)
        assert out[:, 0].tobytes() == mono_l and out[:, 1].tobytes() == mono_r


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        LowLatencyResampler(0, 8000)
    with pytest.raises(ConfigError):
        LowLatencyResampler(8000, 16000, num_channels=0)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 8000), (16000, 24000), (8000, 16000)])
def test_a_constant_comes_out_exactly(in_rate: int, out_rate: int) -> None:
    """Unity gain and rounding to the nearest sample (not towards zero)."""
    for value in (1, -1, 1000, -1000, 12345, -20000, 32767, -32768):
        rs = LowLatencyResampler(in_rate, out_rate)
        y = np.frombuffer(rs.resample(np.full(in_rate // 10, value, dtype="<i2").tobytes()), "<i2")
        settled = y[round(2 * rs.delay_secs * out_rate) + 1 :]
        assert settled.min() == settled.max() == value, value
