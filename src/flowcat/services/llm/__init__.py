"""LLM providers, one module each (see ``docs/services.md``, "Adding a provider")."""

from __future__ import annotations

from .openai import OpenAILLMService as OpenAILLMService
from .openai import OpenAILLMSettings as OpenAILLMSettings

__all__ = ["OpenAILLMService", "OpenAILLMSettings"]
