"""Cartesia text-to-speech over its WebSocket (``/tts/websocket``), contexts and word timestamps.

Wire protocol:

* https://docs.cartesia.ai/api-reference/tts/websocket
* https://docs.cartesia.ai/use-the-api/tts-websocket/contexts
* https://docs.cartesia.ai/use-the-api/tts-websocket/context-flushing-and-flush-i-ds
* https://docs.cartesia.ai/use-the-api/api-conventions (``Cartesia-Version``; on a
  WebSocket also ``?cartesia_version=``; server-side key as ``?api_key=`` or a header)

``GET wss://api.cartesia.ai/tts/websocket?api_key=<key>&cartesia_version=<date>`` (and
the ``Cartesia-Version`` header). One socket carries many contexts. A generation
request is ``{"model_id", "transcript", "voice": {"mode": "id", "id"}, "language",
"context_id", "output_format": {"container": "raw", "encoding": "pcm_s16le",
"sample_rate"}, "add_timestamps", "continue": true}``; each unit of text (a sentence)
goes on the utterance's context with ``continue: true`` and is followed by a manual
flush (the same fields, ``"transcript": ""``, ``"flush": true``) whose ``flush_done``
marks the end of that unit's audio. The utterance's context is closed with an empty
transcript and ``continue: false`` (the server answers ``done``) as soon as the
utterance is complete (at the latest when the next one starts or the pipeline ends). Down come ``chunk`` (base64 PCM in ``data``),
``timestamps`` (``word_timestamps.{words, start, end}``), ``flush_done``, ``done``
and ``error``, each with its ``context_id``. On interruption the client sends
``{"context_id", "cancel": true}``; audio still arriving for it is dropped.

UNCONFIRMED, accepted both ways and logged once: whether word ``start`` times count
from the start of the context or of the flushed transcript (told apart by the first
word of a later unit); the error shape (``message`` and ``title``, or the older
``error`` string); the key as ``?api_key=`` (default, as the brief and client code
use) or ``Authorization: Bearer`` (``auth="bearer"``, the current REST docs).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..._ratelimit import RateLimitedLog
from ...errors import (
    ConfigError,
    ServiceAuthError,
    ServiceConnectionError,
    ServiceError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from ...frames import CancelFrame, EndFrame
from .._ai_service import ServiceCapabilities
from .._audio_contexts import AudioContexts
from .._http import WS_ENDED, connection_error, handshake_error, http_session
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._tts import TTSAudio, TTSChunk, TTSService, TTSSettings, TTSWords

__all__ = ["CartesiaTTSService", "CartesiaTTSSettings"]

logger = logging.getLogger("flowcat.services.tts.cartesia")

PROVIDERS = (
    ProviderInfo(
        name="cartesia",
        kind="tts",
        title="Cartesia WebSocket",
        service="flowcat.services.tts.CartesiaTTSService",
        docs=("https://docs.cartesia.ai/api-reference/tts/websocket",),
        env="CARTESIA_API_KEY",
        base_url="wss://api.cartesia.ai",
        notes="context ids, word timestamps",
    ),
)
_UNKNOWN = RateLimitedLog(logger)

DEFAULT_BASE_URL = "wss://api.cartesia.ai"
DEFAULT_VERSION = "2025-04-16"
_PATH = "/tts/websocket"


@dataclass
class CartesiaTTSSettings(TTSSettings):
    """Generation fields (``voice`` is the voice id). ``extra`` is merged into every request."""

    model: str | None = "sonic-3"
    language: str | None = "en"
    add_timestamps: bool = True
    max_buffer_delay_ms: int | None = None


def socket_url(base_url: str | None) -> str:
    """The ``/tts/websocket`` URL for ``base_url`` (None: Cartesia's own host).

    Raises:
        ConfigError: Not a ws(s)/http(s) URL with a host.
    """
    raw = DEFAULT_BASE_URL if base_url is None else base_url.strip()
    if "://" not in raw:
        raw = "wss://" + raw
    parts = urlsplit(raw)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigError(f"cartesia: base_url must be a ws(s)/http(s) URL with a host, got {base_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(_PATH):
        path += _PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class _Wire:
    """One Cartesia context (the wire side of a flowcat utterance)."""

    __slots__ = ("audio_bytes", "flushes", "id", "unit_base")

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.audio_bytes = 0  # audio received on this context
        self.unit_base = 0.0  # seconds of audio before the unit in flight
        self.flushes = 0


class CartesiaTTSService(TTSService):
    """Cartesia WebSocket TTS: one socket, a Cartesia context per utterance, a flush per unit.

    Args:
        api_key: The key (else ``CARTESIA_API_KEY``).
        voice_id: Shortcut for ``settings.voice``.
        base_url: Host root (``ws://127.0.0.1:PORT`` for a local server); ``/tts/websocket``
            is appended. None: ``wss://api.cartesia.ai``.
        settings: :class:`CartesiaTTSSettings`.
        cartesia_version: The API version date (query parameter and header).
        auth: ``"query"`` (``?api_key=``) or ``"bearer"`` (``Authorization: Bearer``).
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``…).
    """

    capabilities = ServiceCapabilities(word_timestamps=True, context_ids=True, transport="websocket",
                                       sample_rates=(8000, 16000, 22050, 24000, 44100, 48000))

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        voice_id: str | None = None,
        base_url: str | None = None,
        settings: CartesiaTTSSettings | None = None,
        cartesia_version: str = DEFAULT_VERSION,
        auth: str = "query",
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else CartesiaTTSSettings()
        if voice_id is not None:
            settings.voice = voice_id
        super().__init__(api_key=resolve_api_key("cartesia", api_key), settings=settings, **kwargs)
        if auth not in ("query", "bearer"):
            raise ConfigError(f"{self.name}: auth must be 'query' or 'bearer', got {auth!r}")
        self.url = socket_url(base_url)
        self.cartesia_version = cartesia_version
        self.auth = auth
        self.contexts = AudioContexts()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._wires: dict[str, _Wire] = {}  # utterance context id -> its Cartesia context
        self._by_wire: dict[str, str] = {}
        self._open_ctx: str | None = None  # the utterance whose Cartesia context is still open
        self._relative: bool | None = None  # timestamps from the unit (True) or the context (False)
        self._unknown = 0

    # ------------------------------------------------------------ the socket

    def connect_params(self) -> tuple[dict[str, str], dict[str, str]]:
        """The handshake's query parameters and headers, as sent."""
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        params = {"cartesia_version": self.cartesia_version}
        headers = {"Cartesia-Version": self.cartesia_version}
        if self.auth == "query":
            params["api_key"] = self._api_key.reveal()
        else:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return params, headers

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        async with self._connecting:
            ws = self._ws
            if ws is not None and not ws.closed:
                return ws
            params, headers = self.connect_params()
            session = await http_session()
            try:
                ws = await session.ws_connect(self.url, params=params, headers=headers, heartbeat=None,
                                              timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0))
            except aiohttp.WSServerHandshakeError as exc:
                raise handshake_error(exc, self.name, self._api_key) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise connection_error(exc, self.name, self._api_key) from None
            self._ws = ws
            self._recv = self.create_task(self._read_socket(ws), "cartesia_receive")
            return ws

    async def _send(self, msg: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        try:
            await ws.send_str(json.dumps(msg))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None

    async def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        if self._recv is not None:
            await self.cancel_task(self._recv)
            self._recv = None
        self._forget_all()
        if ws is not None:
            await ws.close()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        with contextlib.suppress(ServiceError):
            await self._close_context()
        await self._close_socket()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close_socket()

    # ------------------------------------------------------------ requests

    def generation(self, wire_id: str, transcript: str, *, more: bool = True, flush: bool = False) -> dict[str, Any]:
        """One generation request, as sent."""
        s = self.settings
        assert isinstance(s, CartesiaTTSSettings)  # noqa: S101 - the constructor's settings type
        msg: dict[str, Any] = {
            "model_id": s.model, "transcript": transcript, "voice": {"mode": "id", "id": s.voice},
            "context_id": wire_id,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate},
            "add_timestamps": s.add_timestamps, "continue": more,
        }
        if s.language:
            msg["language"] = s.language
        if s.max_buffer_delay_ms is not None:
            msg["max_buffer_delay_ms"] = s.max_buffer_delay_ms
        if flush:
            msg["flush"] = True
        msg.update(s.extra)
        return msg

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        if self._open_ctx is not None and self._open_ctx != context_id:
            await self._close_context()  # the previous utterance is over: end its Cartesia context
        await self._connect()
        wire = self._wires.get(context_id)
        if wire is None:
            wire = self._wires[context_id] = _Wire()
            self._by_wire[wire.id] = context_id
        self._open_ctx = context_id
        wire.unit_base = wire.audio_bytes / (2 * (self.sample_rate or 1))
        self.contexts.open(wire.id)
        finished = False
        try:
            await self._send(self.generation(wire.id, text))
            await self._send(self.generation(wire.id, "", flush=True))
            items = cast(AsyncGenerator[Any, None], self.contexts.items(wire.id))
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
            finished = True
        finally:
            if not finished:  # interrupted, timed out or failed: the context is abandoned
                await self._cancel_wire(context_id)

    async def on_context_interrupted(self, context_id: str) -> None:
        await self._cancel_wire(context_id)

    async def on_context_finished(self, context_id: str) -> None:
        if self._open_ctx == context_id:
            await self._close_context()

    async def _cancel_wire(self, context_id: str) -> None:
        wire = self._forget(context_id)
        if wire is None:
            return
        self.contexts.cancel(wire.id)
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"context_id": wire.id, "cancel": True}))

    async def _close_context(self) -> None:
        """End the open utterance's Cartesia context (empty transcript, ``continue: false``)."""
        ctx = self._open_ctx
        if ctx is None:
            return
        wire = self._forget(ctx)
        if wire is not None and self._ws is not None and not self._ws.closed:
            await self._send(self.generation(wire.id, "", more=False))

    def _forget(self, context_id: str) -> _Wire | None:
        if self._open_ctx == context_id:
            self._open_ctx = None
        wire = self._wires.pop(context_id, None)
        if wire is not None:
            self._by_wire.pop(wire.id, None)
        return wire

    def _forget_all(self) -> None:
        self._wires.clear()
        self._by_wire.clear()
        self._open_ctx = None

    # ------------------------------------------------------------ receiving

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._on_message(msg.data)
            elif msg.type in WS_ENDED:
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                break
        if self._ws is ws:
            self._ws = None
            self._forget_all()
            code = ws.close_code
            self.contexts.fail_all(ServiceConnectionError(
                self.redact(f"{self.name}: closed by the server (code {code}{': ' + reason if reason else ''})")
            ))

    def _on_message(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
            kind = msg.get("type")
            wire_id = msg.get("context_id")
        except (ValueError, AttributeError):
            self.bad_input("a message that is not a JSON object", raw)
            return
        if kind == "chunk":
            try:
                audio = base64.b64decode(msg["data"], validate=True)
            except (KeyError, TypeError, ValueError, binascii.Error):
                self.bad_input("a chunk without base64 audio in data", raw)
                return
            if self.contexts.put(str(wire_id), TTSAudio(audio)):
                wire = self._wires.get(self._by_wire.get(str(wire_id), ""))
                if wire is not None:
                    wire.audio_bytes += len(audio)
        elif kind == "timestamps":
            self._on_timestamps(msg, raw)
        elif kind == "flush_done":
            self.contexts.finish(str(wire_id))
        elif kind == "done":
            self.contexts.finish(str(wire_id))
            ctx = self._by_wire.get(str(wire_id))
            if ctx is not None:
                self._forget(ctx)  # the context is over: the next unit opens a new one
        elif kind == "error":
            self._on_error(msg, wire_id)
        elif kind == "phoneme_timestamps":
            pass
        else:
            self._unknown += 1
            if _UNKNOWN.due(self._unknown):
                _UNKNOWN(self._unknown, "%s: skipped a message of unknown type %r (#%d)", self.name,
                         str(kind)[:40], self._unknown)

    def _on_timestamps(self, msg: dict[str, Any], raw: str) -> None:
        wire_id = str(msg.get("context_id"))
        try:
            ts = msg["word_timestamps"]
            words = [(str(w), float(t)) for w, t in zip(ts["words"], ts["start"], strict=False)]
        except (KeyError, TypeError, ValueError):
            self.bad_input("timestamps without word_timestamps.words/start", raw)
            return
        wire = self._wires.get(self._by_wire.get(wire_id, ""))
        if wire is not None and words and wire.unit_base > 0:
            if self._relative is None:
                # A later unit's first word near the audio sent before it: times count from
                # the context's start; near zero: from the flushed transcript's.
                self._relative = words[0][1] < wire.unit_base / 2
                logger.info("%s: word timestamps count from the start of the %s", self.name,
                            "transcript" if self._relative else "context")
            if not self._relative:
                words = [(w, max(0.0, round(t - wire.unit_base, 6))) for w, t in words]
        self.contexts.put(wire_id, TTSWords(words))

    def _on_error(self, msg: dict[str, Any], wire_id: Any) -> None:
        text = msg.get("message") or msg.get("error") or msg.get("title") or "error"
        code = msg.get("error_code")
        status = msg.get("status_code")
        status = int(status) if isinstance(status, (int, str)) and str(status).isdigit() else 500
        what = self.redact(f"{self.name}: {text}{f' ({code})' if code else ''}")
        exc: ServiceError
        if status in (401, 403):
            exc = ServiceAuthError(what, status)
        elif status == 429:
            exc = ServiceRateLimitError(what, status)
        else:
            exc = ServiceStatusError(what, status if status >= 400 else 500)
        if wire_id is None:
            self.contexts.fail_all(exc)
            self._forget_all()
            return
        self.contexts.fail(str(wire_id), exc)
        ctx = self._by_wire.get(str(wire_id))
        if ctx is not None:
            self._forget(ctx)  # an errored context is done: a retry opens a new one
