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

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._agents import Agent
from ._calls import (
    RETRY_AFTER,
    admit,
    agent_of,
    busy_payload,
    carrier_call,
    drain_state,
    has_room,
    protobuf_call,
    raw_call,
    track,
)
from ._carriers import carrier_names, get_carrier
from ._public_url import configured_public_url, forwarded_origin, signed_url
from ._security import security_middleware
from ._session import AiohttpSocket, CallSocket
from ._state import STATE_KEY, ServerConfig, ServerState
from ._webrtc_routes import add_webrtc_routes

__all__ = ["ServerConfig", "ServerState", "create_app", "drain"]

logger = logging.getLogger("flowcat.server")


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


def _busy(state: ServerState, agent: Agent | None = None) -> web.Response:
    return web.json_response(busy_payload(state, agent), status=503, headers=RETRY_AFTER)


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


async def _on_startup(app: web.Application) -> None:
    app[STATE_KEY].metrics.start_probe()


async def _on_shutdown(app: web.Application) -> None:
    await drain(app, 0.0)
    await app[STATE_KEY].metrics.stop_probe()
