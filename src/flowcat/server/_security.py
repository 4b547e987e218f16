"""The server's security model, as one aiohttp middleware.

* **Bind**: loopback by default. Off loopback an API token is required
  (:func:`bind_problem`; the server refuses to start without one).
* **Token**: when one is set (the environment variable named by ``server.token_env``,
  default ``FLOWCAT_API_TOKEN``), every route except the health probes and the carrier
  routes needs it: ``Authorization: Bearer <token>`` or ``?token=<token>``, compared in
  constant time; otherwise 401. Carrier routes (``/{carrier}/…``, ``/telephony/…``) keep
  their own signature checks. This covers the playground (``/``), ``/api/*``, the events
  endpoints, the raw ``/ws`` and protobuf routes and ``/metrics``.
* **Rate**: call creation (``POST /api/offer``, WebSocket upgrades of ``/ws`` and the
  protobuf routes) is limited per client IP by a token bucket: 429 with ``Retry-After``.
* **Size**: a request body over ``max_body`` bytes is refused with 413 (before it is
  read); WebSocket messages over ``max_msg_size`` close the socket with 1009.
* **CORS**: closed: no ``Access-Control-Allow-Origin`` unless the request's origin is one
  of ``cors_origins``.

Tokens are never logged: a refusal logs the path and the client address, not the query.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["RateLimiter", "Security", "bind_problem", "is_loopback", "security_middleware"]

logger = logging.getLogger("flowcat.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_CARRIER_PREFIX = "/telephony/"
_STATIC_PREFIX = "/playground/"  # the page's own script and style: no secret, loaded without the token


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (``localhost``, 127/8, ::1)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_problem(host: str, token: str | None, token_env: str) -> str | None:
    """Why the server must not start on ``host`` (None: it may)."""
    if is_loopback(host) or token:
        return None
    return (
        f"binding {host} (off loopback) needs an API token: set the environment variable {token_env} "
        "(clients send 'Authorization: Bearer <token>'), or bind 127.0.0.1"
    )


class RateLimiter:
    """Token buckets per key (client IP): ``rate`` per second, up to ``burst`` at once.

    At most ``max_keys`` buckets are kept (the least recently used go first).
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 10000
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else seconds until one is available."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate if self.rate > 0 else 60.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass
class Security:
    """Settings of :func:`security_middleware`."""

    token: str | None = None
    """The API token (None: no token asked; only allowed on loopback)."""
    cors_origins: tuple[str, ...] = ()
    call_rate: float = 2.0
    """New calls per second per client IP (0: no limit)."""
    call_burst: int = 10
    max_body: int = 1 << 20


def _carrier_route(request: web.Request) -> bool:
    if request.path.startswith(_CARRIER_PREFIX):
        return True
    info = request.match_info
    return "carrier" in info  # the old unprefixed /{carrier}/ws|answer|event


def _creates_call(request: web.Request) -> bool:
    path = request.path
    if request.method == "POST" and path == "/api/offer":
        return True
    return request.method == "GET" and (path == "/ws" or path.startswith("/protobuf/")) and (
        request.headers.get("Upgrade", "").lower() == "websocket"
    )


def _presented_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("token")


def authorized(request: web.Request, token: str) -> bool:
    """Whether ``request`` carries ``token`` (constant-time comparison)."""
    given = _presented_token(request)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def security_middleware(sec: Security) -> Any:
    """The middleware enforcing ``sec`` on every route (see the module docstring)."""
    limiter = RateLimiter(sec.call_rate, sec.call_burst) if sec.call_rate > 0 else None
    origins = frozenset(sec.cors_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allow = origin if origin is not None and (origin in origins or "*" in origins) else None
        if request.method == "OPTIONS" and allow is not None:
            return web.Response(status=204, headers=_cors(allow))
        length = request.content_length
        if length is not None and length > sec.max_body:
            return _refuse(request, 413, f"request body over {sec.max_body} bytes", allow)
        if (
            sec.token
            and request.path not in OPEN_PATHS
            and not request.path.startswith(_STATIC_PREFIX)
            and not _carrier_route(request)
        ):
            if not authorized(request, sec.token):
                logger.warning("refused %s %s from %s: missing or wrong API token", request.method,
                               request.path, request.remote)
                resp = _refuse(request, 401, "missing or wrong API token", allow)
                resp.headers["WWW-Authenticate"] = 'Bearer realm="flowcat"'
                return resp
        if limiter is not None and _creates_call(request):
            wait = limiter.take(request.remote or "?")
            if wait > 0:
                logger.info("rate limit: %s %s from %s", request.method, request.path, request.remote)
                resp = _refuse(request, 429, "too many new calls from this address", allow)
                resp.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return resp
        response = await handler(request)
        if allow is not None and not response.prepared:
            response.headers.update(_cors(allow))
        return response

    return middleware


def _cors(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Vary": "Origin",
    }


def _refuse(request: web.Request, status: int, why: str, allow: str | None) -> web.Response:
    resp = web.json_response({"error": why}, status=status)
    if allow is not None:
        resp.headers.update(_cors(allow))
    return resp
