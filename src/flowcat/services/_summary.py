"""Context summaries made by an LLM service: the transcript it reads and the request it answers.

The assistant aggregator decides when and what to summarize (``flowcat.agent``, see
``docs/agent.md``, "Context summarization") and sends an ``LLMContextSummaryRequestFrame``
upstream. The pipeline's :class:`~flowcat.services.LLMService` answers it in a background
task — the conversation goes on meanwhile — with one out-of-band ``run_inference`` call: a
system message (the prompt and the length asked for) and a user message (the transcript of
the messages to fold), its text deltas joined. The answer is broadcast as an
``LLMContextSummaryResultFrame`` with the request's id; a failure, an empty answer or the
timeout gives a result with ``error`` set, so the aggregator is never left waiting. A
dedicated summarizing service (not in the pipeline) is called the same way with
:func:`generate_summary`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ServiceError, ServiceTimeout
from ..frames import LLMContext, LLMContextSummaryRequestFrame

if TYPE_CHECKING:
    from ._llm import LLMService

__all__ = ["DEFAULT_SUMMARIZATION_PROMPT", "DEFAULT_SUMMARIZATION_TIMEOUT", "generate_summary",
           "summary_transcript"]

DEFAULT_SUMMARIZATION_TIMEOUT = 120.0
"""Seconds a summary may take when the request names no timeout."""

DEFAULT_SUMMARIZATION_PROMPT = (
    "You condense the earlier part of a conversation between a user and an AI assistant so the "
    "assistant can go on without it. Keep every fact the rest of the conversation may need: names, "
    "numbers, dates, decisions, what the user asked for and prefers, what was promised, questions "
    "still open and tool results that matter. Leave out greetings, small talk and whatever was "
    "settled and will not come back. Write plain factual statements, grouped by topic. Answer with "
    "the summary alone."
)

_BUDGET = "Keep the summary under about {tokens} tokens ({words} words)."


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text only (images are not described)
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def summary_transcript(messages: Sequence[Any]) -> str:
    """The messages as a transcript for the summarizer: ``ROLE: text`` lines, tool calls and results.

    Vendor-specific entries (thought records and the like) are left out: their words are in the
    replies around them.
    """
    lines: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "unknown"))
        text = _text(message.get("content"))
        if role == "tool":
            lines.append(f"TOOL RESULT ({message.get('tool_call_id', '?')}): {text}")
            continue
        if text:
            lines.append(f"{role.upper()}: {text}")
        for tool_call in message.get("tool_calls") or ():
            fn = tool_call.get("function", {}) if isinstance(tool_call, dict) else {}
            if isinstance(fn, dict):
                lines.append(f"TOOL CALL ({tool_call.get('id', '?')}): {fn.get('name', '?')}({fn.get('arguments', '')})")
    return "\n\n".join(lines)


async def generate_summary(llm: LLMService, request: LLMContextSummaryRequestFrame) -> str:
    """Ask ``llm`` for a summary of ``request.messages`` (bounded by the request's timeout).

    Raises:
        ServiceError: Nothing to summarize, the model answered nothing, or the service failed.
        ServiceTimeout: The summary took longer than the timeout.
    """
    transcript = summary_transcript(request.messages)
    if not transcript:
        raise ServiceError("nothing to summarize")
    budget = _BUDGET.format(tokens=request.target_context_tokens, words=max(1, request.target_context_tokens * 3 // 4))
    context = LLMContext([
        {"role": "system", "content": f"{request.summarization_prompt}\n\n{budget}"},
        {"role": "user", "content": f"The conversation so far:\n\n{transcript}"},
    ])
    timeout = request.summarization_timeout or DEFAULT_SUMMARIZATION_TIMEOUT
    try:
        text = (await asyncio.wait_for(llm.run_inference_text(context), timeout)).strip()
    except TimeoutError:
        raise ServiceTimeout(f"the summary took longer than {timeout:g} s", retryable=False) from None
    if not text:
        raise ServiceError("the model returned an empty summary")
    return text
