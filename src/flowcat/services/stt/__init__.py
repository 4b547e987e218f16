"""STT providers, one module each (see ``docs/services.md``, "Adding a provider")."""

from __future__ import annotations

from .assemblyai import AssemblyAISTTService as AssemblyAISTTService
from .assemblyai import AssemblyAISTTSettings as AssemblyAISTTSettings
from .deepgram import DeepgramSTTService as DeepgramSTTService
from .deepgram import DeepgramSTTSettings as DeepgramSTTSettings
from .local_whisper import WhisperSTTService as WhisperSTTService
from .local_whisper import WhisperSTTSettings as WhisperSTTSettings
from .openai import GroqSTTService as GroqSTTService
from .openai import OpenAISTTService as OpenAISTTService
from .openai import OpenAISTTSettings as OpenAISTTSettings
from .pocketsphinx import PocketsphinxSTTService as PocketsphinxSTTService
from .speechmatics import SpeechmaticsSTTService as SpeechmaticsSTTService
from .speechmatics import SpeechmaticsSTTSettings as SpeechmaticsSTTSettings

__all__ = [
    "AssemblyAISTTService",
    "AssemblyAISTTSettings",
    "DeepgramSTTService",
    "DeepgramSTTSettings",
    "GroqSTTService",
    "OpenAISTTService",
    "OpenAISTTSettings",
    "PocketsphinxSTTService",
    "SpeechmaticsSTTService",
    "SpeechmaticsSTTSettings",
    "WhisperSTTService",
    "WhisperSTTSettings",
]
