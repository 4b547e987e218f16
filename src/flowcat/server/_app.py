"""The aiohttp application: health, readiness, raw and protobuf media, carrier media, answer and event webhooks.

Where a carrier authenticates its requests (and ``ServerConfig.verify_signatures``),
the answer and event webhooks and the media upgrade are checked first; a failed
check is refused with the carrier's status (401 for key/token carriers such as
Genesys and Vonage, 403 for request signatures such as Twilio's) and logged.
Carriers that sign a URL are checked against the URL they called: the public URL
(``ServerConfig.public_url``) or, with ``trusted_proxies``, the forwarded headers
(:mod:`._public_url`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..errors import ConfigError
from ..runtime import CollectorPolicy, FrameProcessor, Pipeline, PipelineParams
from ._admission import Admission, default_capacity
from ._agents import Agent, Agents
from ._apps import AppFactory, CallInfo, default_app, is_after_output
from ._carriers import CarrierError, carrier_names, get_carrier, raw_serializer
from ._logging import new_call_id
from ._metrics import ServerMetrics
from ._public_url import configured_public_url, forwarded_origin, signed_url
from ._security import Security, security_middleware
from ._session import CURRENT_CALL, AiohttpSocket, CallRecord, CallSocket, serve_call
from ._webrtc_routes import add_webrtc_routes

__all__ = ["ServerConfig", "ServerState", "create_app", "drain"]

logger = logging.getLogger("flowcat.server")

STATE_KEY: web.AppKey[ServerState] = web.AppKey("flowcat_state")


@dataclass
class ServerConfig:
    """Settings of one worker."""

    capacity: int = field(default_factory=default_capacity)
    app: AppFactory = default_app
    audio_in_sample_rate: int = 16000
    audio_out_sample_rate: int = 24000
    public_url: str | None = None
    """Public base URL (``FLOWCAT_PUBLIC_URL``) from which stream URLs are built, and
    against which carrier signatures over a URL are checked (:mod:`._public_url`)."""
    trusted_proxies: int = 0
    """How many reverse proxies in front of the server set ``X-Forwarded-Proto``/
    ``-Host``/``-Port`` (``--trust-proxy [N]``). 0 (default): those headers are ignored.
    Without a public URL, the trusted headers give the URL carriers signed."""
    verify_signatures: bool = True
    """Check carrier signatures where the carrier signs and a secret is configured."""
    worker_id: int = 0
    idle_timeout_secs: float | None = 300.0
    ws_heartbeat: float | None = None
    max_msg_size: int = 1 << 20
    media_port: int | None = None
    """Port of the media WebSockets when another engine serves them (``--engine picows``):
    stream URLs built from the webhook request's host use it instead of the request's port."""
    agents: Agents = field(default_factory=Agents)
    """Agents served by name (``flowcat serve AGENTS.yaml``): ``/telephony/{carrier}/{agent}/…``
    and ``/protobuf/{agent}/ws``. Without ``app``, the default (first) agent also answers the
    unprefixed routes."""
    security: Security = field(default_factory=Security)
    """API token, call-rate limit, body size limit, CORS (:mod:`._security`)."""
    goodbye: str | None = "Sorry, we have to end the call now. Goodbye."
    """What a call still running at the end of a drain is told before it is ended (None: cut)."""
    use_default_agent: bool = False
    """The unprefixed routes serve ``agents.default`` instead of ``app``."""
    turn_metrics: bool = False
    """Attach the per-stage turn-latency observer to config agents' calls (``--turn-metrics``;
    it costs the call its inline hops: about 12 µs more per hop per frame)."""


class ServerState:
    """Per-worker state: admission counters and the running calls."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.admission = Admission(capacity=config.capacity)
        self.calls: set[asyncio.Task[Any]] = set()
        self.records: dict[asyncio.Task[Any], CallRecord] = {}
        self.finished_calls = 0
        self.warming = False
        """Set while the worker loads models (``/readyz`` answers 503 "warming up")."""
        self.metrics = ServerMetrics()
        self.collector: CollectorPolicy | None = None
        """The worker's collector policy (set by the worker): told when no call is live."""

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "draining" if self.admission.draining else "ok"}
        out["worker"] = self.config.worker_id
        out["pid"] = os.getpid()
        out.update(self.admission.snapshot())
        dog = self.metrics.watchdog
        out["loop_stalls"] = {"count": dog.stalls, "worst_ms": round(dog.worst_secs * 1e3, 1)}
        collector = self.collector
        if collector is not None:
            st = collector.stats
            out["gc"] = {
                "worst_pause_ms": [round(ms, 2) for ms in st.worst_pause_ms],
                "collections": list(st.collections),
                "frozen": gc.get_freeze_count(),
                "deep_collections": st.deep_collections,
                "leaked": st.leaked,
            }
        return out


def _params(cfg: ServerConfig, in_rate: int | None = None, out_rate: int | None = None) -> PipelineParams:
    return PipelineParams(
        audio_in_sample_rate=in_rate or cfg.audio_in_sample_rate,
        audio_out_sample_rate=out_rate or cfg.audio_out_sample_rate,
    )


def user_processors(cfg: ServerConfig, call: CallInfo, app: AppFactory | None = None) -> list[FrameProcessor]:
    """The app's processors for ``call`` (``app``, default the configured one; a single
    processor becomes a list); every transport's server builds its pipeline around them."""
    built = (app or cfg.app)(call)
    if isinstance(built, FrameProcessor):
        return [built]
    procs = list(built)
    if len(procs) > 1 and not all(isinstance(p, FrameProcessor) for p in procs):
        raise ConfigError("the app factory must return processors")
    tail = [p for p in procs if is_after_output(p)]  # stay marked: serve_call puts them after the output
    head = [p for p in procs if not is_after_output(p)]
    return (head if len(head) <= 1 else [Pipeline(head)]) + tail


def agent_of(state: ServerState, request: Any, transport: str) -> Agent | None:
    """The agent a request is for: the route's ``{agent}`` (404 if unknown or not reachable by
    ``transport``), else the default agent where the unprefixed routes serve it, else None."""
    cfg = state.config
    name = request.match_info.get("agent") if hasattr(request, "match_info") else getattr(request, "agent", None)
    if name is not None:
        return cfg.agents.require(name, transport)
    return cfg.agents.default if cfg.use_default_agent else None


def _app_of(cfg: ServerConfig, agent: Agent | None) -> AppFactory:
    return agent.app if agent is not None else cfg.app


def _public_base(request: web.Request, cfg: ServerConfig) -> str:
    base = configured_public_url(cfg.public_url) or forwarded_origin(
        request.headers, cfg.trusted_proxies, scheme=request.scheme, host=request.host
    )
    if not base:
        host = request.host
        if cfg.media_port:
            name = request.url.raw_host or "localhost"
            host = f"[{name}]:{cfg.media_port}" if ":" in name else f"{name}:{cfg.media_port}"
        base = f"{request.scheme}://{host}"
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    return base


def _signed_url(request: Any, cfg: ServerConfig) -> str:
    """The URL the carrier called (public URL or trusted forwarded headers; see :mod:`._public_url`)."""
    return signed_url(request, public_url=cfg.public_url, trusted_proxies=cfg.trusted_proxies)


def busy_payload(state: ServerState, agent: Agent | None = None) -> dict[str, Any]:
    """The JSON body of a 503 refusal (at capacity or draining)."""
    adm = state.admission
    if agent is not None and not adm.draining and adm.has_room():
        return {"error": "at capacity", "agent": agent.name, **agent.admission.snapshot()}
    return {"error": "at capacity" if not adm.draining else "draining", **adm.snapshot()}


RETRY_AFTER = {"Retry-After": "1"}
"""Headers of a 503 refusal."""


def _busy(state: ServerState, agent: Agent | None = None) -> web.Response:
    return web.json_response(busy_payload(state, agent), status=503, headers=RETRY_AFTER)


def admit(state: ServerState, agent: Agent | None) -> bool:
    """Take a slot for a new call in the worker and in its agent (False: refused, counted)."""
    if not state.admission.try_admit():
        state.metrics.call_rejected(agent.name if agent else "default",
                                    "draining" if state.admission.draining else "capacity")
        return False
    if agent is not None and not agent.admission.try_admit():
        state.admission.undo_admit()
        state.metrics.call_rejected(agent.name, "capacity")
        return False
    return True


def has_room(state: ServerState, agent: Agent | None) -> bool:
    """Whether a new call for ``agent`` would be admitted now (without taking a slot)."""
    return state.admission.has_room() and (agent is None or agent.admission.has_room())


async def track(
    state: ServerState, coro: Any, *, agent: Agent | None = None, transport: str = "raw"
) -> None:
    """Run an admitted call in the current task: counted in ``state.calls`` (and its agent's
    admission), its slot released at the end; its log lines carry a call id."""
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - invariant (type narrowing), not input validation
    name = agent.name if agent is not None else "default"
    record = CallRecord(agent=name, transport=transport, call_id=new_call_id())
    metrics = state.metrics
    if metrics.enabled:
        observer = metrics.observer(name) if agent is not None and state.config.turn_metrics else None
        if observer is not None:
            record.observers.append(observer)

        async def on_error(_task: Any, frame: Any) -> None:
            await metrics.on_error(name, frame)

        record.on_error = on_error
    CURRENT_CALL.set(record)
    state.calls.add(task)
    state.records[task] = record
    state.metrics.call_started(name, transport)
    logger.debug("call started: agent %s, %s", name, transport)
    try:
        await coro
    finally:
        state.calls.discard(task)
        state.records.pop(task, None)
        state.admission.release()
        if agent is not None:
            agent.admission.release()
        state.finished_calls += 1
        state.metrics.call_ended(name, transport, record.task)
        # Whatever was created in the call's context keeps a copy of it (a pooled keep-alive
        # connection's transport, a handle): let it pin this small record, not the call.
        record.task, record.observers, record.on_error = None, [], None
        logger.debug("call ended")
        if not state.calls and state.collector is not None:
            state.collector.idle()  # nobody is on a call: a long collection is not heard


async def _raw_ws(request: web.Request) -> web.StreamResponse:
    """``/ws``: binary PCM (or any bytes) in, the pipeline's output audio back."""
    state = request.app[STATE_KEY]
    agent = agent_of(state, request, "raw")
    return await _serve_ws(state, request, lambda sock: raw_call(state, sock, request, agent), agent, "raw")


async def _serve_ws(
    state: ServerState,
    request: web.Request,
    call: Callable[[CallSocket], Awaitable[Any]],
    agent: Agent | None = None,
    transport: str = "raw",
) -> web.StreamResponse:
    """Admit and upgrade ``request``, then run ``call`` on its socket until the call ends (503 when full)."""
    ws = await _accept(state, request, agent)
    if ws is None:
        return _busy(state, agent)
    await track(state, call(AiohttpSocket(ws)), agent=agent, transport=transport)
    return ws


async def _accept(
    state: ServerState, request: web.Request, agent: Agent | None = None
) -> web.WebSocketResponse | None:
    """Admit the call and upgrade the connection (None: refused, answer 503).

    A request that is no WebSocket upgrade (a plain GET) is answered 400 before
    admission: it is no call, and the counters do not see it.
    """
    cfg = state.config
    ws = web.WebSocketResponse(max_msg_size=cfg.max_msg_size, heartbeat=cfg.ws_heartbeat)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="expected a WebSocket upgrade")
    if not admit(state, agent):
        return None
    try:
        await ws.prepare(request)
    except BaseException:
        state.admission.release()
        if agent is not None:
            agent.admission.release()
        raise
    return ws


async def raw_call(state: ServerState, sock: CallSocket, request: Any, agent: Agent | None = None) -> None:
    """A raw call (``/ws?sample_rate=…``) on an accepted socket of either engine."""
    cfg = state.config
    rate = _query_rate(request) or cfg.audio_in_sample_rate
    call = CallInfo(carrier="raw", remote=request.remote, path=request.path, query=dict(request.query))
    await serve_call(
        sock,
        raw_serializer(rate),
        user_processors(cfg, call, _app_of(cfg, agent)),
        params=_params(cfg, rate, rate),
        idle_timeout_secs=cfg.idle_timeout_secs,
    )


PROTOBUF_PATH = "/protobuf/ws"
"""Route of pipecat's protobuf clients (``WebsocketClientTransport`` with ``ProtobufFrameSerializer``)."""
PROTOBUF_AGENT_PATH = "/protobuf/{agent}/ws"
"""The protobuf route of one agent."""


async def _protobuf_ws(request: web.Request) -> web.StreamResponse:
    """``/protobuf/ws``: pipecat's ``frames.proto`` messages both ways."""
    state = request.app[STATE_KEY]
    agent = agent_of(state, request, "protobuf")
    return await _serve_ws(
        state, request, lambda sock: protobuf_call(state, sock, request, agent), agent, "protobuf"
    )


async def protobuf_call(state: ServerState, sock: CallSocket, request: Any, agent: Agent | None = None) -> None:
    """A pipecat protobuf call (``/protobuf/ws?sample_rate=…``) on an accepted socket of either engine.

    The pipeline runs at ``sample_rate`` both ways when the query gives one, else at
    the server's rates; caller audio at another rate is resampled to the input rate.
    """
    from ..transports import ProtobufFrameSerializer

    cfg = state.config
    rate = _query_rate(request)
    call = CallInfo(carrier="protobuf", remote=request.remote, path=request.path, query=dict(request.query))
    await serve_call(
        sock,
        ProtobufFrameSerializer(),
        user_processors(cfg, call, _app_of(cfg, agent)),
        params=_params(cfg, rate, rate),
        idle_timeout_secs=cfg.idle_timeout_secs,
    )


def _query_rate(request: Any) -> int | None:
    """``?sample_rate=`` as an int (None when absent, empty or not a positive number)."""
    raw = request.query.get("sample_rate", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def _carrier_of(request: web.Request) -> Any:
    carrier = get_carrier(request.match_info["carrier"])
    if carrier is None:
        raise web.HTTPNotFound(text="unknown carrier")
    return carrier


async def _carrier_ws(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    cfg = state.config
    carrier = _carrier_of(request)
    agent = agent_of(state, request, carrier.name)
    if cfg.verify_signatures and not carrier.verify(
        request, b"", websocket=True, public_url=_signed_url(request, cfg)
    ):
        logger.warning(
            "%s: media upgrade %s from %s refused (%d): authentication failed",
            carrier.name,
            request.path,
            request.remote,
            carrier.refusal_status,
        )
        raise carrier.refusal("bad signature")
    return await _serve_ws(
        state, request, lambda sock: carrier_call(state, carrier, request, sock, agent), agent, carrier.name
    )


async def carrier_call(
    state: ServerState, carrier: Any, request: Any, sock: CallSocket, agent: Agent | None = None
) -> None:
    """A carrier call on an accepted socket of either engine: handshake, then the pipeline."""
    cfg = state.config
    try:
        opened = await asyncio.wait_for(carrier.open(sock, request), timeout=10.0)
    except (TimeoutError, CarrierError) as exc:
        logger.warning("%s: handshake failed: %s", carrier.name, exc)
        await sock.close(code=1008)
        return
    if opened is None:  # socket closed during the handshake
        return
    call = opened.call
    await serve_call(
        sock,
        opened.serializer,
        user_processors(cfg, call, _app_of(cfg, agent)),
        params=_params(cfg, opened.in_rate, opened.out_rate),
        idle_timeout_secs=cfg.idle_timeout_secs,
    )


async def _checked(request: web.Request, what: str) -> tuple[Any, bytes]:
    """The route's carrier and the request body, after its signature check (404 / refusal)."""
    cfg = request.app[STATE_KEY].config
    carrier = _carrier_of(request)
    body = await request.read()
    if cfg.verify_signatures and not carrier.verify(request, body, public_url=_signed_url(request, cfg)):
        logger.warning("%s: %s webhook signature check failed (%s)", carrier.name, what, request.remote)
        raise carrier.refusal("bad signature")
    return carrier, body


async def _answer(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    cfg = state.config
    agent = agent_of(state, request, _carrier_of(request).name)
    carrier, body = await _checked(request, "answer")
    if not has_room(state, agent):
        if agent is not None and state.admission.has_room():
            agent.admission.rejected += 1
        state.admission.rejected += 1
        state.metrics.call_rejected(agent.name if agent else "default",
                                    "draining" if state.admission.draining else "capacity")
        return carrier.reject(request) or _busy(state, agent)
    if "agent" in request.match_info and agent is not None:
        stream_url = f"{_public_base(request, cfg)}{TELEPHONY}/{carrier.name}/{agent.name}/ws"
    else:
        stream_url = f"{_public_base(request, cfg)}/{carrier.name}/ws"
    return await carrier.answer(request, body, stream_url)


async def _event(request: web.Request) -> web.StreamResponse:
    """``/{carrier}/event``: a call event / status callback, checked like the answer webhook."""
    state = request.app[STATE_KEY]
    agent_of(state, request, _carrier_of(request).name)
    carrier, body = await _checked(request, "event")
    return carrier.event(request, body)


TELEPHONY = "/telephony"
"""Prefix of the per-agent carrier routes: ``/telephony/{carrier}/{agent}/ws|answer|event``."""


def create_app(config: ServerConfig | None = None, *, state: ServerState | None = None) -> web.Application:
    """The worker's aiohttp application (``state``: share admission with another engine's server)."""
    from ._ops import add_ops_routes

    cfg = config or ServerConfig()
    sec = cfg.security
    app = web.Application(middlewares=[security_middleware(sec)], client_max_size=sec.max_body)
    state = state or ServerState(cfg)
    app[STATE_KEY] = state
    add_ops_routes(app)
    app.router.add_get("/ws", _raw_ws)
    app.router.add_get(PROTOBUF_PATH, _protobuf_ws)
    app.router.add_get(PROTOBUF_AGENT_PATH, _protobuf_ws)
    app.router.add_get(TELEPHONY + "/{carrier}/{agent}/ws", _carrier_ws)
    app.router.add_route("*", TELEPHONY + "/{carrier}/{agent}/answer", _answer)
    app.router.add_route("*", TELEPHONY + "/{carrier}/{agent}/event", _event)
    app.router.add_get("/{carrier}/ws", _carrier_ws)
    app.router.add_route("*", "/{carrier}/answer", _answer)
    app.router.add_route("*", "/{carrier}/event", _event)
    add_webrtc_routes(app, state)  # the playground: GET /, /api/offer, /api/events/{pc_id}
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    logger.debug("carriers: %s", ", ".join(carrier_names()))
    return app


async def drain(app: web.Application, grace: float, *, goodbye: str | None = None) -> int:
    """Stop admitting, wait up to ``grace`` s for calls to end, then end the rest (with
    ``goodbye`` spoken first when given). Returns how many had to be ended."""
    return await drain_state(app[STATE_KEY], grace, goodbye=goodbye)


async def drain_state(
    state: ServerState, grace: float, *, goodbye: str | None = None, end_grace: float = 5.0
) -> int:
    """:func:`drain` for a worker's state (whatever engine serves it).

    Calls still running after ``grace`` get ``TTSSpeakFrame(goodbye)`` and an ``EndFrame``
    (the output transport plays what was queued, then closes the socket) and up to
    ``end_grace`` s to finish; whatever is left then is cancelled.
    """
    from ..frames import EndFrame, TTSSpeakFrame

    state.admission.draining = True
    if state.calls and grace > 0:
        await asyncio.wait(list(state.calls), timeout=grace)
    left = [t for t in state.calls if not t.done()]
    if left and goodbye:
        ending = []
        for t in left:
            record = state.records.get(t)
            if record is not None and record.task is not None:
                await record.task.queue_frames([TTSSpeakFrame(goodbye), EndFrame()])
                ending.append(t)
        if ending:
            logger.info("drain: ending %d calls with a goodbye", len(ending))
            await asyncio.wait(ending, timeout=end_grace)
    left = [t for t in left if not t.done()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=5.0)
    return len(left)


async def _on_startup(app: web.Application) -> None:
    app[STATE_KEY].metrics.start_probe()


async def _on_shutdown(app: web.Application) -> None:
    await drain(app, 0.0)
    await app[STATE_KEY].metrics.stop_probe()
