"""Smoothed, normalised loudness of an audio stream, per VAD window."""

from __future__ import annotations

import math

import numpy as np

from .._g711 import _audioop

__all__ = ["VolumeMeter", "mean_square", "quick_mean_square"]

_I16 = np.dtype("<i2")
_FULL_SCALE_SQ = 32768.0 * 32768.0

VOLUME_WINDOW_SECS = 0.4
"""Loudness is measured over the last 0.4 s (a BS.1770 gating block)."""
SMOOTHING = 0.2
"""Exponential smoothing factor applied once per VAD window."""
_FLOOR_LUFS = -110.0
_CEIL_LUFS = -10.0
_ABS_GATE_LUFS = -70.0


def mean_square(window: bytes) -> float:
    """Mean of the squared int16 samples of ``window`` (PCM16 LE), in LSB²."""
    a = np.frombuffer(window, dtype=_I16).astype(np.float32)
    n = a.shape[0]
    return float(a.dot(a)) / n if n else 0.0


def quick_mean_square(window: bytes) -> float:
    """:func:`mean_square` through ``audioop.rms`` where available (a C loop, no arrays): the
    integer RMS squared, within 2·RMS+1 LSB² of the exact value."""
    if _audioop is None:
        return mean_square(window)
    rms: int = _audioop.rms(window, 2)
    return float(rms * rms)


class VolumeMeter:
    """Pipecat's volume gate semantics, computed cheaply.

    Pipecat measures BS.1770 integrated loudness (LUFS) of the last 0.4 s, maps
    -110..-10 LUFS linearly onto 0..1 (below the -70 LUFS absolute gate it reads 0),
    and smooths the result exponentially with factor 0.2 per window. This meter does
    the same from the per-window mean squares it is given, with two differences:
    no K-weighting filter (speech reads within a few dB of the weighted value, and the
    default gate of 0.6 ≈ -50 LUFS is far below normal speech at -20..-35 LUFS), and
    at the start of a stream it measures the audio it has instead of reading 0
    until 0.4 s have arrived.

    Args:
        window_secs: Duration of one VAD window, in seconds.
    """

    __slots__ = ("_i", "_n", "_ring", "volume")

    def __init__(self, window_secs: float) -> None:
        size = max(1, math.ceil(VOLUME_WINDOW_SECS / window_secs - 1e-9))
        self._ring = [0.0] * size
        self._i = 0
        self._n = 0
        self.volume = 0.0
        """The smoothed volume after the last window (0..1)."""

    def reset(self) -> None:
        """Forget the audio seen so far."""
        self._ring = [0.0] * len(self._ring)
        self._i = self._n = 0
        self.volume = 0.0

    def stays_below(self, ms: float, limit: float) -> bool:
        """Whether a window of mean square ``ms`` is itself below ``limit`` and leaves the
        smoothed volume below it (nothing is recorded: :meth:`update` does that)."""
        return self._below(ms, limit) >= 0.0

    def update_if_below(self, ms: float, limit: float) -> bool:
        """:meth:`update` with ``ms`` if :meth:`stays_below` holds (then True), else nothing."""
        vol = self._below(ms, limit)
        if vol < 0.0:
            return False
        ring = self._ring
        ring[self._i] = ms
        self._i = (self._i + 1) % len(ring)
        if self._n < len(ring):
            self._n += 1
        self.volume = vol
        return True

    def _below(self, ms: float, limit: float) -> float:
        """The smoothed volume after a window of mean square ``ms`` if it and the window
        stay below ``limit``, else -1."""
        if _level(ms) >= limit:
            return -1.0
        ring = self._ring
        n = self._n + 1 if self._n < len(ring) else self._n
        vol = self.volume + SMOOTHING * (_level((sum(ring) - ring[self._i] + ms) / n) - self.volume)
        return vol if vol < limit else -1.0

    def update(self, ms: float) -> float:
        """Add one window's mean square (LSB²); return the new smoothed volume (0..1)."""
        ring = self._ring
        ring[self._i] = ms
        self._i = (self._i + 1) % len(ring)
        if self._n < len(ring):
            self._n += 1
        vol = self.volume + SMOOTHING * (_level(sum(ring) / self._n) - self.volume)
        self.volume = vol
        return vol


def _level(mean: float) -> float:
    """A mean square (LSB²) as normalised loudness 0..1 (0 below the absolute gate)."""
    if mean <= 0.0:
        return 0.0
    lufs = -0.691 + 10.0 * math.log10(mean / _FULL_SCALE_SQ)
    if lufs < _ABS_GATE_LUFS:
        return 0.0
    level = (lufs - _FLOOR_LUFS) / (_CEIL_LUFS - _FLOOR_LUFS)
    return 1.0 if level > 1.0 else level
