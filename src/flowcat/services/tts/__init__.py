"""TTS providers, one module each (see ``docs/services.md``, "Adding a provider")."""

from __future__ import annotations

from .cartesia import CartesiaTTSService as CartesiaTTSService
from .cartesia import CartesiaTTSSettings as CartesiaTTSSettings
from .deepgram import DeepgramTTSService as DeepgramTTSService
from .deepgram import DeepgramTTSSettings as DeepgramTTSSettings
from .elevenlabs import ElevenLabsTTSService as ElevenLabsTTSService
from .elevenlabs import ElevenLabsTTSSettings as ElevenLabsTTSSettings
from .espeak import EspeakTTSService as EspeakTTSService
from .openai import OpenAITTSService as OpenAITTSService
from .openai import OpenAITTSSettings as OpenAITTSSettings
from .piper import PiperTTSService as PiperTTSService
from .rime import RimeTTSService as RimeTTSService
from .rime import RimeTTSSettings as RimeTTSSettings

__all__ = [
    "CartesiaTTSService",
    "CartesiaTTSSettings",
    "DeepgramTTSService",
    "DeepgramTTSSettings",
    "ElevenLabsTTSService",
    "ElevenLabsTTSSettings",
    "EspeakTTSService",
    "OpenAITTSService",
    "OpenAITTSSettings",
    "PiperTTSService",
    "RimeTTSService",
    "RimeTTSSettings",
]
