"""What a pipeline task is told and what it counts: run parameters, statistics,
and the frames that count as activity for its idle timeout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..frames import (
    BotSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
    TranscriptionFrame,
    UserSpeakingFrame,
)

__all__ = ["DEFAULT_IDLE_FRAMES", "PipelineParams", "TaskStats"]

DEFAULT_IDLE_FRAMES: tuple[type[Frame], ...] = (
    BotSpeakingFrame,
    UserSpeakingFrame,
    TranscriptionFrame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
)


@dataclass(kw_only=True)
class PipelineParams:
    """Parameters of a pipeline run, sent to every processor in the StartFrame."""

    audio_in_sample_rate: int = 16000
    """Sample rate (Hz) of input audio inside the pipeline. Default 16000."""
    audio_out_sample_rate: int = 24000
    """Sample rate (Hz) of output audio inside the pipeline. Default 24000."""
    allow_interruptions: bool = True
    """Whether user speech may interrupt the bot. Default True."""
    enable_metrics: bool = False
    """Report TTFB and processing metrics. Default False."""
    enable_usage_metrics: bool = False
    """Report LLM token and TTS character usage. Default False."""
    report_only_initial_ttfb: bool = False
    """Report only the first TTFB of each processor. Default False."""
    enable_heartbeats: bool = False
    """Send HeartbeatFrames and warn when they stop arriving. Default False."""
    heartbeats_period_secs: float = 1.0
    """Heartbeat period (s). Default 1.0."""
    heartbeats_monitor_secs: float = 10.0
    """Warn when no heartbeat reached the end for this long (s). Default 10.0."""
    start_metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata put in the StartFrame."""


@dataclass
class TaskStats:
    """Per-task statistics (see also the scheduler's counters)."""

    frames_queued: int = 0
    heartbeats_received: int = 0
    last_heartbeat_latency: float | None = None
    errors: int = 0
    stuck_processors: list[str] = field(default_factory=list)
    finished_by: str | None = None
