"""The agent layer: the context aggregator pair, plus the LLM context and adapters re-exported.

* :class:`LLMContext` (OpenAI-style messages, tools, tool choice; extends
  :class:`flowcat.frames.LLMContext`), :class:`LLMSpecificMessage`,
  :class:`FunctionSchema`, :class:`ToolsSchema`;
* adapters turning a context into a vendor's request fields:
  :class:`OpenAILLMAdapter`, :class:`AnthropicLLMAdapter`, :class:`GeminiLLMAdapter`
  (base :class:`BaseLLMAdapter`);

  these two groups live in :mod:`flowcat.services.adapters` (so providers can use them)
  and are re-exported here unchanged;
* :class:`LLMContextAggregatorPair` with :class:`LLMUserAggregator` and
  :class:`LLMAssistantAggregator` (pipecat's names, params and events).

Layer: above :mod:`flowcat.services`, below :mod:`flowcat.config`. See ``docs/agent.md``.
"""

from __future__ import annotations

from ..services.adapters import NOT_GIVEN as NOT_GIVEN
from ..services.adapters import AdapterType as AdapterType
from ..services.adapters import AnthropicLLMAdapter as AnthropicLLMAdapter
from ..services.adapters import BaseLLMAdapter as BaseLLMAdapter
from ..services.adapters import FunctionSchema as FunctionSchema
from ..services.adapters import GeminiLLMAdapter as GeminiLLMAdapter
from ..services.adapters import LLMContext as LLMContext
from ..services.adapters import LLMSpecificMessage as LLMSpecificMessage
from ..services.adapters import OpenAILLMAdapter as OpenAILLMAdapter
from ..services.adapters import ToolsSchema as ToolsSchema
from ..services.adapters import normalize_tools as normalize_tools
from ..services.adapters import standard_message_text as standard_message_text
from ._aggregator import AssistantThoughtMessage as AssistantThoughtMessage
from ._aggregator import AssistantTurnStoppedMessage as AssistantTurnStoppedMessage
from ._aggregator import UserTurnMessageAddedMessage as UserTurnMessageAddedMessage
from ._aggregator import UserTurnStoppedMessage as UserTurnStoppedMessage
from ._assistant import LLMAssistantAggregator as LLMAssistantAggregator
from ._assistant import LLMAssistantAggregatorParams as LLMAssistantAggregatorParams
from ._empty_turn import (
    DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT as DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT,
)
from ._empty_turn import EmptyUserTurnConfig as EmptyUserTurnConfig
from ._pair import LLMContextAggregatorPair as LLMContextAggregatorPair
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
