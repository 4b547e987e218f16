"""ITU-T G.711 μ-law and A-law codecs on 16-bit little-endian PCM.

Each direction is one numpy table lookup: a 65,536-entry encode table indexed by
the ``uint16`` view of the samples and a 256-entry decode table, built once at
import (≈ 130 KiB each law).

Quantisation convention. G.711 defines its laws on a 14-bit (μ-law) or 13-bit
(A-law) signed uniform scale and lists the decision values for the magnitude; it
does not say how a 16-bit two's-complement sample maps onto that scale. We follow
the ITU-T's own reference software (G.191 STL, ``g711.c``): the magnitude of a
negative sample ``x`` is that of ``~x == -x - 1``, so ``x`` and ``-1 - x`` always
get the same magnitude code. This splits the 65,536 inputs symmetrically and every
sample decodes to the nearest G.711 output level (within half a step).

* A-law: bit-exact with CPython's ``audioop.lin2alaw`` for all inputs.
* μ-law: bit-exact with ``audioop.lin2ulaw`` for ``x >= 0``. For ``x < 0``
  audioop shifts first (``x >> 2``, i.e. rounds the magnitude *up*) and then
  negates, which is ``ours(x - 4)``: e.g. ``-1`` encodes as a code that decodes
  to ``-8`` instead of ``0``. That is a bias of the audioop/Sun-derived routine,
  not G.711; 508 of the 32,768 negative inputs get a different (one step larger) code.
  Decoding is identical to audioop for all 256 codes of both laws.

Decoding uses ``audioop`` (``audioop-lts`` on Python ≥ 3.13) where it is importable on a
little-endian machine: the same output, about 30× cheaper per 20 ms packet than three
numpy calls (the inbound path of every carrier call decodes 50 packets a second).
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

import numpy as np
import numpy.typing as npt

__all__ = ["alaw_to_pcm16", "pcm16_to_alaw", "pcm16_to_ulaw", "ulaw_to_pcm16"]

_I16 = np.dtype("<i2")


def _all_int16() -> npt.NDArray[np.int32]:
    """All int16 values, ordered by their uint16 bit pattern (the LUT index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _segment(mag: npt.NDArray[np.int32], first_end: int) -> npt.NDArray[np.int32]:
    """Segment number 0..7: how many of ``first_end << k`` (k = 0..6) ``mag`` reaches."""
    seg = np.zeros_like(mag)
    for k in range(7):
        seg += mag >= (first_end << k)
    return seg


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    mag = np.where(x < 0, ~x, x) >> 2  # 14-bit magnitude, G.191 convention
    biased = np.minimum(mag + 33, 0x1FFF)
    seg = _segment(biased, 64)
    quant = (biased >> (seg + 1)) & 0xF
    sign = np.where(x < 0, 0x80, 0)
    table: npt.NDArray[np.uint8] = (((seg << 4) | quant | sign) ^ 0xFF).astype(np.uint8)
    return table


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0xFF
    seg = (code >> 4) & 7
    quant = code & 0xF
    mag = (((quant << 1) + 33) << seg) - 33
    return (np.where(code & 0x80, -mag, mag) << 2).astype(_I16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    mag = np.where(x < 0, ~x, x) >> 3  # 13-bit scale magnitude 0..4095
    seg = _segment(mag, 32)
    quant = (mag >> np.maximum(seg, 1)) & 0xF
    sign = np.where(x < 0, 0, 0x80)
    return (((seg << 4) | quant | sign) ^ 0x55).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (code >> 4) & 7
    quant = code & 0xF
    mag = np.where(seg == 0, (quant << 1) + 1, ((quant << 1) + 33) << np.maximum(seg - 1, 0))
    return (np.where(code & 0x80, mag, -mag) << 3).astype(_I16)


def _load_audioop() -> ModuleType | None:
    """``audioop`` when it decodes the same as the tables here (little-endian), else None."""
    if sys.byteorder != "little":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        return None
    return audioop


_audioop = _load_audioop()
_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()
for _t in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _t.flags.writeable = False


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode 16-bit little-endian PCM to G.711 μ-law.

    Args:
        pcm: Signed 16-bit little-endian samples (any rate, any channel layout);
            a trailing odd byte is ignored.

    Returns:
        One μ-law byte per sample.
    """
    n = len(pcm) >> 1
    return _ULAW_ENC.take(np.frombuffer(pcm, dtype="<u2", count=n)).tobytes()


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 μ-law to 16-bit little-endian PCM.

    Args:
        data: μ-law bytes, one per sample.

    Returns:
        Signed 16-bit little-endian samples (2 bytes per input byte).
    """
    if _audioop is not None:
        out: bytes = _audioop.ulaw2lin(data, 2)
        return out
    return _ULAW_DEC.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """Encode 16-bit little-endian PCM to G.711 A-law.

    Args:
        pcm: Signed 16-bit little-endian samples; a trailing odd byte is ignored.

    Returns:
        One A-law byte per sample.
    """
    n = len(pcm) >> 1
    return _ALAW_ENC.take(np.frombuffer(pcm, dtype="<u2", count=n)).tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 A-law to 16-bit little-endian PCM.

    Args:
        data: A-law bytes, one per sample.

    Returns:
        Signed 16-bit little-endian samples (2 bytes per input byte).
    """
    if _audioop is not None:
        out: bytes = _audioop.alaw2lin(data, 2)
        return out
    return _ALAW_DEC.take(np.frombuffer(data, dtype=np.uint8)).tobytes()
