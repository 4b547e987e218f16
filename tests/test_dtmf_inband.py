"""In-band DTMF: Goertzel detection of generated tones, loss robustness, false-positive rejection."""

from __future__ import annotations

import numpy as np
import pytest

from flowcat.audio import pcm16_to_ulaw, ulaw_to_pcm16
from flowcat.audio.dtmf import DTMFToneGenerator, GoertzelDTMFDetector

ALL_KEYS = "123A456B789C*0#D"


def frames(pcm: bytes, rate: int, ms: int = 20) -> list[bytes]:
    step = 2 * rate * ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def detect(rate: int, chunks: list[bytes], tail_ms: int = 200) -> str:
    det = GoertzelDTMFDetector(rate)
    keys = []
    for c in chunks:
        keys += det.process(c)
    keys += det.process(bytes(2 * rate * tail_ms // 1000))
    return "".join(k.value for k in keys)


def sine(rate: int, freqs: list[float], seconds: float, amp: float = 6000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    wave = sum(amp * np.sin(2 * np.pi * f * t) for f in freqs)
    return np.asarray(wave).astype("<i2").tobytes()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_every_key_detected_exactly(rate: int) -> None:
    gen = DTMFToneGenerator(rate)
    for key in ALL_KEYS:
        assert detect(rate, frames(gen.tone(key), rate)) == key, key
    assert detect(rate, frames(gen.sequence(ALL_KEYS), rate)) == ALL_KEYS


@pytest.mark.parametrize("rate", [8000, 16000])
def test_sequence_in_order_any_chunking(rate: int) -> None:
    pcm = DTMFToneGenerator(rate).sequence("1234#")
    assert detect(rate, frames(pcm, rate)) == "1234#"
    odd = [pcm[i : i + 333] for i in range(0, len(pcm), 333)]  # odd byte counts, split samples
    assert detect(rate, odd) == "1234#"
    assert detect(rate, [pcm]) == "1234#"


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("mode", ["silence", "missing"])
def test_three_percent_frame_loss_still_exact(rate: int, mode: str) -> None:
    """Drop 1 of every 33 20 ms frames, at every phase of the pattern."""
    digits = ALL_KEYS + "1234#55"
    chunks = frames(DTMFToneGenerator(rate).sequence(digits), rate)
    for phase in range(33):
        lossy: list[bytes] = []
        for i, c in enumerate(chunks):
            if i % 33 != phase:
                lossy.append(c)
            elif mode == "silence":
                lossy.append(bytes(len(c)))  # concealed by silence; "missing": just gone
        assert detect(rate, lossy) == digits, (mode, phase)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_same_key_twice_reported_twice(rate: int) -> None:
    gen = DTMFToneGenerator(rate)
    assert detect(rate, frames(gen.sequence("55", gap_ms=60), rate)) == "55"
    assert detect(rate, frames(gen.tone("5", duration_ms=400), rate)) == "5"  # long press: once


@pytest.mark.parametrize("rate", [8000, 16000])
def test_noise_tones_chords_silence_give_nothing(rate: int) -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 4000, rate * 3).astype("<i2").tobytes()
    assert detect(rate, frames(noise, rate)) == ""
    assert detect(rate, frames(sine(rate, [440.0], 3.0), rate)) == ""
    assert detect(rate, frames(sine(rate, [261.63, 329.63, 392.0], 3.0, 3000.0), rate)) == ""
    # A single DTMF frequency alone and a row+row pair are not keys.
    assert detect(rate, frames(sine(rate, [770.0], 1.0), rate)) == ""
    assert detect(rate, frames(sine(rate, [697.0, 852.0], 1.0), rate)) == ""
    # A buzzy voice-like pulse train (120 Hz, rich harmonics).
    t = np.arange(rate * 2) / rate
    buzz = (6000 * np.sign(np.sin(2 * np.pi * 120 * t))).astype("<i2").tobytes()
    assert detect(rate, frames(buzz, rate)) == ""
    assert detect(rate, frames(bytes(rate * 2 * 3), rate)) == ""


@pytest.mark.parametrize("rate", [8000, 16000])
def test_short_blip_rejected_min_duration_kept(rate: int) -> None:
    gen = DTMFToneGenerator(rate)
    for lead_ms in (0, 5, 10, 15):
        lead = bytes(2 * rate * lead_ms // 1000)
        assert detect(rate, frames(lead + gen.tone("8", duration_ms=20), rate)) == "", lead_ms
        assert detect(rate, frames(lead + gen.tone("8", duration_ms=45), rate)) == "8", lead_ms


def test_twist_and_level_limits() -> None:
    rate = 8000
    row, col = 770.0, 1336.0  # key 5
    t = np.arange(rate // 5) / rate

    def two(a_row: float, a_col: float) -> bytes:
        w = a_row * np.sin(2 * np.pi * row * t) + a_col * np.sin(2 * np.pi * col * t)
        return w.astype("<i2").tobytes()

    assert detect(rate, frames(two(5000, 5000 * 10 ** (-6 / 20)), rate)) == "5"  # 6 dB normal twist
    assert detect(rate, frames(two(5000, 5000 * 10 ** (-12 / 20)), rate)) == ""  # 12 dB: rejected
    assert detect(rate, frames(two(5000 * 10 ** (-8 / 20), 5000), rate)) == ""  # 8 dB reverse: rejected
    assert detect(rate, frames(two(100, 100), rate)) == ""  # below -40 dBFS per tone


def test_survives_g711_round_trip() -> None:
    pcm = DTMFToneGenerator(8000).sequence("1234#", amplitude_dbfs=-20)
    ulaw = ulaw_to_pcm16(pcm16_to_ulaw(pcm))
    assert detect(8000, frames(ulaw, 8000)) == "1234#"


def test_tone_generator_shape() -> None:
    gen = DTMFToneGenerator(8000)
    pcm = gen.tone("1", duration_ms=100, gap_ms=60, amplitude_dbfs=-10)
    assert len(pcm) == 2 * 8000 * 160 // 1000
    x = np.frombuffer(pcm, dtype="<i2")
    assert not x[800:].any()  # the gap is silence
    peak_dbfs = 20 * np.log10(np.abs(x).max() / 32767)
    assert -11.0 < peak_dbfs <= -10.0
    assert gen.tone("1") is gen.tone("1")  # cached
    with pytest.raises(ValueError):
        gen.tone("x")
