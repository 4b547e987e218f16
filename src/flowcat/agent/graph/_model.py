"""The graph format: nodes and edges (pydantic), loaded from a dict, JSON or YAML, and checked.

A graph is ``{nodes: [...], edges: [...]}`` plus optional call-wide settings. Node kinds:
``start`` (alias ``startCall``: exactly one), ``agent`` (``agentNode``), ``end`` (``endCall``)
and ``global`` (``globalNode``: at most one; its prompt is prepended to every node's, its
edges are offered from every node). Edges are ``{id, source, target, label, data}``.
Every mistake raises :class:`~flowcat.errors.ConfigError` naming the node or edge.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import ConfigError

__all__ = [
    "AgentGraph",
    "GraphEdge",
    "GraphEdgeData",
    "GraphNode",
    "GraphNodeData",
    "SilencePolicy",
    "SlotSpec",
    "load_graph",
    "slugify",
]

NodeKind = Literal["start", "agent", "end", "global"]
_KIND_ALIASES = {"startCall": "start", "agentNode": "agent", "endCall": "end", "globalNode": "global"}
SlotType = Literal["name", "number", "day", "date", "time", "yes_no", "text"]


def slugify(label: str) -> str:
    """A tool name from an edge label: ASCII, lower case, ``_`` between words (``"Wrap up"`` → ``wrap_up``)."""
    s = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-zA-Z0-9]+", "_", s).strip("_").lower()
    return s[:64]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SlotSpec(_Model):
    """A value an edge takes from the user's words (``type``) into variable ``name``.

    ``required`` (default): the edge is not taken without it. ``equals``: the edge is taken
    only when the value equals this (``{type: yes_no, equals: true}``).
    """

    name: str
    type: SlotType = "text"
    required: bool = True
    equals: Any = None


class GraphEdgeData(_Model):
    """What decides an edge.

    Attributes:
        condition: When to take it, in words (the LLM tool's description).
        examples: Phrases meaning it (the intent matcher's embeddings).
        keywords: Words or phrases that take it outright (also without embeddings).
        dtmf: Keys that take it (``"0"``).
        slots: Values taken from the user's words (:class:`SlotSpec`).
        action: ``"repeat"``: say the last reply again and stay (no target needed).
        transition_criteria: Alias of ``condition``.
    """

    condition: str | None = None
    transition_criteria: str | None = None
    examples: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    dtmf: str | None = None
    slots: list[SlotSpec] = Field(default_factory=list)
    action: Literal["repeat"] | None = None


class GraphEdge(_Model):
    """``{id, source, target, label, data}``; each outgoing edge is the LLM tool ``slugify(label)``."""

    id: str
    source: str
    target: str | None = None
    label: str = ""
    data: GraphEdgeData = Field(default_factory=GraphEdgeData)

    @property
    def tool_name(self) -> str:
        return slugify(self.label) or slugify(self.id)

    @property
    def description(self) -> str:
        return self.data.condition or self.data.transition_criteria or self.label


class GraphNodeData(_Model):
    """A node's behaviour.

    Attributes:
        name: Display name.
        say: Said on entering the node (a template), before the user answers.
        prompt: The node's system prompt for the LLM decider (a template).
        reprompt: Said when the user's answer matches no edge (default: the graph's ``no_match``).
        add_global_prompt: Prepend the global prompt (default True).
        disposition: For ``end`` nodes: the call's reported outcome.
        transfer_to: Entering the node transfers the call there (after ``say``).
    """

    name: str | None = None
    say: str | None = None
    prompt: str | None = None
    reprompt: str | None = None
    add_global_prompt: bool = True
    disposition: str | None = None
    transfer_to: str | None = None


class GraphNode(_Model):
    id: str
    type: NodeKind
    data: GraphNodeData = Field(default_factory=GraphNodeData)

    @field_validator("type", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return _KIND_ALIASES.get(v, v)


class SilencePolicy(_Model):
    """What silence does: re-prompt ``reprompts`` times (``say``, then the node's ``say`` again),
    then end the call with ``goodbye`` and ``disposition``."""

    reprompts: int = 2
    say: str = "Are you still there?"
    goodbye: str = "I haven't heard from you, so I'll end the call now. Goodbye."
    disposition: str = "no_response"


class AgentGraph(_Model):
    """A whole graph agent.

    Attributes:
        name: The agent's name.
        nodes: The nodes (:class:`GraphNode`).
        edges: The edges (:class:`GraphEdge`).
        variables: Seed variables (templates may read them; the call's own override them).
        timezone: IANA zone of ``current_time``/``current_date``/``current_weekday`` (default UTC).
        no_match: Said when an answer matches no edge (then the node's ``reprompt`` or ``say``).
        silence: The :class:`SilencePolicy`.
        threshold: The intent matcher's minimum cosine similarity.
    """

    name: str = "agent"
    nodes: list[GraphNode]
    edges: list[GraphEdge] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    timezone: str = "UTC"
    no_match: str = "Sorry, I didn't catch that."
    silence: SilencePolicy = Field(default_factory=SilencePolicy)
    threshold: float = 0.6

    def model_post_init(self, __context: Any) -> None:
        self._by_id = {n.id: n for n in self.nodes}
        self._out: dict[str, list[GraphEdge]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            self._out.setdefault(e.source, []).append(e)

    def node(self, node_id: str) -> GraphNode:
        return self._by_id[node_id]

    def out_edges(self, node_id: str) -> list[GraphEdge]:
        return self._out.get(node_id, [])

    @property
    def start(self) -> GraphNode:
        return next(n for n in self.nodes if n.type == "start")

    @property
    def global_node(self) -> GraphNode | None:
        return next((n for n in self.nodes if n.type == "global"), None)

    def global_edges(self) -> list[GraphEdge]:
        g = self.global_node
        return self.out_edges(g.id) if g is not None else []

    def check(self) -> AgentGraph:
        """Check references and per-kind edge cardinality; raises ConfigError naming the culprit."""
        seen: set[str] = set()
        for n in self.nodes:
            if n.id in seen:
                raise ConfigError(f"graph {self.name!r}: node {n.id!r} is defined twice")
            seen.add(n.id)
        starts = [n.id for n in self.nodes if n.type == "start"]
        if len(starts) != 1:
            raise ConfigError(f"graph {self.name!r}: needs exactly one start node, found {starts or 'none'}")
        if len([n for n in self.nodes if n.type == "global"]) > 1:
            raise ConfigError(f"graph {self.name!r}: at most one global node")
        edge_ids: set[str] = set()
        for e in self.edges:
            where = f"graph {self.name!r}: edge {e.id!r}"
            if e.id in edge_ids:
                raise ConfigError(f"{where} is defined twice")
            edge_ids.add(e.id)
            if e.source not in self._by_id:
                raise ConfigError(f"{where}: unknown source node {e.source!r}")
            if e.data.action == "repeat":
                continue
            if e.target is None:
                raise ConfigError(f"{where}: needs a target (or data.action: repeat)")
            if e.target not in self._by_id:
                raise ConfigError(f"{where}: unknown target node {e.target!r}")
            target = self._by_id[e.target]
            if target.type in ("start", "global"):
                raise ConfigError(f"{where}: cannot lead to the {target.type} node {e.target!r}")
        for n in self.nodes:
            out = self.out_edges(n.id)
            where = f"graph {self.name!r}: {n.type} node {n.id!r}"
            if n.type == "end" and out:
                raise ConfigError(f"{where} cannot have outgoing edges ({out[0].id!r})")
            if n.type == "start" and not out and not (n.data.say or n.data.prompt):
                raise ConfigError(f"{where} needs an outgoing edge (or a say/prompt)")
            if n.type == "agent" and not out and n.data.transfer_to is None:
                raise ConfigError(f"{where} has no outgoing edge: the call could never leave it")
            names = [e.tool_name for e in out]
            dup = {x for x in names if names.count(x) > 1}
            if dup:
                raise ConfigError(f"{where}: two outgoing edges have the tool name {sorted(dup)[0]!r}")
        return self


def load_graph(source: AgentGraph | dict[str, Any] | str | Path) -> AgentGraph:
    """A checked :class:`AgentGraph` from a model, a dict, a JSON/YAML text or a ``.json``/``.yaml`` path."""
    if isinstance(source, AgentGraph):
        return source.check()
    data: Any = source
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.endswith((".json", ".yaml", ".yml"))):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read graph {path}: {exc}") from exc
        data = _parse(text, yaml=path.suffix in (".yaml", ".yml"), where=str(path))
    elif isinstance(source, str):
        data = _parse(source, yaml=not source.lstrip().startswith("{"), where="graph text")
    if not isinstance(data, dict):
        raise ConfigError("a graph is a mapping with nodes and edges")
    try:
        graph = AgentGraph.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid graph: {_explain(exc, data)}") from exc
    return graph.check()


def _parse(text: str, *, yaml: bool, where: str) -> Any:
    if not yaml:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: invalid JSON: {exc}") from exc
    import yaml as pyyaml

    try:
        return pyyaml.safe_load(text)
    except pyyaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from exc


def _explain(exc: ValidationError, data: dict[str, Any]) -> str:
    """Pydantic's errors with ``nodes.3`` / ``edges.1`` replaced by the node's or edge's id."""
    parts = []
    for err in exc.errors()[:5]:
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] in ("nodes", "edges") and isinstance(loc[1], int):
            items = data.get(str(loc[0])) or []
            item = items[loc[1]] if loc[1] < len(items) else {}
            ident = item.get("id", f"#{loc[1]}") if isinstance(item, dict) else f"#{loc[1]}"
            head = f"{'node' if loc[0] == 'nodes' else 'edge'} {ident!r}"
            rest = ".".join(str(x) for x in loc[2:])
            parts.append(f"{head}{' ' + rest if rest else ''}: {err['msg']}")
        else:
            parts.append(f"{'.'.join(str(x) for x in loc) or 'graph'}: {err['msg']}")
    return "; ".join(parts)
