"""The agent layer: the context aggregator pair, plus the LLM context and adapters re-exported.

* :class:`LLMContext` (OpenAI-style messages, tools, tool choice; extends
  :class:`flowcat.frames.LLMContext`), :class:`LLMSpecificMessage`,
  :class:`FunctionSchema`, :class:`ToolsSchema`;
* adapters turning a context into a vendor's request fields:
  :class:`OpenAILLMAdapter`, :class:`OpenAIResponsesLLMAdapter`, :class:`AnthropicLLMAdapter`,
  :class:`GeminiLLMAdapter`,
  :class:`AWSBedrockLLMAdapter`
  (base :class:`BaseLLMAdapter`);

  these two groups live in :mod:`flowcat.services.adapters` (so providers can use them)
  and are re-exported here unchanged;
* the AgentBrain seam (:class:`AgentBrain`, its events :class:`CallStarted`,
  :class:`UserTurn` ... and actions :class:`Say`, :class:`EndCall` ...);
* :class:`BrainProcessor`, which runs a brain in a pipeline in place of the LLM, and two
  brains: :class:`LLMBrain` (a system prompt and tools on an LLM service) and
  :class:`GraphBrain` (a graph agent, :mod:`flowcat.agent.graph`: nodes and edges chosen by
  an LLM or by the on-device :class:`IntentMatcher`);
* :class:`LLMContextAggregatorPair` with :class:`LLMUserAggregator` and
  :class:`LLMAssistantAggregator` (pipecat's names, params and events), and its
  realtime-service mode (:class:`RealtimeServiceModeConfig`).

Layer: above :mod:`flowcat.services`, below :mod:`flowcat.config`. See ``docs/agent.md``.
"""

from __future__ import annotations

from ..services.adapters import NOT_GIVEN as NOT_GIVEN
from ..services.adapters import AdapterType as AdapterType
from ..services.adapters import AnthropicLLMAdapter as AnthropicLLMAdapter
from ..services.adapters import AWSBedrockLLMAdapter as AWSBedrockLLMAdapter
from ..services.adapters import BaseLLMAdapter as BaseLLMAdapter
from ..services.adapters import FunctionSchema as FunctionSchema
from ..services.adapters import GeminiLLMAdapter as GeminiLLMAdapter
from ..services.adapters import LLMContext as LLMContext
from ..services.adapters import LLMSpecificMessage as LLMSpecificMessage
from ..services.adapters import OpenAILLMAdapter as OpenAILLMAdapter
from ..services.adapters import OpenAIResponsesLLMAdapter as OpenAIResponsesLLMAdapter
from ..services.adapters import ToolsSchema as ToolsSchema
from ..services.adapters import normalize_tools as normalize_tools
from ..services.adapters import standard_message_text as standard_message_text
from ._aggregator import AssistantThoughtMessage as AssistantThoughtMessage
from ._aggregator import AssistantTurnStoppedMessage as AssistantTurnStoppedMessage
from ._aggregator import UserTurnMessageAddedMessage as UserTurnMessageAddedMessage
from ._aggregator import UserTurnStoppedMessage as UserTurnStoppedMessage
from ._assistant import LLMAssistantAggregator as LLMAssistantAggregator
from ._assistant import LLMAssistantAggregatorParams as LLMAssistantAggregatorParams
from ._brain import AgentBrain as AgentBrain
from ._brain import BotInterrupted as BotInterrupted
from ._brain import BrainAction as BrainAction
from ._brain import BrainCall as BrainCall
from ._brain import BrainEvent as BrainEvent
from ._brain import CallEnded as CallEnded
from ._brain import CallStarted as CallStarted
from ._brain import CallTool as CallTool
from ._brain import Dtmf as Dtmf
from ._brain import EndCall as EndCall
from ._brain import Say as Say
from ._brain import SetVariable as SetVariable
from ._brain import Silence as Silence
from ._brain import ToolResult as ToolResult
from ._brain import Transfer as Transfer
from ._brain import Transition as Transition
from ._brain import UserTurn as UserTurn
from ._brain_processor import BrainProcessor as BrainProcessor
from ._brain_processor import ToolHandler as ToolHandler
from ._context_relay import ContextRelay as ContextRelay
from ._context_relay import LLMSummarizer as LLMSummarizer
from ._context_relay import ReseedReport as ReseedReport
from ._context_relay import Summarizer as Summarizer
from ._context_relay import VerbatimSummarizer as VerbatimSummarizer
from ._empty_turn import (
    DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT as DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT,
)
from ._empty_turn import EmptyUserTurnConfig as EmptyUserTurnConfig
from ._llm_brain import LLMBrain as LLMBrain
from ._pair import LLMContextAggregatorPair as LLMContextAggregatorPair
from ._realtime_mode import RealtimeServiceModeConfig as RealtimeServiceModeConfig
from ._remote_brain import RemoteBrain as RemoteBrain
from ._summary import ContextSummarizer as ContextSummarizer
from ._summary import LLMAutoContextSummarizationConfig as LLMAutoContextSummarizationConfig
from ._summary import LLMContextSummaryConfig as LLMContextSummaryConfig
from ._summary import SummaryAppliedEvent as SummaryAppliedEvent
from ._summary import estimate_context_tokens as estimate_context_tokens
from ._summary import messages_to_summarize as messages_to_summarize
from ._summary import summarize_with as summarize_with
from ._user import LLMUserAggregator as LLMUserAggregator
from ._user import LLMUserAggregatorParams as LLMUserAggregatorParams
from ._ws_brain import WebSocketBrain as WebSocketBrain
from .graph import AgentGraph as AgentGraph
from .graph import GraphBrain as GraphBrain
from .graph import IntentMatcher as IntentMatcher
from .graph import load_graph as load_graph

__all__ = [
    "AWSBedrockLLMAdapter",
    "AdapterType",
    "AgentBrain",
    "AgentGraph",
    "AnthropicLLMAdapter",
    "AssistantThoughtMessage",
    "AssistantTurnStoppedMessage",
    "BaseLLMAdapter",
    "BotInterrupted",
    "BrainAction",
    "BrainCall",
    "BrainEvent",
    "BrainProcessor",
    "CallEnded",
    "CallStarted",
    "CallTool",
    "ContextRelay",
    "ContextSummarizer",
    "DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT",
    "Dtmf",
    "EmptyUserTurnConfig",
    "EndCall",
    "FunctionSchema",
    "GeminiLLMAdapter",
    "GraphBrain",
    "IntentMatcher",
    "LLMAssistantAggregator",
    "LLMAssistantAggregatorParams",
    "LLMAutoContextSummarizationConfig",
    "LLMBrain",
    "LLMContext",
    "LLMContextAggregatorPair",
    "LLMContextSummaryConfig",
    "LLMSpecificMessage",
    "LLMSummarizer",
    "LLMUserAggregator",
    "LLMUserAggregatorParams",
    "NOT_GIVEN",
    "OpenAILLMAdapter",
    "OpenAIResponsesLLMAdapter",
    "RealtimeServiceModeConfig",
    "RemoteBrain",
    "ReseedReport",
    "Say",
    "SetVariable",
    "Silence",
    "Summarizer",
    "SummaryAppliedEvent",
    "ToolHandler",
    "ToolResult",
    "ToolsSchema",
    "Transfer",
    "Transition",
    "UserTurn",
    "UserTurnMessageAddedMessage",
    "UserTurnStoppedMessage",
    "VerbatimSummarizer",
    "WebSocketBrain",
    "estimate_context_tokens",
    "load_graph",
    "messages_to_summarize",
    "normalize_tools",
    "standard_message_text",
    "summarize_with",
]
