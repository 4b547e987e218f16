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
    "ContextRelayConfig",
    "FlowcatConfig",
    "GraphBrainConfig",
    "LLMBrainConfig",
    "ProviderConfig",
    "RealtimeTopology",
    "RemoteBrainConfig",
    "SIPConfig",
    "SIPRegistrarConfig",
    "SIPSessionTimersConfig",
    "ServerConfig",
    "ToolConfig",
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


class ContextRelayConfig(_Strict):
    """ContextRelay (``docs/context-relay.md``): reseed a long realtime call's session with a text
    digest when a trigger fires; the caller's audio keeps flowing while it happens."""

    max_context_tokens: int = Field(default=4000, ge=1, description="budget trigger: input tokens of one response")
    min_turns_between: int = Field(default=2, ge=0, description="anti-thrash floor of the budget and turn triggers")
    max_session_secs: float | None = Field(default=None, gt=0, description="session-age trigger (None: off)")
    trigger_after_turns: int | None = Field(default=None, ge=1, description="turn-count trigger (None: off)")
    keep_recent_turns: int = Field(default=4, ge=0, description="turns kept verbatim after the summary")
    summarizer: Literal["auto", "verbatim"] | ProviderConfig = Field(
        default="auto",
        description="who folds older turns into the rolling summary: 'auto' (the LLM provider of the realtime "
        "provider's name, else one sharing its key variable, e.g. gemini -> google; else verbatim), 'verbatim' "
        "(no summary: the transcript itself) or an LLM provider",
    )
    summary_max_words: int = Field(default=120, ge=10, description="the length the summarizer is asked for")


class RealtimeTopology(_Strict):
    """One speech-to-speech model: it hears, thinks and speaks (the ``llm`` brain's
    ``system_prompt`` is its instructions, its ``tools`` its tools)."""

    mode: Literal["realtime"]
    provider: str = Field(description="realtime provider name from docs/providers.md, e.g. 'openai', 'gemini'")
    model: str | None = Field(default=None, description="model name; the provider's default when omitted")
    voice: str | None = Field(default=None, description="the model's voice")
    options: dict[str, Any] = Field(default_factory=dict, description="service parameters or settings by name")
    turns: Literal["server", "local"] = Field(
        default="server",
        description="who detects the caller's turns: the provider (server VAD) or flowcat (the agent's vad "
        "and turns settings)",
    )
    context_relay: ContextRelayConfig | None = Field(
        default=None, description="ContextRelay (off when omitted); {} turns it on with the defaults"
    )


def _mode(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("mode", "cascaded"))
    return str(getattr(value, "mode", "cascaded"))


TopologyConfig = Annotated[
    Annotated[CascadedTopology, Tag("cascaded")] | Annotated[RealtimeTopology, Tag("realtime")],
    Discriminator(_mode),
]
"""``mode: cascaded`` (the default when ``mode`` is left out) or ``mode: realtime``."""


class ToolConfig(_Strict):
    """A tool the model may call: a direct function ``async def fn(params, arg: type, ...)``
    (its schema from the signature and docstring, as ``register_direct_function`` builds it)."""

    function: str = Field(description="'package.module:function', or 'file.py:function' relative to the config file")
    name: str | None = Field(default=None, description="the tool's name (default: the function's)")
    cancel_on_interruption: bool = True
    timeout_secs: float | None = Field(default=None, gt=0)


class LLMBrainConfig(_Strict):
    """A plain LLM conversation: a system prompt, the context, the LLM's tools (the cascade's LLM,
    or the realtime model)."""

    kind: Literal["llm"]
    system_prompt: str = "You are a helpful voice assistant. Keep answers short and speakable."
    tools: list[ToolConfig] = Field(default_factory=list, description="tools the model may call")


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


class SIPRegistrarConfig(_Strict):
    """A registrar (a SIP trunk) to bind this server's SIP address at, kept fresh until shutdown.

    Credentials are never written in the file: they are read from the environment variables named
    here (``username_env``, ``password_env``)."""

    address: str = Field(description="registrar 'host:port' (port 5060 when left out)")
    user: str = Field(description="the user part of the registered address of record (the number)")
    domain: str | None = Field(
        default=None, description="domain of the address of record (default: the registrar host)"
    )
    username_env: str | None = Field(
        default=None, description="environment variable holding the digest username (default: user)"
    )
    password_env: str | None = Field(
        default=None, description="environment variable holding the digest password (none: no authentication)"
    )
    expires: int = Field(default=3600, ge=60, description="requested binding lifetime in seconds")


class SIPSessionTimersConfig(_Strict):
    """RFC 4028 session timers: a call whose peer stopped refreshing the session is hung up."""

    enabled: bool = Field(default=True, description="offer and honour Session-Expires")
    session_expires: int = Field(
        default=1800, ge=1, description="interval asked for when the caller asks none (s)"
    )
    min_se: int = Field(
        default=90,
        ge=1,
        description="shortest interval accepted (s); shorter asks get 422 (RFC 4028: at least 90)",
    )
    refresh_method: Literal["UPDATE", "INVITE"] = Field(
        default="UPDATE", description="how this side refreshes when it is the refresher"
    )


class SIPConfig(_Strict):
    """The native SIP endpoint (UDP, G.711, RFC 4733): ``flowcat serve`` answers SIP calls itself.

    Each call goes to the agent its dialled number (Request-URI user, else To user) routes to,
    else to ``default_agent``; a number with no agent is answered ``404``. With several
    workers, worker ``i`` listens on ``port + i`` and takes the ``i``-th slice of ``rtp_ports``."""

    host: str | None = Field(default=None, description="bind address of SIP and RTP (default: server.host)")
    port: int = Field(
        default=5060, ge=0, le=65535, description="UDP port of SIP (--sip-port overrides; 0: any)"
    )
    public_address: str | None = Field(
        default=None, description="address put in Contact, Via and SDP (the NAT's public one); default: host"
    )
    rtp_ports: tuple[int, int] = Field(
        default=(10000, 20000), description="[first, last] RTP port range; each call takes one even port"
    )
    codecs: list[Literal["PCMU", "PCMA"]] = Field(
        default=["PCMU", "PCMA"], description="codecs answered (the caller's order wins)"
    )
    ring_secs: float = Field(default=0.0, ge=0.0, description="seconds a call rings (180) before the 200 OK")
    inband_dtmf: bool = Field(default=False, description="also detect DTMF tones in the caller's audio")
    routes: dict[str, str] = Field(default_factory=dict, description="dialled number or user -> agent name")
    default_agent: str | None = Field(default=None, description="agent of calls no route matches (none: 404)")
    headers: list[str] = Field(
        default_factory=list,
        description="INVITE headers passed to the brain with From, To and Call-ID (e.g. X-Customer-Id)",
    )
    refer: Literal["decline", "event"] = Field(
        default="decline",
        description="an inbound REFER (the peer asks this side to transfer): decline (603), or event "
        "(202, then the transport's on_refer handler decides the outcome reported by NOTIFY)",
    )
    registrar: SIPRegistrarConfig | None = Field(default=None, description="register at a trunk")
    session_timers: SIPSessionTimersConfig = Field(
        default=SIPSessionTimersConfig(), description="RFC 4028 session timers"
    )


class FlowcatConfig(_Strict):
    """A configuration file."""

    version: Literal[1] = Field(default=1, description="format version")
    server: ServerConfig = Field(default=ServerConfig(), description="where and how the server listens")
    sip: SIPConfig | None = Field(default=None, description="answer SIP calls natively (docs/sip.md)")
    agents: dict[str, AgentConfig] = Field(
        min_length=1, description="agents by name (lower-case letters, digits, '-', '_'; part of URLs)"
    )
