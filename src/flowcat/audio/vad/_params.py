"""VAD parameters, states and the events an analyzer reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...errors import ConfigError

__all__ = ["VADEvent", "VADParams", "VADState"]


class VADState(enum.IntEnum):
    """Where the VAD state machine is (pipecat's four states).

    ``QUIET`` → ``STARTING`` (voiced windows, fewer than ``start_secs`` worth) →
    ``SPEAKING`` → ``STOPPING`` (unvoiced windows, fewer than ``stop_secs`` worth) → ``QUIET``.
    """

    QUIET = 1
    STARTING = 2
    SPEAKING = 3
    STOPPING = 4


class VADEvent(enum.IntEnum):
    """What an analyzer tells its listener, with the audio position it happened at."""

    STARTED = 1
    """STARTING → SPEAKING: ``start_secs`` of voiced audio confirmed."""
    STOPPED = 2
    """STOPPING → QUIET: ``stop_secs`` of unvoiced audio confirmed."""
    ACTIVITY = 3
    """Still speaking (at most once per ``activity_period`` of audio)."""


@dataclass(slots=True)
class VADParams:
    """Thresholds of the VAD state machine (pipecat's names and defaults).

    Attributes:
        confidence: Minimum voice confidence (0..1) for a window to count as voiced.
        start_secs: Seconds of consecutive voiced windows before SPEAKING.
        stop_secs: Seconds of consecutive unvoiced windows before QUIET.
        min_volume: Minimum smoothed, normalised loudness (0..1) for a window to count
            as voiced; 0.6 is about -50 LUFS (see :class:`~flowcat.audio.vad.VolumeMeter`).
    """

    confidence: float = 0.7
    start_secs: float = 0.2
    stop_secs: float = 0.2
    min_volume: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ConfigError(f"VADParams.confidence must be in [0, 1], got {self.confidence!r}")
        if not 0.0 <= self.min_volume <= 1.0:
            raise ConfigError(f"VADParams.min_volume must be in [0, 1], got {self.min_volume!r}")
        if self.start_secs < 0 or self.stop_secs < 0:
            raise ConfigError("VADParams.start_secs and stop_secs must be >= 0")
