"""The browser playground and its WebRTC calls (``flowcat[webrtc]``).

Routes (see ``docs/server.md``):

* ``GET /`` and ``GET /playground/{file}``: the playground page (plain HTML, CSS and JS
  shipped in the package; nothing from another origin);
* ``GET /api/agents``: ``{"agents": [names], "default": name}``;
* ``POST /api/offer``: ``{"sdp", "type": "offer", "agent"?}`` → ``{"sdp", "type": "answer",
  "pc_id"}``. The call is admitted like any other (503 when full), its peer connection
  answered with ICE gathered (non-trickle), and its pipeline started: the server's app
  (``ServerConfig.app``, or the named agent) between a :class:`~flowcat.transports.WebRTCTransport`'s
  input and output. 400: not JSON, no SDP, not an offer, an SDP aiortc refuses; 404: unknown
  agent; 413: body over 64 KiB; 501: ``flowcat[webrtc]`` not installed;
* ``GET /api/events/{pc_id}``: a WebSocket of the call's events, JSON
  ``{"type", "data", "ts"}`` (:mod:`._webrtc_events`): every event since the call
  started, then each new one, ``call-ended`` last. 404: unknown id (calls are forgotten
  60 s after they end).

ICE host candidates only; ``FLOWCAT_WEBRTC_HOST_IPS`` (comma-separated) pins the
addresses gathered, e.g. ``127.0.0.1`` for a loopback-only server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..errors import ProtocolError
from ..runtime import Pipeline, PipelineParams, PipelineTask, TurnLatencyObserver
from ._apps import AppFactory, CallInfo, is_after_output
from ._webrtc_events import CallEvents, EventsObserver, latency_event

if TYPE_CHECKING:
    from ._agents import Agent
    from ._state import ServerState

__all__ = ["MAX_OFFER_BYTES", "WEBRTC_KEY", "WebRTCCalls", "add_webrtc_routes", "playground_dir"]

logger = logging.getLogger("flowcat.server.webrtc")

MAX_OFFER_BYTES = 64 * 1024
"""Largest ``/api/offer`` body accepted (an offer with candidates is a few KiB)."""
DEFAULT_AGENT = "default"
HOST_IPS_ENV = "FLOWCAT_WEBRTC_HOST_IPS"
_FORGET_AFTER = 60.0  # seconds a finished call's events stay readable
_CONNECT_TIMEOUT = 30.0  # seconds for ICE and DTLS to come up
_END_GRACE = 5.0


def playground_dir() -> Path:
    """Where the playground's files are (package data of ``flowcat.server``)."""
    return Path(str(resources.files("flowcat.server") / "playground"))


class _Call:
    __slots__ = ("events", "task", "transport")

    def __init__(self, events: CallEvents) -> None:
        self.events = events
        self.transport: Any = None
        self.task: asyncio.Task[None] | None = None


class WebRTCCalls:
    """The worker's playground calls, by ``pc_id``.

    Attributes:
        host_ips: ICE host addresses to gather on (None: every interface but loopback);
            from ``FLOWCAT_WEBRTC_HOST_IPS`` by default.
        agents: Named app factories; empty: the one default agent, ``ServerConfig.app``.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        raw = os.environ.get(HOST_IPS_ENV, "")
        self.host_ips: list[str] | None = [a.strip() for a in raw.split(",") if a.strip()] or None
        self.agents: dict[str, AppFactory] = {
            a.name: a.app for a in state.config.agents if "webrtc" in a.transports
        }  # the configuration file's agents reachable by WebRTC
        self.calls: dict[str, _Call] = {}

    def agent_names(self) -> list[str]:
        return list(self.agents) or [DEFAULT_AGENT]

    def factory(self, name: str | None) -> AppFactory | None:
        if not self.agents:
            return self.state.config.app if name in (None, "", DEFAULT_AGENT) else None
        if not name:
            return next(iter(self.agents.values()))
        return self.agents.get(name)


WEBRTC_KEY: web.AppKey[WebRTCCalls] = web.AppKey("flowcat_webrtc", WebRTCCalls)


def add_webrtc_routes(app: web.Application, state: ServerState) -> None:
    """Serve the playground, ``/api/agents``, ``/api/offer`` and ``/api/events/{pc_id}`` on ``app``."""
    app[WEBRTC_KEY] = WebRTCCalls(state)
    app.router.add_get("/", _index)
    app.router.add_get("/playground/{name}", _static)
    app.router.add_get("/api/agents", _agents)
    app.router.add_post("/api/offer", _offer)
    app.router.add_get("/api/events/{pc_id}", _events)


_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(playground_dir() / "index.html", headers={"Cache-Control": "no-cache"})


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = playground_dir() / name
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        raise web.HTTPNotFound(text="no such file")
    return web.FileResponse(path, headers={"Content-Type": _TYPES[path.suffix], "Cache-Control": "no-cache"})


async def _agents(request: web.Request) -> web.Response:
    calls = request.app[WEBRTC_KEY]
    names = calls.agent_names()
    body: dict[str, Any] = {"agents": names, "default": names[0]}
    problems = calls.state.config.agents.problems
    if problems:  # configured agents left out at start-up, and why (behind the API token)
        body["not_served"] = dict(sorted(problems.items()))
    return web.json_response(body)


def _bad(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


async def _offer(request: web.Request) -> web.Response:
    calls = request.app[WEBRTC_KEY]
    state = calls.state
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        return _bad(413, f"offer body over {MAX_OFFER_BYTES} bytes")
    raw = await request.content.read(MAX_OFFER_BYTES + 1)
    if len(raw) > MAX_OFFER_BYTES:
        return _bad(413, f"offer body over {MAX_OFFER_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the interpreter's limit
        return _bad(400, "body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) or not body["sdp"].strip():
        return _bad(400, "expected {\"sdp\": \"...\", \"type\": \"offer\"}")
    if body.get("type", "offer") != "offer":
        return _bad(400, f"type must be 'offer', not {body.get('type')!r}")
    agent = body.get("agent")
    if agent is not None and not isinstance(agent, str):
        return _bad(400, "agent must be a string")
    factory = calls.factory(agent)
    if factory is None:
        return _bad(404, f"unknown agent {agent!r}; known: {', '.join(calls.agent_names())}")
    try:
        from ..transports._webrtc import WebRTCParams, WebRTCTransport, set_ice_host_addresses
    except ImportError as exc:
        return _bad(501, str(exc))
    from ._calls import admit, busy_payload

    # The configuration's agent (None with --app): its capacity, metrics and call ids apply as on a carrier route.
    served = state.config.agents.get(agent) if agent else state.config.agents.default
    if not admit(state, served):
        return web.json_response(busy_payload(state, served), status=503, headers={"Retry-After": "1"})

    def release() -> None:
        state.admission.release()
        if served is not None:
            served.admission.release()

    try:
        if calls.host_ips is not None:
            set_ice_host_addresses(calls.host_ips)
        pc_id = "pc-" + secrets.token_urlsafe(12)
        transport = WebRTCTransport(WebRTCParams(), name=f"webrtc-{pc_id}")
        try:
            answer = await transport.accept_offer(body["sdp"], "offer")
        except ProtocolError as exc:
            await transport.close()
            release()
            logger.info("webrtc: refused an offer from %s: %s", request.remote, exc)
            return _bad(400, str(exc))
        call = CallInfo(
            carrier="webrtc", codec="opus", sample_rate=48000, remote=request.remote,
            path=request.path, agent=agent or None, call_id=pc_id,
        )
        entry = calls.calls[pc_id] = _Call(CallEvents())
        entry.transport = transport
        loop = asyncio.get_running_loop()
        entry.task = loop.create_task(_run(calls, pc_id, entry, transport, factory, call, served), name=pc_id)
    except BaseException:
        release()
        raise
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "pc_id": pc_id})


async def _run(
    calls: WebRTCCalls, pc_id: str, entry: _Call, transport: Any, factory: AppFactory, info: CallInfo,
    agent: Agent | None = None,
) -> None:
    from ._calls import track

    state = calls.state
    await track(state, _call(calls, entry, transport, factory, info), agent=agent, transport="webrtc")
    asyncio.get_running_loop().call_later(_FORGET_AFTER, calls.calls.pop, pc_id, None)


async def _call(calls: WebRTCCalls, entry: _Call, transport: Any, factory: AppFactory, info: CallInfo) -> None:
    from ._calls import user_processors

    cfg = calls.state.config
    events = entry.events
    reason = "ended"
    runner: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    timer = loop.call_later(_CONNECT_TIMEOUT, _connect_timeout, transport)
    try:
        procs = user_processors(_with_app(cfg, factory), info)
        head = [p for p in procs if not is_after_output(p)]
        tail = [p for p in procs if is_after_output(p)]
        latency = TurnLatencyObserver(push_metrics=False)
        latency.add_event_handler("on_turn_latency", lambda _obs, rec: events.emit("turn-latency", latency_event(rec)))
        task = PipelineTask(
            Pipeline([transport.input(), *head, transport.output(), *tail]),
            params=PipelineParams(
                audio_in_sample_rate=cfg.audio_in_sample_rate, audio_out_sample_rate=cfg.audio_out_sample_rate
            ),
            idle_timeout_secs=cfg.idle_timeout_secs,
            observers=[EventsObserver(events), latency],
        )
        transport.add_event_handler("on_client_connected", lambda _t: timer.cancel())
        runner = loop.create_task(task.run(), name=f"{info.call_id}.task")
        closed = transport.closed_future()
        await asyncio.wait((runner, closed), return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            await asyncio.wait((runner,), timeout=_END_GRACE)
            if not runner.done():
                await task.cancel("peer connection closed")
                await asyncio.wait((runner,), timeout=_END_GRACE)
        if transport.peer_left:
            reason = "peer left"
    except Exception as exc:
        reason = f"error: {exc}"
        logger.exception("webrtc %s: the call failed", info.call_id)
    finally:
        timer.cancel()
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        await transport.close()
        events.emit("call-ended", {"reason": reason})
        entry.transport = None


def _connect_timeout(transport: Any) -> None:
    if transport.connection_state != "connected":
        logger.info("%s: no connection after %.0f s; closing", transport.name, _CONNECT_TIMEOUT)
        transport.close_soon()


def _with_app(cfg: Any, factory: AppFactory) -> Any:
    if factory is cfg.app:
        return cfg
    import dataclasses

    return dataclasses.replace(cfg, app=factory)


async def _events(request: web.Request) -> web.StreamResponse:
    calls = request.app[WEBRTC_KEY]
    entry = calls.calls.get(request.match_info["pc_id"])
    if entry is None:
        return _bad(404, "unknown pc_id")
    ws = web.WebSocketResponse(heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        return _bad(400, "expected a WebSocket upgrade")
    await ws.prepare(request)
    queue = entry.events.listen()
    pump = asyncio.get_running_loop().create_task(_pump(ws, queue))
    try:
        async for msg in ws:  # the page sends nothing; reading handles its close
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        entry.events.unlisten(queue)
        if not pump.done():
            pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    return ws


async def _pump(ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    while True:
        event = await queue.get()
        if event is None:
            break
        await ws.send_json(event)
    await ws.close()
