"""GraphBrain: a graph agent (nodes and edges) as an :class:`~flowcat.agent.AgentBrain`.

Two ways to choose an edge:

* **LLM** (``llm=`` an :class:`~flowcat.services.LLMService`): the node's prompt (after the
  global prompt) is the system prompt, each outgoing edge (and each global edge) is a
  no-argument tool ``slugify(label)`` described by its condition, plus ``end_call``
  (``disposition``); the model's text is said as it streams, a tool call moves along its
  edge.
* **No LLM** (the default): the on-device :class:`~.IntentMatcher` (keywords, example
  phrases by sentence embeddings, slots, DTMF); no match says the graph's ``no_match``
  and the node's ``reprompt`` (or ``say``) again.

Entering a node records it (:class:`Transition`), says its ``say`` (a template); an ``end``
node ends the call with its ``disposition``; a node with ``transfer_to`` transfers.
Silence re-prompts ``silence.reprompts`` times, then says goodbye.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from ...services import FunctionSchema, LLMService
from ...services.adapters import LLMContext
from .._brain import (
    AgentBrain,
    BotInterrupted,
    BrainAction,
    BrainCall,
    BrainEvent,
    CallStarted,
    Dtmf,
    EndCall,
    Say,
    SetVariable,
    Silence,
    Transfer,
    Transition,
    UserTurn,
)
from .._llm_brain import END_CALL_TOOL
from .._llm_stream import LLMToolCall, assistant_message, sentences_and_calls
from ._intent import Embedder, IntentMatch, IntentMatcher
from ._model import AgentGraph, GraphEdge, GraphNode, load_graph
from ._template import Clock, render, utc_now

__all__ = ["GraphBrain"]

logger = logging.getLogger("flowcat.agent.graph")


class GraphBrain(AgentBrain):
    """Runs one call through a graph.

    Args:
        graph: An :class:`AgentGraph`, a dict, JSON/YAML text or a path (see :func:`load_graph`).
        llm: Choose edges with this LLM (None: the intent matcher).
        matcher: The intent matcher (default: ``IntentMatcher(threshold=graph.threshold)``).
        embedder: Passed to the default matcher (``"auto"``, None or an embedder).
        clock: ``() -> aware datetime`` for the time built-ins and relative days.
        variables: Seed variables (over the graph's; the call's own go over these).
        max_llm_chain: Model runs in a row after transitions into nodes with no ``say``.
    """

    def __init__(
        self,
        graph: AgentGraph | Mapping[str, Any] | str | Path,
        *,
        llm: LLMService | None = None,
        matcher: IntentMatcher | None = None,
        embedder: Embedder | str | None = "auto",
        clock: Clock = utc_now,
        variables: Mapping[str, Any] | None = None,
        max_llm_chain: int = 2,
    ) -> None:
        self.graph = load_graph(graph if not isinstance(graph, Mapping) else dict(graph))
        self.llm = llm
        self.matcher = matcher or IntentMatcher(embedder=embedder, threshold=self.graph.threshold)
        self.clock = clock
        self.variables: dict[str, Any] = {**self.graph.variables, **(variables or {})}
        self.nodes_visited: list[str] = []
        self.node: GraphNode = self.graph.start
        self.last_said = ""
        self.disposition: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.max_llm_chain = max_llm_chain
        self.call: BrainCall | None = None

    @property
    def collected_vars(self) -> dict[str, Any]:
        """The call's variables plus ``nodes_visited``."""
        return {**self.variables, "nodes_visited": list(self.nodes_visited)}

    def render(self, template: str | None) -> str:
        return render(template or "", self.variables, tz=self.graph.timezone, clock=self.clock).strip()

    def edges(self) -> list[GraphEdge]:
        """The edges offered now: the node's own, then the global node's."""
        return [*self.graph.out_edges(self.node.id), *self.graph.global_edges()]

    # ------------------------------------------------------------ events

    async def handle(self, event: BrainEvent) -> AsyncIterator[BrainAction]:
        if isinstance(event, CallStarted):
            self.call = event.call
            self.variables.update(event.call.variables)
            async for a in self._enter(self.graph.start, depth=0, greet=True):
                yield a
        elif isinstance(event, UserTurn):
            if not event.text.strip():
                return
            if self.llm is not None:
                self.messages.append({"role": "user", "content": event.text})
                async for a in self._llm_turn(0):
                    yield a
            else:
                found = await self.matcher.match(event.text, self.edges(), now=self.clock())
                async for a in self._take(found):
                    yield a
        elif isinstance(event, Dtmf):
            async for a in self._take(self.matcher.match_dtmf(event.digits, self.edges())):
                yield a
        elif isinstance(event, Silence):
            policy = self.graph.silence
            if event.count > policy.reprompts:
                self.disposition = policy.disposition
                yield EndCall(say=self.render(policy.goodbye), disposition=policy.disposition)
            else:
                again = self.render(self.node.data.reprompt or self.node.data.say)
                yield self._say(" ".join(x for x in (self.render(policy.say), again) if x))
        elif isinstance(event, BotInterrupted) and self.llm is not None:
            for m in reversed(self.messages):
                if m.get("role") == "assistant" and not m.get("tool_calls"):
                    m["content"] = event.spoken
                    break

    def _say(self, text: str) -> Say:
        self.last_said = text
        return Say(text)

    async def _take(self, found: IntentMatch | None) -> AsyncIterator[BrainAction]:
        if found is None:
            again = self.render(self.node.data.reprompt or self.node.data.say)
            yield self._say(" ".join(x for x in (self.render(self.graph.no_match), again) if x))
            return
        for name, value in found.slots.items():
            self.variables[name] = value
            yield SetVariable(name, value)
        if found.edge.data.action == "repeat":
            if self.last_said:
                yield Say(self.last_said)
            return
        assert found.edge.target is not None  # noqa: S101 - invariant (type narrowing), not input validation
        async for a in self._enter(self.graph.node(found.edge.target), depth=0):
            yield a

    async def _enter(self, node: GraphNode, *, depth: int, greet: bool = False) -> AsyncIterator[BrainAction]:
        self.node = node
        self.nodes_visited.append(node.id)
        yield Transition(node.id)
        d = node.data
        say = self.render(d.say) if d.say else ""
        if node.type == "end":
            self.disposition = d.disposition
            yield EndCall(say=say or None, disposition=d.disposition)
            return
        if d.transfer_to:
            yield Transfer(self.render(d.transfer_to), say=say or None)
            return
        if say:
            if self.llm is not None:
                self.messages.append({"role": "assistant", "content": say})
            yield self._say(say)
            return
        if node.type == "start" and not d.prompt:
            # A start node without words moves on along its first edge.
            edge = next((e for e in self.graph.out_edges(node.id) if e.target), None)
            if edge is not None and edge.target is not None:
                async for a in self._enter(self.graph.node(edge.target), depth=depth, greet=greet):
                    yield a
            return
        if self.llm is not None and greet and d.prompt:  # the model greets
            async for a in self._llm_turn(depth):
                yield a

    # ------------------------------------------------------------ LLM decider

    def system_prompt(self) -> str:
        parts = []
        g = self.graph.global_node
        if g is not None and g.data.prompt and self.node.data.add_global_prompt:
            parts.append(self.render(g.data.prompt))
        if self.node.data.prompt:
            parts.append(self.render(self.node.data.prompt))
        return "\n\n".join(parts)

    def tools(self) -> list[FunctionSchema]:
        """One no-argument tool per edge offered now, plus ``end_call``."""
        out = [FunctionSchema(e.tool_name, e.description) for e in self.edges()]
        return [*out, END_CALL_TOOL]

    async def _llm_turn(self, depth: int) -> AsyncIterator[BrainAction]:
        assert self.llm is not None  # noqa: S101 - invariant (type narrowing), not input validation
        context = LLMContext([{"role": "system", "content": self.system_prompt()}, *self.messages],
                             tools=self.tools())
        said: list[str] = []
        calls: list[LLMToolCall] = []
        try:
            async for piece in sentences_and_calls(self.llm, context):
                if isinstance(piece, str):
                    said.append(piece)
                    yield self._say(piece)
                else:
                    calls = piece
        finally:
            if said or calls:
                self.messages.append(assistant_message(" ".join(said), calls))
                if said:
                    self.last_said = " ".join(said)
        by_tool = {e.tool_name: e for e in self.edges()}
        for c in calls:
            self.messages.append({"role": "tool", "tool_call_id": c.id, "content": "ok"})
        for c in calls:
            if c.name == END_CALL_TOOL.name:
                disposition = c.arguments.get("disposition")
                self.disposition = str(disposition) if disposition else None
                yield EndCall(disposition=self.disposition)
                return
            edge = by_tool.get(c.name)
            if edge is None:
                logger.warning("graph %s: the model called an unknown tool %r", self.graph.name, c.name)
                continue
            if edge.data.action == "repeat":
                if self.last_said:
                    yield Say(self.last_said)
                return
            assert edge.target is not None  # noqa: S101 - invariant (type narrowing), not input validation
            target = self.graph.node(edge.target)
            async for a in self._enter(target, depth=depth):
                yield a
            if target.type != "end" and not target.data.say and not target.data.transfer_to \
                    and depth + 1 <= self.max_llm_chain:
                async for a in self._llm_turn(depth + 1):
                    yield a
            return
