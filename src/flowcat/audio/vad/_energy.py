"""EnergyVADAnalyzer: a dependency-free VAD from signal level over an adaptive floor."""

from __future__ import annotations

import math

import numpy as np

from ._analyzer import VADAnalyzer
from ._params import VADParams

__all__ = ["EnergyVADAnalyzer"]

_I16 = np.dtype("<i2")


class EnergyVADAnalyzer(VADAnalyzer):
    """Voice confidence from how far a window's level rises above the noise floor.

    Each 20 ms window's RMS level (dBFS) is compared with a tracked noise floor: the
    floor follows any drop at once and rises at most ``floor_rise_db_per_sec``.
    Confidence is 0 at ``margin_db`` above the floor and 1 at ``margin_db + range_db``.

    What it does and does not do (by design, no model):

    * Fires on speech after silence or steady background.
    * Ignores steady noise once the floor has caught up with it (a stream that *starts*
      in steady noise takes the noise as its floor at once).
    * **Fires on any loud non-stationary sound**: a noise burst after silence,
      music, door slams, clicks. Use Silero where that matters.

    Args:
        sample_rate: Fixed rate in Hz, or None to take the pipeline's.
        params: State-machine thresholds.
        margin_db: Level above the floor (dB) where confidence starts rising.
        range_db: dB over which confidence rises from 0 to 1.
        floor_rise_db_per_sec: How fast the floor may climb (dB per second of audio).
        min_floor_dbfs: Lowest floor (digital silence reads as this).
    """

    supported_sample_rates = (8000, 16000, 24000, 32000, 44100, 48000)

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        params: VADParams | None = None,
        margin_db: float = 6.0,
        range_db: float = 12.0,
        floor_rise_db_per_sec: float = 3.0,
        min_floor_dbfs: float = -90.0,
    ) -> None:
        self._margin = margin_db
        self._range = range_db
        self._rise_per_sec = floor_rise_db_per_sec
        self._min_floor = min_floor_dbfs
        self._floor: float | None = None
        super().__init__(sample_rate=sample_rate, params=params)

    def num_frames_required(self) -> int:
        """20 ms of samples at the current rate."""
        return self._sample_rate // 50

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The tracked noise floor in dBFS (None before the first window)."""
        return self._floor

    def restart(self) -> None:
        """Start a new stream (the noise floor is learned again)."""
        super().restart()
        self._floor = None

    def voice_confidence(self, buffer: bytes) -> float:
        """Confidence (0..1) that ``buffer`` (one window of PCM16) rises above the floor."""
        a = np.frombuffer(buffer, dtype=_I16).astype(np.float32)
        ms = float(a.dot(a)) / max(1, a.shape[0])
        level = 10.0 * math.log10(ms / (32768.0 * 32768.0)) if ms > 0.0 else self._min_floor
        if level < self._min_floor:
            level = self._min_floor
        floor = self._floor
        if floor is None or level <= floor:
            floor = level
        else:
            floor = min(level, floor + self._rise_per_sec * self._window_secs)
        self._floor = floor
        conf = (level - floor - self._margin) / self._range
        return 0.0 if conf <= 0.0 else 1.0 if conf >= 1.0 else conf
