"""Audio toolkit: G.711 codecs, resampling, PCM helpers, recorder, mixers, filters.

All audio is signed 16-bit little-endian PCM (``bytes``), interleaved when
multi-channel. See ``docs/audio.md`` for costs per 20 ms frame.
"""

from __future__ import annotations

from ._chunker import AudioChunker
from ._filter import AudioFilterProcessor, BaseAudioFilter, RNNoiseFilter
from ._g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from ._low_latency import LowLatencyResampler
from ._mixer import BaseAudioMixer, LoopingFileMixer
from ._pcm import apply_gain, float_to_pcm16, mix, pcm16_to_float, rms_dbfs, silence, tone
from ._recorder import AudioRecorder, recording_path
from ._resampler import StreamResampler
from ._wav import WavWriter, read_wav

__all__ = [
    "AudioChunker",
    "AudioFilterProcessor",
    "AudioRecorder",
    "BaseAudioFilter",
    "BaseAudioMixer",
    "LoopingFileMixer",
    "LowLatencyResampler",
    "RNNoiseFilter",
    "StreamResampler",
    "WavWriter",
    "alaw_to_pcm16",
    "apply_gain",
    "float_to_pcm16",
    "mix",
    "pcm16_to_alaw",
    "pcm16_to_float",
    "pcm16_to_ulaw",
    "read_wav",
    "recording_path",
    "rms_dbfs",
    "silence",
    "tone",
    "ulaw_to_pcm16",
]
