"""LLM providers, one module each (see ``docs/services.md``, "Adding a provider")."""

from __future__ import annotations

from .anthropic import AnthropicLLMService as AnthropicLLMService
from .anthropic import AnthropicLLMSettings as AnthropicLLMSettings
from .google import GeminiLLMService as GeminiLLMService
from .google import GoogleLLMService as GoogleLLMService
from .google import GoogleLLMSettings as GoogleLLMSettings
from .openai import OpenAILLMService as OpenAILLMService
from .openai import OpenAILLMSettings as OpenAILLMSettings

__all__ = [
    "AnthropicLLMService",
    "AnthropicLLMSettings",
    "GeminiLLMService",
    "GoogleLLMService",
    "GoogleLLMSettings",
    "OpenAILLMService",
    "OpenAILLMSettings",
]
