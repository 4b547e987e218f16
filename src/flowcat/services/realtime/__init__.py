"""Speech-to-speech (realtime) providers, one module each (see ``docs/services.md``,
"Realtime (speech-to-speech)"). The base is :class:`~flowcat.services.RealtimeLLMService`.

Azure OpenAI and xAI Grok voice speak the OpenAI Realtime wire: they are
configurations of :class:`OpenAIRealtimeLLMService` in :mod:`.openai`.
"""

from __future__ import annotations

from .openai import AzureRealtimeLLMService as AzureRealtimeLLMService
from .openai import GrokRealtimeLLMService as GrokRealtimeLLMService
from .openai import OpenAIRealtimeLLMService as OpenAIRealtimeLLMService
from .openai import OpenAIRealtimeSettings as OpenAIRealtimeSettings

__all__ = [
    "AzureRealtimeLLMService",
    "GrokRealtimeLLMService",
    "OpenAIRealtimeLLMService",
    "OpenAIRealtimeSettings",
]
