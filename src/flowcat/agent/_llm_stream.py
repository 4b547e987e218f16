"""One LLM answer for a brain: sentences as they complete, then the whole tool calls.

Used by :class:`~flowcat.agent.LLMBrain` and the graph agent's LLM decider. It calls the
service's provider seam (:meth:`~flowcat.services.LLMService.run_inference`) directly: no
frames, no pipeline; closing the stream (a barge-in) closes the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from ..services import LLMService, LLMTextDelta, LLMToolCallDelta
from ..services.adapters import LLMContext

__all__ = ["LLMToolCall", "assistant_message", "sentences_and_calls"]

# A sentence ends at . ! ? (or a line break) followed by white space.
_END = re.compile(r"(?<=[.!?…])\s+|\n+")


@dataclass
class LLMToolCall:
    """A whole tool call of the answer (arguments parsed; ``{}`` when they were not valid JSON)."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""


async def sentences_and_calls(llm: LLMService, context: LLMContext) -> AsyncIterator[str | list[LLMToolCall]]:
    """Yield each sentence of the answer as soon as it is complete (stripped, non-empty), then,
    last, the list of tool calls (possibly empty)."""
    buf = ""
    acc: dict[int, list[str]] = {}
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    async with aclosing(llm.run_inference(context)) as stream:
        async for chunk in stream:
            if isinstance(chunk, LLMTextDelta):
                buf += chunk.text
                while True:
                    m = _END.search(buf)
                    if m is None:
                        break
                    sentence, buf = buf[: m.start()].strip(), buf[m.end() :]
                    if sentence:
                        yield sentence
            elif isinstance(chunk, LLMToolCallDelta):
                acc.setdefault(chunk.index, []).append(chunk.arguments)
                if chunk.id:
                    ids[chunk.index] = chunk.id
                if chunk.name:
                    names[chunk.index] = chunk.name
    if buf.strip():
        yield buf.strip()
    calls = []
    for i in sorted(acc):
        raw = "".join(acc[i])
        try:
            args = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            args = {}
        calls.append(LLMToolCall(ids.get(i) or f"call_{i}", names.get(i, ""),
                                 args if isinstance(args, dict) else {}, raw))
    yield calls


def assistant_message(text: str, calls: list[LLMToolCall]) -> dict[str, Any]:
    """The OpenAI-style assistant message recording ``text`` and ``calls``."""
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.raw or json.dumps(c.arguments)}}
                             for c in calls]
    if not text:
        msg["content"] = "" if not calls else None
    return msg
