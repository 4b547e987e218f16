"""The agent layer: LLM context, provider adapters and the context aggregator pair.

* :class:`LLMContext` (OpenAI-style messages, tools, tool choice; extends
  :class:`flowcat.frames.LLMContext`), :class:`LLMSpecificMessage`,
  :class:`FunctionSchema`, :class:`ToolsSchema`;
* adapters turning a context into a vendor's request fields:
  :class:`OpenAILLMAdapter`, :class:`AnthropicLLMAdapter`, :class:`GeminiLLMAdapter`
  (base :class:`BaseLLMAdapter`);
* :class:`LLMContextAggregatorPair` with :class:`LLMUserAggregator` and
  :class:`LLMAssistantAggregator` (pipecat's names, params and events).

Layer: above :mod:`flowcat.services`, below :mod:`flowcat.config`. See ``docs/agent.md``.
"""

from __future__ import annotations

from ._adapter import BaseLLMAdapter as BaseLLMAdapter
from ._adapter import OpenAILLMAdapter as OpenAILLMAdapter
from ._aggregator import AssistantThoughtMessage as AssistantThoughtMessage
from ._aggregator import AssistantTurnStoppedMessage as AssistantTurnStoppedMessage
from ._aggregator import UserTurnMessageAddedMessage as UserTurnMessageAddedMessage
from ._aggregator import UserTurnStoppedMessage as UserTurnStoppedMessage
from ._anthropic_adapter import AnthropicLLMAdapter as AnthropicLLMAdapter
from ._assistant import LLMAssistantAggregator as LLMAssistantAggregator
from ._assistant import LLMAssistantAggregatorParams as LLMAssistantAggregatorParams
from ._context import LLMContext as LLMContext
from ._context import LLMSpecificMessage as LLMSpecificMessage
from ._context import standard_message_text as standard_message_text
from ._empty_turn import (
    DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT as DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT,
)
from ._empty_turn import EmptyUserTurnConfig as EmptyUserTurnConfig
from ._gemini_adapter import GeminiLLMAdapter as GeminiLLMAdapter
from ._pair import LLMContextAggregatorPair as LLMContextAggregatorPair
from ._schemas import NOT_GIVEN as NOT_GIVEN
from ._schemas import AdapterType as AdapterType
from ._schemas import FunctionSchema as FunctionSchema
from ._schemas import ToolsSchema as ToolsSchema
from ._schemas import normalize_tools as normalize_tools
from ._user import LLMUserAggregator as LLMUserAggregator
from ._user import LLMUserAggregatorParams as LLMUserAggregatorParams

__all__ = [
    "AdapterType",
    "AnthropicLLMAdapter",
    "AssistantThoughtMessage",
    "AssistantTurnStoppedMessage",
    "BaseLLMAdapter",
    "DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT",
    "EmptyUserTurnConfig",
    "FunctionSchema",
    "GeminiLLMAdapter",
    "LLMAssistantAggregator",
    "LLMAssistantAggregatorParams",
    "LLMContext",
    "LLMContextAggregatorPair",
    "LLMSpecificMessage",
    "LLMUserAggregator",
    "LLMUserAggregatorParams",
    "NOT_GIVEN",
    "OpenAILLMAdapter",
    "ToolsSchema",
    "UserTurnMessageAddedMessage",
    "UserTurnStoppedMessage",
    "normalize_tools",
    "standard_message_text",
]
