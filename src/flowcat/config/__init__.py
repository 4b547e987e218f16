"""Declarative configuration of voice agents: YAML or JSON, validated, every mistake located.

* :func:`load_config` / :func:`parse_config` → :class:`LoadedConfig` (a :class:`FlowcatConfig`:
  the server and several named agents, each a brain on a topology);
* :func:`check_agent` — what keeps an agent from running (unknown provider or option, missing
  extra, missing key, missing graph file), each with its file, line and fix;
* :func:`agent_pipeline` — the per-call factory of an agent's processors;
* ``flowcat config check FILE`` and ``flowcat config schema`` (JSON Schema for editors).

Keys are never read from the file: providers take theirs from the environment.

Layer: above :mod:`flowcat.agent` (it builds pipelines from every layer below),
below :mod:`flowcat.server` and :mod:`flowcat.cli`, which load it.
"""

from __future__ import annotations

from ._build import AgentPipeline as AgentPipeline
from ._build import agent_pipeline as agent_pipeline
from ._load import ConfigProblem as ConfigProblem
from ._load import LoadedConfig as LoadedConfig
from ._load import load_config as load_config
from ._load import parse_config as parse_config
from ._providers import build_service as build_service
from ._providers import check_agent as check_agent
from ._providers import find_provider as find_provider
from ._schema import TRANSPORTS as TRANSPORTS
from ._schema import AgentConfig as AgentConfig
from ._schema import CascadedTopology as CascadedTopology
from ._schema import ContextRelayConfig as ContextRelayConfig
from ._schema import FlowcatConfig as FlowcatConfig
from ._schema import GraphBrainConfig as GraphBrainConfig
from ._schema import LLMBrainConfig as LLMBrainConfig
from ._schema import ProviderConfig as ProviderConfig
from ._schema import RealtimeTopology as RealtimeTopology
from ._schema import RemoteBrainConfig as RemoteBrainConfig
from ._schema import ServerConfig as ServerConfig
from ._schema import SIPConfig as SIPConfig
from ._schema import SIPRegistrarConfig as SIPRegistrarConfig
from ._schema import SIPSessionTimersConfig as SIPSessionTimersConfig
from ._schema import ToolConfig as ToolConfig
from ._schema import TurnsConfig as TurnsConfig
from ._schema import VADConfig as VADConfig
from ._schema import WebSocketBrainConfig as WebSocketBrainConfig

__all__ = [
    "AgentConfig",
    "AgentPipeline",
    "CascadedTopology",
    "ConfigProblem",
    "ContextRelayConfig",
    "FlowcatConfig",
    "GraphBrainConfig",
    "LLMBrainConfig",
    "LoadedConfig",
    "ProviderConfig",
    "RealtimeTopology",
    "RemoteBrainConfig",
    "SIPConfig",
    "SIPRegistrarConfig",
    "SIPSessionTimersConfig",
    "ServerConfig",
    "TRANSPORTS",
    "ToolConfig",
    "TurnsConfig",
    "VADConfig",
    "WebSocketBrainConfig",
    "agent_pipeline",
    "build_service",
    "check_agent",
    "find_provider",
    "load_config",
    "parse_config",
]
