"""LLMBrain: a plain LLM as an :class:`~flowcat.agent.AgentBrain`.

A system prompt, the conversation so far, and tools. Each user turn runs the model once
(through :meth:`~flowcat.services.LLMService.run_inference`); its text is said sentence by
sentence as it streams (:class:`~flowcat.agent.Say`), its tool calls become
:class:`~flowcat.agent.CallTool` actions, and when every result is back
(:class:`~flowcat.agent.ToolResult`) the model runs again with them. A tool named
``end_call`` (offered unless ``end_call_tool=False``) ends the call with its
``disposition``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..services import FunctionSchema, LLMService
from ..services.adapters import LLMContext
from ._brain import (
    AgentBrain,
    BotInterrupted,
    BrainAction,
    BrainEvent,
    CallStarted,
    CallTool,
    EndCall,
    Say,
    Silence,
    ToolResult,
    UserTurn,
)
from ._llm_stream import LLMToolCall, assistant_message, sentences_and_calls

__all__ = ["END_CALL_TOOL", "LLMBrain"]

logger = logging.getLogger("flowcat.agent.brain")

END_CALL_TOOL = FunctionSchema(
    "end_call",
    "End the call when the conversation is over (after saying goodbye).",
    properties={"disposition": {"type": "string", "description": "The call's outcome, in a few words."}},
    required=[],
)


class LLMBrain(AgentBrain):
    """A system prompt and tools on an LLM service.

    Args:
        llm: The service whose ``run_inference`` answers (its HTTP session is shared; it
            need not be in a pipeline).
        system_prompt: The system message.
        tools: Tool schemas offered to the model (run by the runner's registry via
            :class:`CallTool`).
        greeting: Said at the start of the call (None: the model greets when
            ``greet_with_llm``, else the bot waits for the user).
        greet_with_llm: Run the model at the start of the call.
        end_call_tool: Offer ``end_call``.
        max_tool_rounds: Model runs in a row answering tool results before giving up.
    """

    def __init__(
        self,
        llm: LLMService,
        system_prompt: str,
        *,
        tools: Sequence[FunctionSchema] = (),
        greeting: str | None = None,
        greet_with_llm: bool = False,
        end_call_tool: bool = True,
        max_tool_rounds: int = 4,
    ) -> None:
        self.llm = llm
        self.system_prompt = system_prompt
        self.tools = [*tools, *((END_CALL_TOOL,) if end_call_tool else ())]
        self.greeting = greeting
        self.greet_with_llm = greet_with_llm
        self.max_tool_rounds = max_tool_rounds
        self.messages: list[dict[str, Any]] = []
        self._waiting: dict[str, str] = {}  # tool_call_id -> name, results still owed
        self._rounds = 0

    def context(self) -> LLMContext:
        """The request context: the system prompt, the conversation, the tools."""
        return LLMContext([{"role": "system", "content": self.system_prompt}, *self.messages],
                          tools=list(self.tools) or None)

    async def handle(self, event: BrainEvent) -> AsyncIterator[BrainAction]:
        if isinstance(event, CallStarted):
            if self.greeting:
                self.messages.append({"role": "assistant", "content": self.greeting})
                yield Say(self.greeting)
            elif self.greet_with_llm:
                async for a in self._run():
                    yield a
        elif isinstance(event, UserTurn):
            if not event.text.strip():
                return
            self._rounds = 0
            self.messages.append({"role": "user", "content": event.text})
            async for a in self._run():
                yield a
        elif isinstance(event, Silence):
            self.messages.append({"role": "developer",
                                  "content": f"The user has been silent for {event.seconds:g} s "
                                             f"({event.count} time(s) in a row)."})
            async for a in self._run():
                yield a
        elif isinstance(event, ToolResult):
            if self._waiting.pop(event.tool_call_id, None) is None:
                return
            content = event.error if event.error else (
                event.result if isinstance(event.result, str) else json.dumps(event.result, default=str))
            self.messages.append({"role": "tool", "tool_call_id": event.tool_call_id, "content": content})
            if not self._waiting and self._rounds < self.max_tool_rounds:
                self._rounds += 1
                async for a in self._run():
                    yield a
        elif isinstance(event, BotInterrupted):
            # Keep only what was heard of the interrupted reply.
            for m in reversed(self.messages):
                if m.get("role") == "assistant" and not m.get("tool_calls"):
                    m["content"] = event.spoken
                    break

    async def _run(self) -> AsyncIterator[BrainAction]:
        said: list[str] = []
        calls: list[LLMToolCall] = []
        try:
            async for piece in sentences_and_calls(self.llm, self.context()):
                if isinstance(piece, str):
                    said.append(piece)
                    yield Say(piece)
                else:
                    calls = piece
        finally:
            # Recorded even when the stream is abandoned (barge-in): BotInterrupted trims it.
            if said or calls:
                self.messages.append(assistant_message(" ".join(said), calls))
        for c in calls:
            if c.name == END_CALL_TOOL.name:
                self.messages.append({"role": "tool", "tool_call_id": c.id, "content": "ended"})
                disposition = c.arguments.get("disposition")
                yield EndCall(disposition=str(disposition) if disposition else None)
                return
        for c in calls:
            self._waiting[c.id] = c.name
            yield CallTool(c.id, c.name, c.arguments)
