"""TransportParams: what a transport sends and receives, and how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TransportParams"]


@dataclass(kw_only=True)
class TransportParams:
    """Audio settings of a transport (both directions).

    Sample rates left at None follow the pipeline's :class:`~flowcat.frames.StartFrame`.
    """

    audio_in_enabled: bool = True
    """Receive user audio. Default True."""
    audio_in_sample_rate: int | None = None
    """Rate (Hz) of the InputAudioRawFrames pushed into the pipeline; None: the StartFrame's."""
    audio_in_channels: int = 1
    """Input channels. Default 1."""
    audio_in_chunk_ms: int | None = None
    """Re-chunk input audio to this many ms per frame; None pushes what arrives. Default None."""
    audio_in_filter: Any = None
    """Optional input filter: ``filter(bytes) -> bytes`` (sync or async), optional
    ``start(sample_rate)``, ``stop()``, ``process_frame(FilterControlFrame)``."""
    audio_in_warn_secs: float | None = 5.0
    """Warn once when no input audio arrived for this long (s); None disables."""

    audio_out_enabled: bool = True
    """Send bot audio. Default True."""
    audio_out_sample_rate: int | None = None
    """Rate (Hz) of audio on the wire; bot audio is resampled to it. None: the StartFrame's."""
    audio_out_channels: int = 1
    """Output channels. Default 1."""
    audio_out_chunk_ms: int = 20
    """Bot audio is sent in chunks of this many ms, one per clock tick. Default 20."""
    audio_out_send_ahead_chunks: int = 2
    """How many chunks may be on the wire ahead of real time (the peer's jitter
    buffer). Default 2."""
    audio_out_catch_up_chunks: int = 4
    """After bot audio fell behind real time mid-speech (the peer ran dry, e.g. a
    real-time stream stalled and then arrived in a burst), the send-ahead window may
    grow by up to this many chunks, so the late audio goes out at once instead of
    lagging one chunk for the rest of the turn. The listener hears the gap either
    way; this only decides whether the delay then sits in our queue or in the peer's
    buffer (which a clear empties). The growth ends when the bot stops speaking or
    is interrupted. On a continuous output it is also the hold: a steady real-time
    stream (an echo) that runs late gets no silence in its gap for this long, so its late
    audio goes out at once instead of queueing behind a silence chunk. 0 disables.
    Default 4 (80 ms at 20 ms chunks)."""
    audio_out_end_silence_secs: float = 0.0
    """Silence sent after the last bot audio before an EndFrame closes the call. Default 0."""
    audio_out_mixer: Any = None
    """Optional mixer: ``mix(bytes) -> bytes`` applied to every outgoing chunk (and to
    silence while the bot is quiet); optional ``start(sample_rate)``, ``stop()``,
    ``process_frame(MixerControlFrame)``."""
    audio_out_continuous: bool = False
    """Send silence whenever there is no bot audio (protocols that need a continuous
    stream). Default False."""
    audio_out_pad_last_chunk: bool = True
    """Pad a final partial chunk (the end of the bot's speech so far) with silence to
    the full chunk size, as pipecat does. Default True."""
    bot_stopped_speaking_secs: float = 0.35
    """BotStoppedSpeakingFrame after this long without bot audio sent. Default 0.35."""
    bot_speaking_period_secs: float = 0.2
    """BotSpeakingFrame at most this often while bot audio is sent. Default 0.2."""
