"""G.711 codecs against the ITU-T G.711 tables, an independent encoder and audioop."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from _helpers import expected, require
from flowcat.audio import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int64)
ALL_PCM = ALL_INT16.astype("<i2").tobytes()


def _decision_values(segment_ends: list[int], steps: list[int]) -> np.ndarray:
    """The 129 decision values x_0..x_128 of one sign, from G.711's segment table."""
    d: list[int] = []
    for s in range(8):
        d.extend(range(segment_ends[s], segment_ends[s + 1], steps[s]))
    d.append(segment_ends[8])
    return np.array(d, dtype=np.int64)


# G.711 Table 2a (μ-law, 14-bit scale, decision values up to 8159): segment 1 holds
# one interval of size 1 then fifteen of size 2; segment s+1 has 16 intervals of 2**(s+1).
MU_D = np.concatenate(
    [[0], _decision_values([1, 31, 95, 223, 479, 991, 2015, 4063, 8159], [2, 4, 8, 16, 32, 64, 128, 256])]
)
# G.711 Table 1a (A-law, 13-bit scale up to 4096): segments 1 and 2 have step 2, then 4, 8, ... 128.
A_D = _decision_values([0, 32, 64, 128, 256, 512, 1024, 2048, 4096], [2, 2, 4, 8, 16, 32, 64, 128])


def _mu_output(n: int) -> int:
    """Decoder output value y_n (14-bit scale): 0 for n = 0, else the interval midpoint."""
    return 0 if n == 0 else (int(MU_D[n]) + int(MU_D[n + 1])) // 2


def _a_output(n: int) -> int:
    return (int(A_D[n]) + int(A_D[n + 1])) // 2


def _mu_char(n: int, negative: bool) -> int:
    """Transmitted μ-law octet for quantised value number n (all bits inverted)."""
    return (0x7F - n) if negative else (0xFF - n)


def _a_char(n: int, negative: bool) -> int:
    """Transmitted A-law octet: sign bit 1 for positive, even bits inverted."""
    return (n if negative else 0x80 | n) ^ 0x55


def test_decision_tables_have_128_intervals() -> None:
    assert len(MU_D) == 129 and MU_D[-1] == 8159
    assert len(A_D) == 129 and A_D[-1] == 4096


@pytest.fixture(params=["audioop", "tables"])
def decode_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both decoders: audioop where importable, and the numpy tables (the fallback)."""
    import flowcat.audio._g711 as g711

    if request.param == "tables":
        monkeypatch.setattr(g711, "_audioop", None)
    elif g711._audioop is None:
        pytest.skip(expected("audioop left the standard library in Python 3.13 (audioop-lts not installed)"))
    return str(request.param)


@pytest.mark.parametrize("negative", [False, True])
def test_ulaw_decode_all_codes_match_g711_table(negative: bool, decode_path: str) -> None:
    codes = bytes(_mu_char(n, negative) for n in range(128))
    got = np.frombuffer(ulaw_to_pcm16(codes), dtype="<i2")
    sign = -1 if negative else 1
    expected = [sign * 4 * _mu_output(n) for n in range(128)]
    assert got.tolist() == expected
    assert got[0] == 0 and abs(int(got[127])) == 32124


@pytest.mark.parametrize("negative", [False, True])
def test_alaw_decode_all_codes_match_g711_table(negative: bool, decode_path: str) -> None:
    codes = bytes(_a_char(n, negative) for n in range(128))
    got = np.frombuffer(alaw_to_pcm16(codes), dtype="<i2")
    sign = -1 if negative else 1
    expected = [sign * 8 * _a_output(n) for n in range(128)]
    assert got.tolist() == expected
    assert abs(int(got[0])) == 8 and abs(int(got[127])) == 32256


def _reference_encode(scale: int, decisions: np.ndarray, char) -> np.ndarray:
    """Independent encoder: place each magnitude among the G.711 decision values.

    Convention (ITU-T G.191 STL): a negative sample x has the magnitude of -1 - x,
    so the 65,536 inputs split symmetrically; the 16-bit value is divided by
    ``scale`` to reach G.711's 14-bit (μ) or 13-bit (A) scale.
    """
    x = ALL_INT16
    negative = x < 0
    mag = np.where(negative, -1 - x, x) / scale
    n = np.searchsorted(decisions[1:128], mag, side="right")
    table_pos = np.array([char(k, False) for k in range(128)])
    table_neg = np.array([char(k, True) for k in range(128)])
    return np.where(negative, table_neg[n], table_pos[n]).astype(np.uint8)


def test_ulaw_encode_all_inputs_match_reference() -> None:
    got = np.frombuffer(pcm16_to_ulaw(ALL_PCM), dtype=np.uint8)
    assert len(got) == 65536
    np.testing.assert_array_equal(got, _reference_encode(4, MU_D, _mu_char))


def test_alaw_encode_all_inputs_match_reference() -> None:
    got = np.frombuffer(pcm16_to_alaw(ALL_PCM), dtype=np.uint8)
    np.testing.assert_array_equal(got, _reference_encode(8, A_D, _a_char))


@pytest.mark.parametrize(
    ("enc", "dec", "scale", "decisions"),
    [(pcm16_to_ulaw, ulaw_to_pcm16, 4, MU_D), (pcm16_to_alaw, alaw_to_pcm16, 8, A_D)],
)
def test_roundtrip_monotonic_symmetric_and_within_half_step(enc, dec, scale, decisions) -> None:
    decoded = np.frombuffer(dec(enc(ALL_PCM)), dtype="<i2").astype(np.int64)
    assert np.all(np.diff(decoded) >= 0)
    # Symmetric: x and -1 - x decode to opposite levels.
    np.testing.assert_array_equal(decoded[:32768], -decoded[32768:][::-1])
    # Inside the coding range the error is at most half the sample's G.711 interval
    # (plus one 14/13-bit LSB lost dropping to G.711's scale).
    mag = np.where(ALL_INT16 < 0, -1 - ALL_INT16, ALL_INT16) / scale
    n = np.searchsorted(decisions[1:128], mag, side="right")
    half = scale * (decisions[n + 1] - decisions[n]) / 2
    inside = mag < decisions[128]
    assert np.all((np.abs(decoded - ALL_INT16) <= half + scale)[inside])


def test_decode_encode_is_identity_on_codes() -> None:
    for enc, dec in ((pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)):
        codes = bytes(range(256))
        again = enc(dec(codes))
        # μ-law has two zeros (0xFF, 0x7F); both decode to 0 and 0 encodes as 0xFF.
        assert all(a == b or dec(bytes([a])) == dec(bytes([b])) for a, b in zip(again, codes, strict=True))


def test_odd_trailing_byte_ignored_and_empty() -> None:
    assert pcm16_to_ulaw(b"") == b"" and ulaw_to_pcm16(b"") == b""
    assert pcm16_to_alaw(b"\x00\x10\x07") == pcm16_to_alaw(b"\x00\x10")


@pytest.fixture(scope="module")
def audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if sys.version_info >= (3, 13):
            pytest.skip(expected("audioop left the standard library in Python 3.13"))
        return require("audioop")


def test_decode_agrees_with_audioop(audioop) -> None:
    codes = bytes(range(256))
    assert ulaw_to_pcm16(codes) == audioop.ulaw2lin(codes, 2)
    assert alaw_to_pcm16(codes) == audioop.alaw2lin(codes, 2)


def test_alaw_encode_agrees_with_audioop(audioop) -> None:
    assert pcm16_to_alaw(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)


def test_ulaw_encode_agrees_with_audioop_where_defined_to(audioop) -> None:
    ours = np.frombuffer(pcm16_to_ulaw(ALL_PCM), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_PCM, 2), dtype=np.uint8)
    nonneg = ALL_INT16 >= 0
    np.testing.assert_array_equal(ours[nonneg], theirs[nonneg])
    # audioop floors x >> 2 before taking the magnitude, i.e. rounds negative
    # magnitudes up by one 14-bit step: audioop(x) == ours(x - 4).
    neg = (ALL_INT16 < 0) & (ALL_INT16 >= -32764)
    np.testing.assert_array_equal(theirs[neg], ours[np.flatnonzero(neg) - 4])
    assert int((ours != theirs).sum()) == 508
    # And that bias is audioop's error, not ours: -1 decodes to -8 via audioop, 0 via G.711.
    assert audioop.ulaw2lin(audioop.lin2ulaw(b"\xff\xff", 2), 2) == (-8).to_bytes(2, "little", signed=True)
    assert ulaw_to_pcm16(pcm16_to_ulaw(b"\xff\xff")) == b"\x00\x00"
