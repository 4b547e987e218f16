"""The WebSocket plumbing the JSON-control STT providers share (AssemblyAI, Speechmatics).

:class:`SocketSTTService` opens the socket (handshake refusals translated), waits for
the provider's "session started" message (an in-band error before it fails the
connect, so a refused key is not retried), then runs one receive loop per connection
that hands each JSON object to :meth:`SocketSTTService.on_message`. A provider error
message is kept and reported when the server closes; a close we did not ask for is
reported through :meth:`~flowcat.services.STTService.connection_lost` (the base
reconnects if the error is retryable). At the end the provider's closing message is
sent and the server's last results are awaited for ``close_timeout_secs``.
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
from ...errors import ConfigError, ServiceConnectionError, ServiceError, ServiceTimeout
from ...frames import CancelFrame
from .._http import WS_ENDED, connection_error, handshake_error, http_session
from .._stt import STTService

__all__ = ["SocketSTTService", "socket_url"]

logger = logging.getLogger("flowcat.services.stt")
_UNKNOWN = RateLimitedLog(logger)


def socket_url(base_url: str | None, default: str, path: str, vendor: str) -> str:
    """The socket URL for ``base_url`` (None: ``default``), ``path`` appended when missing.

    ``http``/``https`` become ``ws``/``wss``; a bare host is taken as ``wss``.

    Raises:
        ConfigError: Another scheme, or no host (never a silent switch to the vendor's host).
    """
    raw = default if base_url is None else base_url.strip()
    if "://" not in raw:
        raw = "wss://" + raw
    parts = urlsplit(raw)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigError(f"{vendor}: base_url must be a ws(s)/http(s) URL with a host, got {base_url!r}")
    p = parts.path.rstrip("/")
    if not p.endswith(path):
        p += path
    return urlunsplit((scheme, parts.netloc, p, "", ""))


class SocketSTTService(STTService):
    """Base of the STT providers with a JSON-control WebSocket (binary audio up).

    Args:
        url: The socket URL (query parameters come from :meth:`handshake`).
        close_timeout_secs: At the end, how long to wait for the last results after the
            closing message.
        open_timeout_secs: Bound on the upgrade plus the wait for the session start.
        **kwargs: :class:`~flowcat.services.STTService` arguments.
    """

    def __init__(self, *, url: str, close_timeout_secs: float = 1.0, open_timeout_secs: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.close_timeout_secs = close_timeout_secs
        self.open_timeout_secs = open_timeout_secs
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None
        self._error: ServiceError | None = None
        self._fast_close = False
        self._unknown = 0

    # ---------------------------------------------------------- provider hooks

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        """The upgrade's query parameters and headers (credentials included)."""
        raise NotImplementedError

    async def opening(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Right after the upgrade, before waiting for the start (send a start message)."""

    def session_started(self, msg: dict[str, Any]) -> bool:
        """Whether ``msg`` says the session started."""
        raise NotImplementedError

    def error_of(self, msg: dict[str, Any]) -> ServiceError | None:
        """The service error an in-band error message stands for (None: not an error)."""
        return None

    def close_error(self, code: int | None, reason: str) -> ServiceError:
        """The service error for a close the client did not ask for."""
        detail = f": {reason}" if reason else ""
        return ServiceConnectionError(self.redact(f"{self.name}: closed by the server (code {code}{detail})"))

    def closing_message(self) -> str | None:
        """The text message that ends the session (the server then sends its last results and closes)."""
        return None

    async def on_message(self, msg: dict[str, Any], raw: str) -> None:
        """One JSON object from the server (not an error, not the start)."""

    def unknown(self, kind: object) -> None:
        """Log (rate-limited) a message type this module does not handle."""
        self._unknown += 1
        if _UNKNOWN.due(self._unknown):
            _UNKNOWN(self._unknown, "%s: skipped a message of unknown type %r (#%d)", self.name,
                     str(kind)[:40], self._unknown)

    # ------------------------------------------------------------ the socket

    async def connect(self) -> None:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        params, headers = self.handshake()
        session = await http_session()
        self._error = None
        try:
            async with asyncio.timeout(self.open_timeout_secs):
                ws = await session.ws_connect(
                    self.url, params=params, headers=headers, autoping=True, heartbeat=None,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.close_timeout_secs),
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise handshake_error(exc, self.name, self._api_key) from None
        except TimeoutError:
            raise ServiceTimeout(f"{self.name}: no WebSocket upgrade in {self.open_timeout_secs}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        try:
            async with asyncio.timeout(self.open_timeout_secs):
                await self.opening(ws)
                await self._wait_started(ws)
        except BaseException as exc:
            await ws.close()
            if isinstance(exc, TimeoutError):
                raise ServiceTimeout(f"{self.name}: the session did not start in {self.open_timeout_secs}s") from None
            if isinstance(exc, (aiohttp.ClientError, ConnectionError, RuntimeError)):
                raise connection_error(exc, self.name, self._api_key) from None
            raise
        self._ws = ws
        # The connection outlives interruptions: its transcripts must not be dropped as stale.
        self._recv = self.create_task(self._read_socket(ws), f"{self.name}_receive", generation_bound=False)

    async def _wait_started(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                obj = self._parse(msg.data)
                if obj is None:
                    continue
                err = self.error_of(obj)
                if err is not None:
                    raise err
                if self.session_started(obj):
                    return
                await self.on_message(obj, msg.data)
            elif msg.type in WS_ENDED:
                reason = str(msg.extra or "") if msg.type is aiohttp.WSMsgType.CLOSE else ""
                raise self.close_error(ws.close_code, reason)

    async def disconnect(self) -> None:
        ws, self._ws = self._ws, None
        recv, self._recv = self._recv, None
        if ws is not None and not ws.closed:
            closing = self.closing_message()
            if closing is not None:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                    await ws.send_str(closing)
                if recv is not None and not self._fast_close:
                    await asyncio.wait({recv}, timeout=self.close_timeout_secs)
        if recv is not None:
            await self.cancel_task(recv)
        if ws is not None:
            await ws.close()

    async def cancel(self, frame: CancelFrame) -> None:
        self._fast_close = True  # no waiting for the last results: the call is being torn down
        await super().cancel(frame)

    async def send_audio(self, audio: bytes) -> None:
        if audio:
            await self.send_frame(audio)

    async def send_frame(self, data: bytes) -> None:
        """One binary frame (raise :class:`ServiceConnectionError` if the socket is gone)."""
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        try:
            await ws.send_bytes(data)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None

    async def send_json(self, obj: dict[str, Any]) -> None:
        """One JSON text message (raise :class:`ServiceConnectionError` if the socket is gone)."""
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        try:
            await ws.send_str(json.dumps(obj))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None

    # ------------------------------------------------------------ receiving

    def _parse(self, raw: str) -> dict[str, Any] | None:
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.bad_input("a message that is not a JSON object", raw)
            return None
        return obj

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                obj = self._parse(msg.data)
                if obj is None:
                    continue
                err = self.error_of(obj)
                if err is not None:
                    logger.debug("%s: error message: %s", self.name, err)
                    self._error = err  # the close follows: reported then
                    continue
                await self.on_message(obj, msg.data)
            elif msg.type in WS_ENDED:
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                break
        if self._ws is ws:  # not closed by us: report (the base reconnects when it may help)
            self._ws = None
            err, self._error = self._error, None
            self.connection_lost(err if err is not None else self.close_error(ws.close_code, reason))
