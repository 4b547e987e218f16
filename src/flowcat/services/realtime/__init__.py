"""Speech-to-speech (realtime) providers, one module each (see ``docs/services.md``,
"Realtime (speech-to-speech)"). The base is :class:`~flowcat.services.RealtimeLLMService`.

Azure OpenAI and xAI Grok voice speak the OpenAI Realtime wire: they are
configurations of :class:`OpenAIRealtimeLLMService` in :mod:`.openai`; so is Inworld
(:mod:`.inworld`: its endpoint, auth and session fields). Gemini Live
(:mod:`.gemini`) has its own wire, as has Ultravox (:mod:`.ultravox`: a call created over
REST, then its ``joinUrl`` socket), and Amazon Nova Sonic (:mod:`.nova_sonic`: Bedrock's
bidirectional stream over HTTP/2, the ``aws`` extra).
"""

from __future__ import annotations

from .gemini import GeminiLiveLLMService as GeminiLiveLLMService
from .gemini import GeminiLiveLLMSettings as GeminiLiveLLMSettings
from .gemini import GeminiLiveSettings as GeminiLiveSettings
from .inworld import InworldRealtimeLLMService as InworldRealtimeLLMService
from .inworld import InworldRealtimeSettings as InworldRealtimeSettings
from .nova_sonic import AWSNovaSonicLLMService as AWSNovaSonicLLMService
from .nova_sonic import NovaSonicSettings as NovaSonicSettings
from .openai import AzureRealtimeLLMService as AzureRealtimeLLMService
from .openai import GrokRealtimeLLMService as GrokRealtimeLLMService
from .openai import OpenAIRealtimeLLMService as OpenAIRealtimeLLMService
from .openai import OpenAIRealtimeSettings as OpenAIRealtimeSettings
from .ultravox import UltravoxRealtimeLLMService as UltravoxRealtimeLLMService
from .ultravox import UltravoxRealtimeSettings as UltravoxRealtimeSettings

__all__ = [
    "AWSNovaSonicLLMService",
    "AzureRealtimeLLMService",
    "GeminiLiveLLMService",
    "GeminiLiveLLMSettings",
    "GeminiLiveSettings",
    "GrokRealtimeLLMService",
    "InworldRealtimeLLMService",
    "InworldRealtimeSettings",
    "NovaSonicSettings",
    "OpenAIRealtimeLLMService",
    "OpenAIRealtimeSettings",
    "UltravoxRealtimeLLMService",
    "UltravoxRealtimeSettings",
]
