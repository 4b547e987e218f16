"""Helpers on signed 16-bit little-endian PCM (the runtime's audio format)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["apply_gain", "float_to_pcm16", "mix", "pcm16_to_float", "rms_dbfs", "silence", "tone"]

_I16 = np.dtype("<i2")


def pcm16_to_float(pcm: bytes) -> npt.NDArray[np.float32]:
    """Convert 16-bit PCM to float samples.

    Args:
        pcm: Signed 16-bit little-endian samples.

    Returns:
        float32 array in [-1.0, 1.0) (sample / 32768), interleaved as the input.
    """
    return np.frombuffer(pcm, dtype=_I16, count=len(pcm) >> 1).astype(np.float32) * np.float32(1 / 32768)


def float_to_pcm16(samples: npt.ArrayLike) -> bytes:
    """Convert float samples to 16-bit PCM, rounding and saturating.

    Args:
        samples: Values in full-scale units (1.0 == 32768); values outside
            [-1.0, 32767/32768] saturate.

    Returns:
        Signed 16-bit little-endian samples. ``float_to_pcm16(pcm16_to_float(p)) == p``.
    """
    x = np.rint(np.asarray(samples, dtype=np.float32) * np.float32(32768))
    out: bytes = np.clip(x, -32768, 32767).astype(_I16).tobytes()
    return out


def rms_dbfs(pcm: bytes) -> float:
    """Root-mean-square level relative to digital full scale.

    Args:
        pcm: Signed 16-bit little-endian samples.

    Returns:
        Level in dBFS, where 0 dBFS is a full-scale square wave (a full-scale sine
        reads -3.01 dBFS); ``-inf`` for empty or all-zero input.
    """
    n = len(pcm) >> 1
    if n == 0:
        return -math.inf
    x = np.frombuffer(pcm, dtype=_I16, count=n).astype(np.float64)
    ms = float(np.dot(x, x)) / n
    if ms == 0.0:
        return -math.inf
    return 10.0 * math.log10(ms / (32768.0 * 32768.0))


def apply_gain(pcm: bytes, gain_db: float | None = None, *, factor: float | None = None) -> bytes:
    """Scale 16-bit PCM with saturation.

    Args:
        pcm: Signed 16-bit little-endian samples.
        gain_db: Gain in dB (``6.02`` doubles the amplitude). Ignored when
            ``factor`` is given.
        factor: Linear amplitude factor (``0.5`` halves the amplitude).

    Returns:
        Scaled samples, rounded and saturated to the int16 range.
    """
    if factor is None:
        factor = 10.0 ** ((gain_db or 0.0) / 20.0)
    if factor == 1.0:
        return pcm
    x = np.frombuffer(pcm, dtype=_I16, count=len(pcm) >> 1).astype(np.float32)
    x *= np.float32(factor)
    np.rint(x, out=x)
    return np.clip(x, -32768, 32767).astype(_I16).tobytes()


def silence(duration_s: float, sample_rate: int, num_channels: int = 1) -> bytes:
    """Digital silence.

    Args:
        duration_s: Duration in seconds (rounded to whole samples).
        sample_rate: Sample rate in Hz.
        num_channels: Interleaved channels.

    Returns:
        Zero-valued 16-bit samples.
    """
    return bytes(2 * num_channels * round(duration_s * sample_rate))


def mix(a: bytes, b: bytes) -> bytes:
    """Sum two 16-bit PCM signals sample by sample, saturating at the int16 limits.

    Args:
        a: Signed 16-bit little-endian samples.
        b: Signed 16-bit little-endian samples (same rate and layout as ``a``).

    Returns:
        The saturated sum, as long as the longer input (the shorter one is
        treated as followed by silence).
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return a
    x = np.frombuffer(a, dtype=_I16, count=len(a) >> 1).astype(np.int32)
    y = np.frombuffer(b, dtype=_I16, count=len(b) >> 1)
    x[: len(y)] += y
    np.clip(x, -32768, 32767, out=x)
    return x.astype(_I16).tobytes()


def tone(freq: float, duration: float, sample_rate: int, amplitude: float = 0.5) -> bytes:
    """A sine tone, for tests and demos.

    Args:
        freq: Frequency in Hz.
        duration: Duration in seconds (rounded to whole samples).
        sample_rate: Sample rate in Hz.
        amplitude: Peak amplitude as a fraction of full scale (0..1).

    Returns:
        Mono signed 16-bit little-endian samples, starting at phase 0.
    """
    n = round(duration * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    return float_to_pcm16(amplitude * np.sin(2.0 * np.pi * freq * t))
