"""Context summarization for the assistant half: when the context grows past a bound, the older
messages are folded into one summary message by an LLM.

:class:`ContextSummarizer` belongs to an :class:`~flowcat.agent.LLMAssistantAggregator`:

* **When.** With auto-summarization on, at each ``LLMFullResponseStartFrame`` (a response
  begins, so the user's latest words are in) it estimates the context — about 4 characters a
  token plus a little per message — and asks for a summary when the estimate reaches
  ``max_context_tokens`` or the messages since the last summary reach
  ``max_unsummarized_messages``. An ``LLMSummarizeContextFrame`` asks at once (auto or not).
  One summary at a time.
* **What.** Everything between the leading system message (kept) and the last
  ``min_messages_after_summary`` messages (kept) — cut short before the first tool call whose
  result is not in that range or is still running, so no tool call is folded away from its
  result or its result left without its call.
* **Who.** The pipeline's LLM service: an ``LLMContextSummaryRequestFrame`` goes upstream and
  the service answers with an ``LLMContextSummaryResultFrame``; or a dedicated service (the
  config's ``llm``), called directly. Either way the conversation goes on meanwhile.
* **Applying.** The context becomes the leading system message, a ``user`` message holding the
  summary (``summary_message_template``), then the messages after the summarized ones. A result
  is dropped when it is not the one awaited, carries an error, or the summarized messages are no
  longer where they were (the history was rewritten meanwhile). ``on_summary_applied`` reports it.

An interruption does not cancel a summary in flight (its result is uninterruptible), but it
allows a new request, since the request frame itself may have been dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..frames import LLMContext, LLMContextSummaryRequestFrame, LLMContextSummaryResultFrame
from ..services import DEFAULT_SUMMARIZATION_PROMPT, DEFAULT_SUMMARIZATION_TIMEOUT, generate_summary

if TYPE_CHECKING:
    from ..services import LLMService

__all__ = [
    "ContextSummarizer",
    "LLMAutoContextSummarizationConfig",
    "LLMContextSummaryConfig",
    "SummaryAppliedEvent",
    "estimate_context_tokens",
    "messages_to_summarize",
    "summarize_with",
]

logger = logging.getLogger("flowcat.agent.summary")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 10
IMAGE_TOKENS = 500
_requests = count(1)


@dataclass
class LLMContextSummaryConfig:
    """How a summary is made.

    Attributes:
        target_context_tokens: The length the summary is asked for, in tokens.
        min_messages_after_summary: The most recent messages always kept as they are.
        summarization_prompt: The summarizer's instructions (None: ``DEFAULT_SUMMARIZATION_PROMPT``).
        summary_message_template: The summary message's text; ``{summary}`` is replaced.
        llm: A dedicated LLM service for summaries (not in the pipeline); None: the pipeline's.
        summarization_timeout: Seconds a summary may take before it is given up.

    Raises:
        ConfigError: A non-positive token target, a negative count, or a template without ``{summary}``.
    """

    target_context_tokens: int = 6000
    min_messages_after_summary: int = 4
    summarization_prompt: str | None = None
    summary_message_template: str = "Conversation summary: {summary}"
    llm: LLMService | None = None
    summarization_timeout: float = DEFAULT_SUMMARIZATION_TIMEOUT

    def __post_init__(self) -> None:
        if self.target_context_tokens <= 0:
            raise ConfigError("target_context_tokens must be positive")
        if self.min_messages_after_summary < 0:
            raise ConfigError("min_messages_after_summary must not be negative")
        if "{summary}" not in self.summary_message_template:
            raise ConfigError("summary_message_template must contain {summary}")

    @property
    def summary_prompt(self) -> str:
        """The prompt in force."""
        return self.summarization_prompt or DEFAULT_SUMMARIZATION_PROMPT


@dataclass
class LLMAutoContextSummarizationConfig:
    """When the context is summarized on its own (either bound triggers; None disables one).

    Attributes:
        max_context_tokens: Estimated context tokens that trigger a summary.
        max_unsummarized_messages: Messages since the last summary that trigger one.
        summary_config: How the summary is made (its token target is capped at 80 % of
            ``max_context_tokens``).

    Raises:
        ConfigError: Both bounds None, or one not positive.
    """

    max_context_tokens: int | None = 8000
    max_unsummarized_messages: int | None = 20
    summary_config: LLMContextSummaryConfig = field(default_factory=LLMContextSummaryConfig)

    def __post_init__(self) -> None:
        if self.max_context_tokens is None and self.max_unsummarized_messages is None:
            raise ConfigError("set max_context_tokens or max_unsummarized_messages (or both)")
        if self.max_context_tokens is not None and self.max_context_tokens <= 0:
            raise ConfigError("max_context_tokens must be positive")
        if self.max_unsummarized_messages is not None and self.max_unsummarized_messages < 1:
            raise ConfigError("max_unsummarized_messages must be at least 1")
        cap = self.max_context_tokens
        if cap is not None and self.summary_config.target_context_tokens > cap:
            self.summary_config.target_context_tokens = max(1, cap * 4 // 5)


@dataclass(frozen=True, slots=True)
class SummaryAppliedEvent:
    """``on_summary_applied``: how the context changed."""

    original_message_count: int
    new_message_count: int
    summarized_message_count: int
    preserved_message_count: int


def _tokens(text: Any) -> int:
    return len(text) // CHARS_PER_TOKEN if isinstance(text, str) else 0


def estimate_context_tokens(context: LLMContext) -> int:
    """A rough token count of the context's messages (4 characters a token, plus overhead)."""
    total = 0
    messages: list[Any] = context.messages  # vendor-specific records may be mixed in
    for message in messages:
        if not isinstance(message, dict):  # those are not counted
            continue
        total += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            total += _tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    kind = part.get("type")
                    total += _tokens(part.get("text")) if kind == "text" else IMAGE_TOKENS if kind in (
                        "image_url", "image") else 0
        for tool_call in message.get("tool_calls") or ():
            fn = tool_call.get("function") if isinstance(tool_call, dict) else None
            if isinstance(fn, dict):
                total += _tokens(str(fn.get("name", "")) + str(fn.get("arguments", "")))
        if "tool_call_id" in message:
            total += MESSAGE_OVERHEAD_TOKENS
    return total


def _leading_system(messages: list[Any]) -> bool:
    return bool(messages) and isinstance(messages[0], dict) and messages[0].get("role") == "system"


def messages_to_summarize(context: LLMContext, keep: int, running: Collection[str] = ()) -> tuple[int, int]:
    """The range ``(first, last)`` of messages to fold (inclusive), or ``(0, -1)`` for none.

    Args:
        context: The context.
        keep: The most recent messages kept.
        running: Ids of tool calls still running (their calls are never folded).
    """
    messages: list[Any] = context.messages
    start = 1 if _leading_system(messages) else 0
    end = len(messages) - keep  # exclusive
    if end <= start:
        return 0, -1
    open_calls: dict[str, int] = {}  # tool call id -> index of its call message
    for i in range(start, end):
        message = messages[i]
        if not isinstance(message, dict):
            continue
        for tool_call in message.get("tool_calls") or ():
            if isinstance(tool_call, dict) and tool_call.get("id"):
                open_calls.setdefault(tool_call["id"], i)
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if call_id in open_calls and call_id not in running:
                del open_calls[call_id]
            elif call_id not in open_calls and call_id is not None:
                end = min(end, i)  # a result whose call is not in range (folded before): keep it
    if open_calls:
        end = min(end, min(open_calls.values()))
    return (start, end - 1) if end > start else (0, -1)


class ContextSummarizer:
    """Decides when to summarize, makes the request, and applies the result (see the module doc).

    It holds no link to its aggregator (no callbacks, so no reference cycle): the aggregator sends
    the request it returns (upstream, or to the dedicated ``config.llm`` with :func:`summarize_with`)
    and reports the event :meth:`result` returns.

    Args:
        context: The context summarized.
        config: The bounds and how a summary is made (None: the defaults).
        auto_trigger: Summarize on the bounds (False: only when asked).
    """

    def __init__(self, context: LLMContext, config: LLMAutoContextSummarizationConfig | None, *,
                 auto_trigger: bool) -> None:
        self.context = context
        self.config = config or LLMAutoContextSummarizationConfig()
        self.auto_trigger = auto_trigger
        self.in_progress = False
        self._pending: str | None = None  # the request awaited
        self._pending_config: LLMContextSummaryConfig | None = None
        self._pending_ids: tuple[int, int] = (0, 0)  # identity of the first and last folded message
        self._summary_message: dict[str, Any] | None = None  # the last summary applied
        self.summaries = 0
        """Summaries applied."""

    def _since_summary(self) -> int:
        messages: list[Any] = self.context.messages
        summary = self._summary_message
        if summary is not None:
            for i, message in enumerate(messages):
                if message is summary:
                    return len(messages) - i - 1
        return len(messages) - (1 if _leading_system(messages) else 0)

    def due(self) -> bool:
        """Whether a bound is reached (and auto-summarization is on, and none is in flight)."""
        if not self.auto_trigger or self.in_progress:
            return False
        cfg = self.config
        if cfg.max_unsummarized_messages is not None and self._since_summary() >= cfg.max_unsummarized_messages:
            return True
        return cfg.max_context_tokens is not None and estimate_context_tokens(self.context) >= cfg.max_context_tokens

    def request(self, config: LLMContextSummaryConfig | None = None,
                running: Collection[str] = ()) -> tuple[LLMContextSummaryRequestFrame, LLMContextSummaryConfig] | None:
        """A request for a summary now (``config`` overrides how it is made), and the config it uses.

        Args:
            config: Overrides the configured summary settings for this request.
            running: Ids of the tool calls still running (never folded).

        Returns:
            None when one is in flight or there is nothing to fold yet.
        """
        if self.in_progress:
            logger.debug("context summary already in flight: request ignored")
            return None
        cfg = config or self.config.summary_config
        messages: list[Any] = self.context.messages
        first, last = messages_to_summarize(self.context, cfg.min_messages_after_summary, running)
        if last < first or (first == last and messages[first] is self._summary_message):
            logger.debug("context summary: nothing to fold yet")  # (the last summary alone: nothing new)
            return None
        request_id = f"summary-{next(_requests)}"
        self.in_progress = True
        self._pending = request_id
        self._pending_config = cfg
        self._pending_ids = (id(messages[first]), id(messages[last]))
        logger.debug("context summary %s: folding messages %d..%d", request_id, first, last)
        frame = LLMContextSummaryRequestFrame(
            request_id=request_id,
            context=self.context,
            messages=list(messages[first:last + 1]),
            first_index=first,
            last_summarized_index=last,
            target_context_tokens=cfg.target_context_tokens,
            summarization_prompt=cfg.summary_prompt,
            summarization_timeout=cfg.summarization_timeout,
        )
        return frame, cfg

    def interrupted(self) -> None:
        """A barge-in: the request may have been dropped, so a new one is allowed (the result still counts)."""
        self.in_progress = False

    def result(self, frame: LLMContextSummaryResultFrame) -> SummaryAppliedEvent | None:
        """Apply a summary result; None when it is dropped (see the module doc)."""
        if frame.request_id != self._pending:
            logger.debug("context summary %s: not the one awaited, dropped", frame.request_id)
            return None
        cfg = self._pending_config or self.config.summary_config
        first_id, last_id = self._pending_ids
        self._pending = self._pending_config = None
        self.in_progress = False
        if frame.error:
            logger.warning("context summary %s failed: %s", frame.request_id, frame.error)
            return None
        messages: list[Any] = self.context.messages
        last = frame.last_summarized_index
        first = 1 if _leading_system(messages) else 0
        if not (first <= last < len(messages)) or id(messages[first]) != first_id or id(messages[last]) != last_id:
            logger.warning("context summary %s: the context changed meanwhile, dropped", frame.request_id)
            return None
        summary = {"role": "user", "content": cfg.summary_message_template.format(summary=frame.summary)}
        kept = messages[last + 1:]
        new = ([messages[0]] if first else []) + [summary] + kept
        original = len(messages)
        self.context.set_messages(new)  # in place: ``messages`` is the live list
        self._summary_message = summary
        self.summaries += 1
        event = SummaryAppliedEvent(
            original_message_count=original,
            new_message_count=len(new),
            summarized_message_count=last + 1 - first,
            preserved_message_count=len(kept) + first,
        )
        logger.info("context summary %s: %d messages folded, %d now", frame.request_id,
                    event.summarized_message_count, event.new_message_count)
        return event


async def summarize_with(llm: LLMService, request: LLMContextSummaryRequestFrame) -> LLMContextSummaryResultFrame:
    """The result of ``request`` from a dedicated summarizing service (an error result on any failure)."""
    try:
        summary = await generate_summary(llm, request)
    except Exception as exc:  # noqa: BLE001 - any failure of the summarizer leaves the context as it is
        return LLMContextSummaryResultFrame(request_id=request.request_id, summary="", last_summarized_index=-1,
                                            error=str(exc) or type(exc).__name__)
    return LLMContextSummaryResultFrame(request_id=request.request_id, summary=summary,
                                        last_summarized_index=request.last_summarized_index)
