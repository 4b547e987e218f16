"""What the WebSocket TTS providers share: one socket, opened on first use and reopened
after a drop, its receive loop, and the :class:`AudioContexts` its messages are routed to.

A provider subclass gives the handshake (:meth:`SocketTTSService.handshake`), handles each
text and binary message (:meth:`on_text`, :meth:`on_binary`) and forgets its per-socket
state when the socket ends (:meth:`on_socket_closed`). Sending never raises for a cancel
(:meth:`send_quietly`); sending a request raises the translated service error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..._ratelimit import RateLimitedLog
from ...errors import ConfigError, ServiceConnectionError, ServiceError
from ...frames import CancelFrame, EndFrame
from .._audio_contexts import AudioContexts
from .._http import WS_ENDED, connection_error, handshake_error, http_session
from .._tts import TTSService

__all__ = ["SocketTTSService", "ws_url"]

logger = logging.getLogger("flowcat.services.tts")
_UNKNOWN = RateLimitedLog(logger)


def ws_url(base_url: str | None, default: str, path: str, vendor: str) -> str:
    """``base_url`` (None: ``default``) as a ws(s) URL ending in ``path``.

    Raises:
        ConfigError: Not a ws(s)/http(s) URL with a host.
    """
    raw = default if base_url is None else base_url.strip()
    if "://" not in raw:
        raw = "wss://" + raw
    parts = urlsplit(raw)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigError(f"{vendor}: base_url must be a ws(s)/http(s) URL with a host, got {base_url!r}")
    root = parts.path.rstrip("/")
    if path and not root.endswith(path):
        root += path
    return urlunsplit((scheme, parts.netloc, root, "", ""))


class SocketTTSService(TTSService):
    """Base of the WebSocket TTS providers (one socket per service, many utterances on it).

    Args:
        url: The socket URL without the query (``handshake`` adds the parameters).
        keepalive_secs: After this long without sending, :meth:`keepalive_message` (if
            any) is sent; None: no keepalive.
        **kwargs: :class:`~flowcat.services.TTSService` arguments.
    """

    def __init__(self, *, url: str, keepalive_secs: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.keepalive_secs = keepalive_secs
        self.contexts = AudioContexts()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._last_send = 0.0
        self._unknown = 0
        self._stale = False

    def reconnect_later(self) -> None:
        """The handshake changed (voice, model…): the next unit opens a new socket; the unit
        in flight, if any, finishes on the old one."""
        self._stale = True

    # ------------------------------------------------------------ provider seam

    def socket_url(self) -> str:
        """The URL the next connection opens (without the query)."""
        return self.url

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        """The handshake's query parameters and headers, as sent."""
        raise NotImplementedError

    def on_text(self, raw: str) -> None:
        """A text message arrived."""

    def on_binary(self, data: bytes) -> None:
        """A binary message arrived."""

    def on_socket_closed(self, exc: ServiceConnectionError) -> None:
        """The socket ended (``exc`` says how): forget per-socket state. The base fails every open context."""

    def keepalive_message(self) -> dict[str, Any] | None:
        """What to send when the socket was idle ``keepalive_secs`` (None: nothing)."""
        return None

    def goodbye_message(self) -> dict[str, Any] | None:
        """What to send before closing the socket at the end of the pipeline (None: nothing)."""
        return None

    def unknown_message(self, kind: object) -> None:
        """Log (rate-limited) a message of a type this provider does not know, and go on."""
        self._unknown += 1
        if _UNKNOWN.due(self._unknown):
            _UNKNOWN(self._unknown, "%s: skipped a message of unknown type %r (#%d)", self.name,
                     str(kind)[:40], self._unknown)

    # ------------------------------------------------------------ the socket

    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        """The open socket (opened now if needed).

        Raises:
            ServiceError: The upgrade was refused or the connection failed.
        """
        if self._stale:  # settings that live in the handshake changed: a new socket
            self._stale = False
            await self.close_socket()
        async with self._connecting:
            ws = self._ws
            if ws is not None and not ws.closed:
                return ws
            params, headers = self.handshake()
            session = await http_session()
            try:
                ws = await session.ws_connect(self.socket_url(), params=params, headers=headers, heartbeat=None,
                                              timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0))
            except aiohttp.WSServerHandshakeError as exc:
                raise handshake_error(exc, self.name, self._api_key) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise connection_error(exc, self.name, self._api_key) from None
            self._ws = ws
            self._last_send = asyncio.get_running_loop().time()
            self._recv = self.create_task(self._read_socket(ws), f"{self.name}_receive")
            if self.keepalive_secs and self._keepalive is None:
                self._keepalive = self.create_task(self._keep_alive(), f"{self.name}_keepalive")
            return ws

    async def send_json(self, msg: dict[str, Any]) -> None:
        """Send one JSON message.

        Raises:
            ServiceConnectionError: Not connected, or the send failed.
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        try:
            await ws.send_str(json.dumps(msg))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        self._last_send = asyncio.get_running_loop().time()

    async def send_quietly(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` if the socket is open; a failure is ignored (cancels, closes)."""
        with contextlib.suppress(ServiceError):
            if self.connected:
                await self.send_json(msg)

    async def close_socket(self) -> None:
        """Close the socket (the receive loop first: nothing is routed afterwards)."""
        ws, self._ws = self._ws, None
        for task in (self._recv, self._keepalive):
            if task is not None:
                await self.cancel_task(task)
        self._recv = self._keepalive = None
        if ws is not None:
            exc = ServiceConnectionError(f"{self.name}: socket closed")
            self.on_socket_closed(exc)
            self.contexts.fail_all(exc)  # a unit still waiting fails now (and is retried)
            await ws.close()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        goodbye = self.goodbye_message()
        if goodbye is not None:
            await self.send_quietly(goodbye)
        await self.close_socket()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self.close_socket()

    async def _keep_alive(self) -> None:
        assert self.keepalive_secs  # noqa: S101 - invariant (type narrowing), not input validation
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last_send + self.keepalive_secs - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            msg = self.keepalive_message() if self.connected else None
            if msg is not None:
                await self.send_quietly(msg)
            self._last_send = loop.time()

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.on_text(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                self.on_binary(msg.data)
            elif msg.type in WS_ENDED:
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                break
        if self._ws is ws:
            self._ws = None
            code = ws.close_code
            exc = ServiceConnectionError(
                self.redact(f"{self.name}: closed by the server (code {code}{': ' + reason if reason else ''})")
            )
            self.on_socket_closed(exc)
            self.contexts.fail_all(exc)
