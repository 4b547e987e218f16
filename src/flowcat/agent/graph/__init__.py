"""The graph agent: a conversation as nodes and edges, decided by an LLM or on the device.

* :class:`GraphBrain` (an :class:`~flowcat.agent.AgentBrain`) runs one call through an
  :class:`AgentGraph` (:func:`load_graph` reads a dict, JSON or YAML);
* :class:`IntentMatcher` chooses edges without an LLM (keywords, example phrases by
  all-MiniLM-L6-v2 sentence embeddings, slots, DTMF); :class:`MiniLMEmbedder` is the model;
* :func:`render` fills ``{{var | fallback}}`` templates; :func:`extract_slot` reads names,
  numbers, days, dates, times and yes/no from a transcript.

See ``docs/agents.md``.
"""

from __future__ import annotations

from ._brain import GraphBrain as GraphBrain
from ._embed import MiniLMEmbedder as MiniLMEmbedder
from ._embed import shared_embedder as shared_embedder
from ._intent import Embedder as Embedder
from ._intent import IntentMatch as IntentMatch
from ._intent import IntentMatcher as IntentMatcher
from ._model import AgentGraph as AgentGraph
from ._model import GraphEdge as GraphEdge
from ._model import GraphEdgeData as GraphEdgeData
from ._model import GraphNode as GraphNode
from ._model import GraphNodeData as GraphNodeData
from ._model import SilencePolicy as SilencePolicy
from ._model import SlotSpec as SlotSpec
from ._model import load_graph as load_graph
from ._model import slugify as slugify
from ._slots import extract_slot as extract_slot
from ._slots import parse_number as parse_number
from ._template import render as render

__all__ = [
    "AgentGraph",
    "Embedder",
    "GraphBrain",
    "GraphEdge",
    "GraphEdgeData",
    "GraphNode",
    "GraphNodeData",
    "IntentMatch",
    "IntentMatcher",
    "MiniLMEmbedder",
    "SilencePolicy",
    "SlotSpec",
    "extract_slot",
    "load_graph",
    "parse_number",
    "render",
    "shared_embedder",
    "slugify",
]
