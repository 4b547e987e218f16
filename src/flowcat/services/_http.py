"""Shared HTTP plumbing: one aiohttp session per event loop, error translation, SSE.

* :func:`http_session` returns the loop's shared ``aiohttp.ClientSession`` (one
  connection pool per process and loop; keep-alive connections are reused across
  calls). It is created on first use, never when a service is constructed, and its
  TLS context is built once per process in a worker thread (loading the CA store
  blocks for milliseconds). :func:`close_http_sessions` closes it (tests, shutdown).
  ``http_session(guard)`` returns a session whose resolver is the
  :class:`~flowcat.services._ssrf.OutboundGuard`'s (one per loop and guard key; the
  SSRF guard for URLs from configuration).
* :func:`raise_for_status` turns an HTTP error status into the ``flowcat.errors``
  service family (401/403 -> auth, 429 -> rate limit with ``Retry-After``, other 4xx
  not retryable, 5xx retryable), with the body's message, key masked.
* :func:`iter_sse` parses a Server-Sent Events body (comments skipped, multi-line
  ``data`` joined, any chunking of the bytes).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import (
    ServiceAuthError,
    ServiceConnectionError,
    ServiceError,
    ServiceProtocolError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from ._secrets import Secret, redact

__all__ = [
    "WS_ENDED",
    "SSEEvent",
    "close_http_sessions",
    "connection_error",
    "handshake_error",
    "http_session",
    "iter_sse",
    "raise_for_status",
]

WS_ENDED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
"""Message types that end a provider WebSocket's receive loop."""

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_guarded: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, aiohttp.ClientSession]] = (
    weakref.WeakKeyDictionary()
)
_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def _make_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of ms of CPU: the calls that start together (three
    # services per call, several calls) wait here for the one that builds it.
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context()
        return _ssl_context


async def _shared_ssl_context() -> ssl.SSLContext:
    ctx = _ssl_context
    if ctx is None:
        ctx = await asyncio.to_thread(_make_ssl_context)
    return ctx


async def http_session(guard: Any = None) -> aiohttp.ClientSession:
    """The running loop's shared client session (created on first use).

    With an :class:`~flowcat.services._ssrf.OutboundGuard` that does not allow every
    address: a session (shared by the guards with the same key) that connects only to
    addresses the guard vetted.
    """
    loop = asyncio.get_running_loop()
    if guard is not None and not guard.allow_all:
        pools = _guarded.setdefault(loop, {})
        session = pools.get(guard.key)
        if session is None or session.closed:
            ctx = await _shared_ssl_context()
            connector = aiohttp.TCPConnector(ssl=ctx, limit=0, limit_per_host=0, keepalive_timeout=30,
                                             resolver=guard.aiohttp_resolver(), use_dns_cache=False)
            session = pools[guard.key] = aiohttp.ClientSession(connector=connector,
                                                               middlewares=(guard.aiohttp_middleware(),))
        return session
    session = _sessions.get(loop)
    if session is None or session.closed:
        ctx = await _shared_ssl_context()
        session = _sessions.get(loop)  # another caller may have made it meanwhile
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(ssl=ctx, limit=0, limit_per_host=0, keepalive_timeout=30)
            session = aiohttp.ClientSession(connector=connector)
            _sessions[loop] = session
    return session


async def close_http_sessions() -> None:
    """Close the running loop's shared session, if any."""
    loop = asyncio.get_running_loop()
    sessions = list(_guarded.pop(loop, {}).values())
    session = _sessions.pop(loop, None)
    if session is not None:
        sessions.append(session)
    for s in sessions:
        if not s.closed:
            await s.close()


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)
        return str(err)
    return str(body)[:500]


async def raise_for_status(resp: aiohttp.ClientResponse, what: str, key: Secret | None = None) -> None:
    """Raise the right service error for an HTTP error response (do nothing for 2xx)."""
    status = resp.status
    if status < 400:
        return
    raw = await resp.text(errors="replace")
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw
    msg = redact(f"{what}: {_error_message(body)}", key)
    body = redact(raw, key)
    if status in (401, 403):
        raise ServiceAuthError(msg, status, body)
    if status == 429:
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        raise ServiceRateLimitError(msg, status, body, retry_after=retry_after)
    raise ServiceStatusError(msg, status, body)


def connection_error(exc: BaseException, what: str, key: Secret | None = None) -> ServiceConnectionError:
    """Translate an aiohttp/OS error into :class:`~flowcat.errors.ServiceConnectionError`."""
    return ServiceConnectionError(redact(f"{what}: {type(exc).__name__}: {exc}", key))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def handshake_error(exc: aiohttp.WSServerHandshakeError, what: str, key: Secret | None = None) -> ServiceError:
    """Translate a refused WebSocket upgrade into the service error for its status.

    401/403 -> :class:`~flowcat.errors.ServiceAuthError`, 429 ->
    :class:`~flowcat.errors.ServiceRateLimitError` (``Retry-After`` honoured), any other
    status -> :class:`~flowcat.errors.ServiceStatusError` (5xx retryable, 4xx not).
    aiohttp does not keep the refusal's body, so the message is the status line.
    """
    status = exc.status
    msg = redact(f"{what}: WebSocket upgrade refused: {exc.message}", key)
    if status in (401, 403):
        return ServiceAuthError(msg, status)
    if status == 429:
        retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
        return ServiceRateLimitError(msg, status, retry_after=retry_after)
    if status < 400:  # not an upgrade, not an error status (a redirect, a 200 page)
        return ServiceStatusError(msg, 502)
    return ServiceStatusError(msg, status)


@dataclass(slots=True)
class SSEEvent:
    """One Server-Sent Event: its ``event`` name (or None) and joined ``data``."""

    event: str | None
    data: str


MAX_SSE_BYTES = 8 << 20
"""Longest SSE line, and largest event (its ``data`` joined), :func:`iter_sse` holds: a longer one
is a broken stream (no model streams a single event that large)."""


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Yield the events of an SSE body. Lines are split on bytes, so UTF-8 cut anywhere is fine.

    Raises:
        ServiceProtocolError: A line or an event over :data:`MAX_SSE_BYTES` (memory stays bounded).
    """
    event: str | None = None
    data: list[str] = []
    size = 0  # of the event's data so far
    buf = bytearray()
    async for chunk in content.iter_any():
        scan = len(buf)  # the held bytes have no newline: search only the new ones
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", scan)
            if nl < 0:
                break
            line = buf[start:nl].rstrip(b"\r").decode("utf-8", errors="replace")
            start = scan = nl + 1
            if not line:
                if data:
                    yield SSEEvent(event, "\n".join(data))
                event, data, size = None, [], 0
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
                size += len(value) + 1
                if size > MAX_SSE_BYTES:
                    raise ServiceProtocolError(f"SSE: an event over {MAX_SSE_BYTES} bytes")
            elif name == "event":
                event = value
        if start:
            del buf[:start]
        if len(buf) > MAX_SSE_BYTES:
            raise ServiceProtocolError(f"SSE: a line over {MAX_SSE_BYTES} bytes")
    if data:
        yield SSEEvent(event, "\n".join(data))
