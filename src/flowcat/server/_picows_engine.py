"""The picows engine of ``flowcat serve --engine picows``: the media path on a C WebSocket.

One picows server (``ws_create_server``) on the worker's ``--port`` answers:

* ``GET /healthz`` and ``/readyz``: the aiohttp app's JSON, as a plain (non-101)
  HTTP response;
* ``/ws?sample_rate=…``: raw PCM calls; ``/protobuf/ws``: pipecat protobuf calls;
  ``/{carrier}/ws``: carrier calls, after the carrier's signature check on the upgrade
  (where the carrier signs it).

Admission is the worker's :class:`~flowcat.server.ServerState`, shared with the
aiohttp app that serves the answer webhooks (and everything else) on
``--http-port``: over capacity or draining, the upgrade is refused with 503 and
``Retry-After``. An admitted call runs in one task, exactly as on aiohttp
(:func:`~flowcat.server._calls.raw_call`, :func:`~flowcat.server._calls.protobuf_call` or
:func:`~flowcat.server._calls.carrier_call` over a :class:`PicowsSocket`): the same handshake, app factory, pipeline
parameters and idle timeout; its slot is released when the call ends.

Importing this module needs picows (``flowcat[picows]``); the worker imports it
only for ``--engine picows``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

import picows
from aiohttp import web

from ..transports import PicowsListener, PicowsTransport
from ._agents import Agent
from ._app import PROTOBUF_PATH, TELEPHONY
from ._calls import (
    RETRY_AFTER,
    admit,
    agent_of,
    busy_payload,
    carrier_call,
    has_room,
    protobuf_call,
    raw_call,
    track,
)
from ._carriers import get_carrier
from ._public_url import signed_url
from ._session import CallSocket
from ._state import ServerState

__all__ = ["CallListener", "PicowsSocket", "Router", "UpgradeRequest", "serve_picows"]

logger = logging.getLogger("flowcat.server")

_JSON = {"Content-Type": "application/json"}


class UpgradeRequest:
    """The parts of an upgrade request the server uses, in aiohttp's spelling.

    ``url`` (a ``yarl.URL``: ``http(s)://<Host><path>``), ``headers`` (case-insensitive),
    ``path``, ``query``, ``raw_path`` (the request target exactly as received, which
    signatures cover), ``secure`` (it came over TLS) and ``remote`` (set once the
    connection is accepted).
    """

    __slots__ = ("agent", "headers", "path", "query", "raw_path", "remote", "secure", "url")

    def __init__(self, raw_path: str, headers: Any, *, secure: bool = False) -> None:
        from yarl import URL

        self.headers = headers
        self.raw_path = raw_path
        self.secure = secure
        path, _, qs = raw_path.partition("?")
        self.path = path
        self.query = dict(parse_qsl(qs, keep_blank_values=True))
        scheme = "https" if secure else "http"
        self.url = URL(f"{scheme}://{headers.get('Host', 'localhost')}{raw_path}")
        self.remote: str | None = None
        self.agent: str | None = None


def _token_ok(req: UpgradeRequest, token: str) -> bool:
    import hmac

    auth = req.headers.get("Authorization", "") or ""
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else req.query.get("token")
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class PicowsSocket(CallSocket):
    """A :class:`~flowcat.transports.PicowsListener` as the server's :class:`CallSocket`."""

    def __init__(self, listener: PicowsListener) -> None:
        self.listener = listener

    @property
    def closed(self) -> bool:
        return not self.listener.writable

    async def receive(self) -> str | bytes | None:
        return await self.listener.receive()

    async def send(self, message: str | bytes) -> None:
        self.listener.send(message)

    async def close(self, code: int = 1000) -> None:
        self.listener.close(code)

    def transport(self, params: Any) -> Any:
        return PicowsTransport(self.listener, params)


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode()
    hdrs = {**_JSON, **(headers or {})}
    if status == 200:
        resp = picows.WSUpgradeResponse.create_ok_response(data, hdrs)
    else:
        resp = picows.WSUpgradeResponse.create_error_response(status, data, hdrs)
    return picows.WSUpgradeResponseWithListener(resp, None)


def _text_response(status: int, text: str) -> Any:
    resp = picows.WSUpgradeResponse.create_error_response(status, text.encode())
    return picows.WSUpgradeResponseWithListener(resp, None)


class CallListener(PicowsListener):
    """One admitted call: its task starts when the upgrade completed."""

    def __init__(
        self,
        state: ServerState,
        request: UpgradeRequest,
        carrier: Any,
        *,
        protobuf: bool = False,
        agent: Agent | None = None,
    ) -> None:
        super().__init__(max_msg_size=state.config.max_msg_size)
        self.state = state
        self.request = request
        self.carrier = carrier
        self.protobuf = protobuf
        self.agent = agent

    def on_ws_connected(self, transport: Any) -> None:
        super().on_ws_connected(transport)
        state = self.state
        agent = self.agent
        if not admit(state, agent):  # cannot happen between the router's check and here
            transport.send_close(picows.WSCloseCode.TRY_AGAIN_LATER)
            transport.disconnect()
            return
        peer = transport.underlying_transport.get_extra_info("peername")
        self.request.remote = peer[0] if peer else None
        sock = PicowsSocket(self)
        if self.protobuf:
            call = protobuf_call(state, sock, self.request, agent)
            kind = "protobuf"
        elif self.carrier is None:
            call = raw_call(state, sock, self.request, agent)
            kind = "raw"
        else:
            call = carrier_call(state, self.carrier, self.request, sock, agent)
            kind = self.carrier.name
        asyncio.get_running_loop().create_task(self._serve(call, kind))

    async def _serve(self, call: Any, kind: str) -> None:
        code = 1011
        try:
            await track(self.state, call, agent=self.agent, transport=kind)
            code = 1000
        except asyncio.CancelledError:
            code = 1001
            raise
        except Exception:
            logger.exception("call on %s failed", self.request.path)
        finally:
            self.close(code)  # nothing to do when the call closed the socket itself


class Router:
    """picows' listener factory: routes one upgrade request (health, raw, protobuf, carrier, else 404).

    ``secure``: the server listens with TLS (upgrade requests report it to signature checks).
    """

    def __init__(self, state: ServerState, *, secure: bool = False) -> None:
        self.state = state
        self.secure = secure

    def __call__(self, request: Any) -> Any:
        state = self.state
        raw_path = request.path.decode("latin-1")
        path = raw_path.partition("?")[0]
        if path == "/healthz":
            return _json_response(200, state.health())
        if path == "/readyz":
            from ._ops import readiness

            ready, body = readiness(state)
            return _json_response(200 if ready else 503, body)
        carrier = None
        agent_name: str | None = None
        protobuf = path == PROTOBUF_PATH
        parts = path.split("/")
        if path.startswith(TELEPHONY + "/") and len(parts) == 5 and parts[4] == "ws":
            carrier = get_carrier(parts[2])  # /telephony/{carrier}/{agent}/ws
            agent_name = parts[3]
            if carrier is None:
                return _text_response(404, "unknown carrier")
        elif len(parts) == 4 and parts[1] == "protobuf" and parts[3] == "ws":
            protobuf, agent_name = True, parts[2]
        elif path != "/ws" and not protobuf:
            if len(parts) != 3 or parts[0] or parts[2] != "ws":
                return None  # picows answers 404
            carrier = get_carrier(parts[1])
            if carrier is None:
                return _text_response(404, "unknown carrier")
        req = UpgradeRequest(raw_path, request.headers, secure=self.secure)
        req.agent = agent_name
        cfg = state.config
        if carrier is None and cfg.security.token and not _token_ok(req, cfg.security.token):
            logger.warning("refused upgrade %s: missing or wrong API token", path)
            return _text_response(401, "missing or wrong API token")
        kind = carrier.name if carrier is not None else ("protobuf" if protobuf else "raw")
        try:
            agent = agent_of(state, req, kind)
        except web.HTTPNotFound as exc:  # unknown agent, or a transport it does not list
            return _text_response(404, exc.text or "not found")
        if (
            carrier is not None
            and cfg.verify_signatures
            and not carrier.verify(
                req,
                b"",
                websocket=True,
                public_url=signed_url(req, public_url=cfg.public_url, trusted_proxies=cfg.trusted_proxies),
            )
        ):
            logger.warning(
                "%s: media upgrade %s refused (%d): authentication failed",
                carrier.name,
                path,
                carrier.refusal_status,
            )
            return _text_response(carrier.refusal_status, "bad signature")
        if not has_room(state, agent):
            state.admission.rejected += 1
            return _json_response(503, busy_payload(state, agent), RETRY_AFTER)
        # The slot is taken once the upgrade completed (on_ws_connected runs right after this,
        # in the same callback), so a request that fails picows' upgrade checks holds none.
        return CallListener(state, req, carrier, protobuf=protobuf, agent=agent)


async def serve_picows(state: ServerState, host: str, port: int, **kwargs: Any) -> asyncio.Server:
    """Serve the media routes of ``state``'s worker with picows on ``host:port``.

    ``kwargs`` go to ``loop.create_server`` (``reuse_port=True``, ``backlog``, ``sock``;
    with ``ssl``, upgrade requests are marked ``secure`` for the signature checks).
    Closing the returned server stops accepting; calls in progress go on.
    """
    cfg = state.config
    hb = cfg.ws_heartbeat
    server: asyncio.Server = await picows.ws_create_server(
        Router(state, secure=kwargs.get("ssl") is not None),
        host,
        port,
        max_frame_size=cfg.max_msg_size,
        enable_auto_pong=True,
        enable_auto_ping=bool(hb),
        auto_ping_idle_timeout=hb or 20.0,
        auto_ping_reply_timeout=hb or 20.0,
        **kwargs,
    )
    return server
