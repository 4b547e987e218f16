"""The configuration schema: one server, several agents, each a brain on a topology.

Pydantic models, strict (an unknown field is an error with the close names), so the
JSON Schema (``flowcat config schema``) is what editors validate against and what
``docs/server.md`` documents. Keys are never part of it: providers read theirs from
the environment (``<VENDOR>_API_KEY``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "AgentConfig",
    "BrainConfig",
    "CascadedTopology",
    "FlowcatConfig",
    "GraphBrainConfig",
    "LLMBrainConfig",
    "ProviderConfig",
    "RealtimeTopology",
    "RemoteBrainConfig",
    "ServerConfig",
    "TopologyConfig",
    "TurnsConfig",
    "VADConfig",
    "WebSocketBrainConfig",
]

TRANSPORTS = (
    "webrtc",
    "twilio",
    "telnyx",
    "plivo",
    "exotel",
    "vonage",
    "genesys",
    "cloudonix",
    "vobiz",
    "protobuf",
)
"""What an agent can be reached by: the browser (WebRTC), each carrier's media route, pipecat's protobuf."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """One provider of a cascaded topology.

    ``provider`` is a registry name (``docs/providers.md``); ``model`` (and ``voice`` for
    TTS) go to the service; ``options`` are other parameters of the service's constructor
    or fields of its settings, by name (``base_url``, ``language``, ``sample_rate`` ...).
    """

    provider: str = Field(description="provider name from docs/providers.md, e.g. 'deepgram'")
    model: str | None = Field(default=None, description="model name; the provider's default when omitted")
    voice: str | None = Field(default=None, description="TTS voice id")
    options: dict[str, Any] = Field(default_factory=dict, description="service parameters or settings by name")


class CascadedTopology(_Strict):
    """STT → brain (with an LLM where the brain needs one) → TTS."""

    mode: Literal["cascaded"] = "cascaded"
    stt: ProviderConfig
    llm: ProviderConfig | None = Field(default=None, description="needed by the llm brain and LLM-decided graphs")
    tts: ProviderConfig


class RealtimeTopology(_Strict):
    """One speech-to-speech model (not available yet: the realtime issue wires it)."""

    mode: Literal["realtime"]
    provider: str
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def _mode(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("mode", "cascaded"))
    return str(getattr(value, "mode", "cascaded"))


TopologyConfig = Annotated[
    Annotated[CascadedTopology, Tag("cascaded")] | Annotated[RealtimeTopology, Tag("realtime")],
    Discriminator(_mode),
]
"""``mode: cascaded`` (the default when ``mode`` is left out) or ``mode: realtime``."""


class LLMBrainConfig(_Strict):
    """A plain LLM conversation: a system prompt, the context, the LLM's tools."""

    kind: Literal["llm"]
    system_prompt: str = "You are a helpful voice assistant. Keep answers short and speakable."


class GraphBrainConfig(_Strict):
    """The graph agent: nodes and labelled edges, from a file or inline."""

    kind: Literal["graph"]
    graph: str | dict[str, Any] = Field(description="path (relative to the config file) or the graph inline")
    decide: Literal["intents", "llm"] = Field(
        default="intents", description="how edges are chosen: on-device intent matcher, or the topology's LLM"
    )


class RemoteBrainConfig(_Strict):
    """RemoteBrain: the HTTP brain contract (``POST /session``, ``POST /tool-call``)."""

    kind: Literal["remote"]
    url: str
    token_env: str | None = Field(default=None, description="environment variable holding the bearer token")
    brain_config: Any = None
    timeout_secs: float = 30.0
    allow_private: bool | list[str] = Field(
        default=False,
        description="let the URL reach private, loopback or link-local addresses (true, or a list of networks); "
        "refused by default (SSRF guard, docs/security.md)",
    )


class WebSocketBrainConfig(_Strict):
    """The WebSocket brain protocol (docs/brain-websocket-protocol.md)."""

    kind: Literal["websocket"]
    url: str
    token_env: str | None = None
    allow_private: bool | list[str] = Field(
        default=False,
        description="let the URL reach private, loopback or link-local addresses (true, or a list of networks)",
    )


BrainConfig = Annotated[
    LLMBrainConfig | GraphBrainConfig | RemoteBrainConfig | WebSocketBrainConfig, Field(discriminator="kind")
]


class VADConfig(_Strict):
    """Voice activity detection (pipecat's ``VADParams``)."""

    analyzer: Literal["silero", "energy"] = "silero"
    confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    start_secs: float = Field(default=0.2, ge=0.0)
    stop_secs: float = Field(default=0.2, ge=0.0)
    min_volume: float = Field(default=0.6, ge=0.0, le=1.0)


class TurnsConfig(_Strict):
    """When the user's turn ends."""

    user_speech_timeout: float = Field(default=0.6, ge=0.0, description="seconds after the VAD stop")
    allow_interruptions: bool = True


class AgentConfig(_Strict):
    """One agent: how it thinks (brain), how it hears and speaks (topology), who can reach it."""

    description: str = ""
    brain: BrainConfig
    topology: TopologyConfig
    vad: VADConfig = VADConfig()
    turns: TurnsConfig = TurnsConfig()
    recording: bool = False
    transports: list[Literal[TRANSPORTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["webrtc"], description="how callers reach it"
    )
    capacity: int | None = Field(default=None, ge=1, description="most concurrent calls (None: the server's)")
    variables: dict[str, Any] = Field(default_factory=dict, description="seed values of per-call variables")


class ServerConfig(_Strict):
    """Where and how the server listens."""

    host: str = Field(default="127.0.0.1", description="bind address (--host overrides); off loopback needs a token")
    port: int = Field(default=8765, ge=1, le=65535, description="port shared by the workers (--port overrides)")
    public_url: str | None = Field(
        default=None, description="the URL carriers reach (behind TLS or a proxy; --public-url overrides)"
    )
    token_env: str = Field(
        default="FLOWCAT_API_TOKEN",
        description="environment variable holding the API token (required off loopback; enforced when set)",
    )


class FlowcatConfig(_Strict):
    """A configuration file."""

    version: Literal[1] = Field(default=1, description="format version")
    server: ServerConfig = Field(default=ServerConfig(), description="where and how the server listens")
    agents: dict[str, AgentConfig] = Field(
        min_length=1, description="agents by name (lower-case letters, digits, '-', '_'; part of URLs)"
    )
