"""The provider-neutral LLM context and the per-vendor request adapters.

* :class:`LLMContext` (OpenAI-style messages, tools, tool choice; extends
  :class:`flowcat.frames.LLMContext`), :class:`LLMSpecificMessage`,
  :class:`FunctionSchema` (the services layer's one schema class), :class:`ToolsSchema`,
  :class:`AdapterType`;
* adapters turning a context into a vendor's request fields:
  :class:`OpenAILLMAdapter`, :class:`OpenAIResponsesLLMAdapter`, :class:`AnthropicLLMAdapter`,
  :class:`GeminiLLMAdapter`,
  :class:`AWSBedrockLLMAdapter`
  (base :class:`BaseLLMAdapter`).

pipecat keeps these in ``pipecat.adapters`` (and ``LLMContext`` in
``pipecat.processors.aggregators.llm_context``); flowcat keeps them in the services
layer so that providers (``flowcat.services.llm``) use them directly. Everything here is
also exported by :mod:`flowcat.agent`. Layer: :mod:`flowcat.services`. See ``docs/services.md``.
"""

from __future__ import annotations

from ._adapter import BaseLLMAdapter as BaseLLMAdapter
from ._adapter import OpenAILLMAdapter as OpenAILLMAdapter
from ._anthropic_adapter import AnthropicLLMAdapter as AnthropicLLMAdapter
from ._bedrock_adapter import AWSBedrockLLMAdapter as AWSBedrockLLMAdapter
from ._context import LLMContext as LLMContext
from ._context import LLMSpecificMessage as LLMSpecificMessage
from ._context import standard_message_text as standard_message_text
from ._gemini_adapter import GeminiLLMAdapter as GeminiLLMAdapter
from ._responses_adapter import OpenAIResponsesLLMAdapter as OpenAIResponsesLLMAdapter
from ._schemas import NOT_GIVEN as NOT_GIVEN
from ._schemas import AdapterType as AdapterType
from ._schemas import FunctionSchema as FunctionSchema
from ._schemas import ToolsSchema as ToolsSchema
from ._schemas import normalize_tools as normalize_tools

__all__ = [
    "AWSBedrockLLMAdapter",
    "AdapterType",
    "AnthropicLLMAdapter",
    "BaseLLMAdapter",
    "FunctionSchema",
    "GeminiLLMAdapter",
    "LLMContext",
    "LLMSpecificMessage",
    "NOT_GIVEN",
    "OpenAILLMAdapter",
    "OpenAIResponsesLLMAdapter",
    "ToolsSchema",
    "normalize_tools",
    "standard_message_text",
]
