"""Providers a pipeline talks to: the STT, LLM and TTS bases, and what providers share.

Layer: above :mod:`flowcat.transports` (services may use frames, the runtime, audio,
turns, serializers and transports), below :mod:`flowcat.agent`.

The base classes (``STTService``, ``LLMService``, ``TTSService`` and what they share:
connection lifecycle, retries, metrics, translating vendor exceptions into
:class:`flowcat.errors.ServiceError`) live in this package; each provider is one module
under ``services/<kind>/`` (``services/stt/<provider>.py``, ``services/llm/…``,
``services/tts/…``), importing its vendor SDK lazily (a missing one raises
:class:`flowcat.errors.MissingExtraError`). The provider-neutral LLM context, tool
schemas and per-vendor request adapters are in :mod:`flowcat.services.adapters`; tools of
MCP servers as LLM functions in :mod:`flowcat.services.mcp` (extra ``mcp``). See
``docs/services.md`` for the seams and how to add a provider.
"""

from __future__ import annotations

from ._ai_service import AIService as AIService
from ._ai_service import ServiceCapabilities as ServiceCapabilities
from ._ai_service import ServiceSettings as ServiceSettings
from ._audio_contexts import AudioContexts as AudioContexts
from ._backoff import Backoff as Backoff
from ._backoff import Deadline as Deadline
from ._backoff import retry_call as retry_call
from ._fallback import FallbackPolicy as FallbackPolicy
from ._fallback_llm import FallbackLLMService as FallbackLLMService
from ._fallback_media import FallbackSTTService as FallbackSTTService
from ._fallback_media import FallbackTTSService as FallbackTTSService
from ._function_schema import FunctionSchema as FunctionSchema
from ._function_schema import function_schema as function_schema
from ._functions import FunctionCallParams as FunctionCallParams
from ._functions import FunctionCallRegistryItem as FunctionCallRegistryItem
from ._http import SSEEvent as SSEEvent
from ._http import close_http_sessions as close_http_sessions
from ._http import connection_error as connection_error
from ._http import handshake_error as handshake_error
from ._http import http_session as http_session
from ._http import iter_sse as iter_sse
from ._http import raise_for_status as raise_for_status
from ._llm import LLMChunk as LLMChunk
from ._llm import LLMService as LLMService
from ._llm import LLMTextDelta as LLMTextDelta
from ._llm import LLMToolCallDelta as LLMToolCallDelta
from ._realtime import RealtimeLLMService as RealtimeLLMService
from ._realtime import RealtimeLLMSettings as RealtimeLLMSettings
from ._realtime_state import ConversationItem as ConversationItem
from ._registry import ProviderInfo as ProviderInfo
from ._registry import extra_missing as extra_missing
from ._registry import providers as providers
from ._registry import providers_markdown as providers_markdown
from ._secrets import Secret as Secret
from ._secrets import redact as redact
from ._secrets import resolve_api_key as resolve_api_key
from ._ssrf import OutboundGuard as OutboundGuard
from ._ssrf import address_refusal as address_refusal
from ._ssrf import outbound_guard as outbound_guard
from ._stt import SegmentedSTTService as SegmentedSTTService
from ._stt import STTService as STTService
from ._stt import STTSettings as STTSettings
from ._stt import pcm_to_wav as pcm_to_wav
from ._summary import DEFAULT_SUMMARIZATION_PROMPT as DEFAULT_SUMMARIZATION_PROMPT
from ._summary import DEFAULT_SUMMARIZATION_TIMEOUT as DEFAULT_SUMMARIZATION_TIMEOUT
from ._summary import generate_summary as generate_summary
from ._summary import summary_transcript as summary_transcript
from ._text_aggregator import BaseTextAggregator as BaseTextAggregator
from ._text_aggregator import SentenceAggregator as SentenceAggregator
from ._text_aggregator import SimpleTextAggregator as SimpleTextAggregator
from ._tts import TTSAudio as TTSAudio
from ._tts import TTSChunk as TTSChunk
from ._tts import TTSService as TTSService
from ._tts import TTSSettings as TTSSettings
from ._tts import TTSWords as TTSWords

__all__ = [
    "AIService",
    "AudioContexts",
    "Backoff",
    "BaseTextAggregator",
    "ConversationItem",
    "DEFAULT_SUMMARIZATION_PROMPT",
    "DEFAULT_SUMMARIZATION_TIMEOUT",
    "Deadline",
    "FallbackLLMService",
    "FallbackPolicy",
    "FallbackSTTService",
    "FallbackTTSService",
    "FunctionCallParams",
    "FunctionCallRegistryItem",
    "FunctionSchema",
    "LLMChunk",
    "LLMService",
    "LLMTextDelta",
    "LLMToolCallDelta",
    "OutboundGuard",
    "ProviderInfo",
    "RealtimeLLMService",
    "RealtimeLLMSettings",
    "SSEEvent",
    "STTService",
    "STTSettings",
    "Secret",
    "SegmentedSTTService",
    "SentenceAggregator",
    "ServiceCapabilities",
    "ServiceSettings",
    "SimpleTextAggregator",
    "TTSAudio",
    "TTSChunk",
    "TTSService",
    "TTSSettings",
    "TTSWords",
    "address_refusal",
    "close_http_sessions",
    "connection_error",
    "extra_missing",
    "function_schema",
    "generate_summary",
    "handshake_error",
    "http_session",
    "iter_sse",
    "outbound_guard",
    "pcm_to_wav",
    "providers",
    "providers_markdown",
    "raise_for_status",
    "redact",
    "resolve_api_key",
    "retry_call",
    "summary_transcript",
]
