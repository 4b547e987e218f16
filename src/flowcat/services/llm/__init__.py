"""LLM providers, one module each (see ``docs/services.md``, "Adding a provider").

The OpenAI-compatible hosts (Groq, Azure OpenAI, Ollama, ...) are configurations of
:class:`OpenAILLMService` in :mod:`.openai_compatible`; the Responses API is
:class:`OpenAIResponsesLLMService`.
"""

from __future__ import annotations

from .anthropic import AnthropicLLMService as AnthropicLLMService
from .anthropic import AnthropicLLMSettings as AnthropicLLMSettings
from .aws_bedrock import AWSBedrockLLMService as AWSBedrockLLMService
from .aws_bedrock import AWSBedrockLLMSettings as AWSBedrockLLMSettings
from .google import GeminiLLMService as GeminiLLMService
from .google import GoogleLLMService as GoogleLLMService
from .google import GoogleLLMSettings as GoogleLLMSettings
from .openai import OpenAILLMService as OpenAILLMService
from .openai import OpenAILLMSettings as OpenAILLMSettings
from .openai_compatible import AzureOpenAILLMService as AzureOpenAILLMService
from .openai_compatible import CerebrasLLMService as CerebrasLLMService
from .openai_compatible import CompatibleHost as CompatibleHost
from .openai_compatible import DeepSeekLLMService as DeepSeekLLMService
from .openai_compatible import FireworksLLMService as FireworksLLMService
from .openai_compatible import GroqLLMService as GroqLLMService
from .openai_compatible import LlamaCppLLMService as LlamaCppLLMService
from .openai_compatible import MistralLLMService as MistralLLMService
from .openai_compatible import NebiusLLMService as NebiusLLMService
from .openai_compatible import NvidiaLLMService as NvidiaLLMService
from .openai_compatible import OllamaLLMService as OllamaLLMService
from .openai_compatible import OpenAICompatibleLLMService as OpenAICompatibleLLMService
from .openai_compatible import OpenRouterLLMService as OpenRouterLLMService
from .openai_compatible import PerplexityLLMService as PerplexityLLMService
from .openai_compatible import QwenLLMService as QwenLLMService
from .openai_compatible import SambaNovaLLMService as SambaNovaLLMService
from .openai_compatible import TogetherLLMService as TogetherLLMService
from .openai_compatible import VLLMLLMService as VLLMLLMService
from .openai_compatible import XAILLMService as XAILLMService
from .openai_responses import OpenAIResponsesLLMService as OpenAIResponsesLLMService
from .openai_responses import OpenAIResponsesLLMSettings as OpenAIResponsesLLMSettings

__all__ = [
    "AWSBedrockLLMService",
    "AWSBedrockLLMSettings",
    "AnthropicLLMService",
    "AnthropicLLMSettings",
    "AzureOpenAILLMService",
    "CerebrasLLMService",
    "CompatibleHost",
    "DeepSeekLLMService",
    "FireworksLLMService",
    "GeminiLLMService",
    "GoogleLLMService",
    "GoogleLLMSettings",
    "GroqLLMService",
    "LlamaCppLLMService",
    "MistralLLMService",
    "NebiusLLMService",
    "NvidiaLLMService",
    "OllamaLLMService",
    "OpenAICompatibleLLMService",
    "OpenAILLMService",
    "OpenAILLMSettings",
    "OpenAIResponsesLLMService",
    "OpenAIResponsesLLMSettings",
    "OpenRouterLLMService",
    "PerplexityLLMService",
    "QwenLLMService",
    "SambaNovaLLMService",
    "TogetherLLMService",
    "VLLMLLMService",
    "XAILLMService",
]
