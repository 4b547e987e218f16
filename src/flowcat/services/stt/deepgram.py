"""Deepgram live speech-to-text over its WebSocket (``/v1/listen``).

Wire protocol:

* https://developers.deepgram.com/reference/speech-to-text/listen-streaming
* https://developers.deepgram.com/docs/understand-endpointing-interim-results
* https://developers.deepgram.com/docs/audio-keep-alive ,
  https://developers.deepgram.com/docs/finalize , https://developers.deepgram.com/docs/close-stream
* https://developers.deepgram.com/docs/utterance-end , https://developers.deepgram.com/docs/speech-started
* spec: github.com/deepgram/deepgram-docs ``fern/asyncapi.yml``

``GET wss://api.deepgram.com/v1/listen?model=…&encoding=linear16&sample_rate=…&channels=1
&interim_results=true&punctuate=true&smart_format=…[&endpointing=…][&utterance_end_ms=…]
[&vad_events=true]`` with ``Authorization: Token <key>``. Audio goes up as binary
frames (never an empty one: the server closes on it); control goes up as text JSON:
``{"type": "KeepAlive"}`` when no audio was sent for a while (the server closes after
10 s without a frame), ``{"type": "Finalize"}`` when the user stops speaking,
``{"type": "CloseStream"}`` at the end (the server sends its last results and a
``Metadata`` summary, then closes). Down come ``Results`` (``is_final`` false: interim;
true: final for its span; ``speech_final``: an endpoint), ``SpeechStarted``,
``UtteranceEnd`` and ``Metadata``.

Each ``is_final`` result becomes one ``TranscriptionFrame`` (the user aggregator joins
them, as in pipecat); ``speech_final`` is reported by the ``on_speech_final`` event.
The whole message rides on the frame's ``result`` (confidence, words, timings).

The host: the real one (``wss://api.deepgram.com``) only when no ``base_url`` is
given; a ``base_url`` that cannot be used is a :class:`~flowcat.errors.ConfigError`,
never a silent switch to the real host (pipecat falls back to it when its custom
environment fails). Unknown message types are logged (rate-limited) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..._ratelimit import RateLimitedLog
from ...errors import ConfigError, ServiceConnectionError
from ...frames import CancelFrame
from .._ai_service import ServiceCapabilities
from .._http import WS_ENDED, connection_error, handshake_error, http_session
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._stt import STTService, STTSettings

__all__ = ["DeepgramSTTService", "DeepgramSTTSettings"]

logger = logging.getLogger("flowcat.services.stt.deepgram")

PROVIDERS = (
    ProviderInfo(
        name="deepgram",
        kind="stt",
        title="Deepgram live streaming",
        service="flowcat.services.stt.DeepgramSTTService",
        docs=("https://developers.deepgram.com/reference/speech-to-text/listen-streaming",),
        env="DEEPGRAM_API_KEY",
        base_url="wss://api.deepgram.com",
        notes="interim results, Finalize, UtteranceEnd/SpeechStarted events",
    ),
)
_UNKNOWN = RateLimitedLog(logger)

DEFAULT_BASE_URL = "wss://api.deepgram.com"
_PATH = "/v1/listen"
_KEEPALIVE = '{"type": "KeepAlive"}'
_FINALIZE = '{"type": "Finalize"}'
_CLOSE_STREAM = '{"type": "CloseStream"}'


@dataclass
class DeepgramSTTSettings(STTSettings):
    """Query parameters of the live socket (None: not sent, Deepgram's default applies).

    ``extra`` entries are sent as more query parameters (``diarize``, ``keyterm``…).
    A change applies from the next (re)connection.
    """

    model: str | None = "nova-3"
    language: str | None = "en"
    interim_results: bool = True
    punctuate: bool = True
    smart_format: bool = False
    endpointing: int | bool | None = None
    utterance_end_ms: int | None = None
    vad_events: bool = False


def _flag(value: bool) -> str:
    return "true" if value else "false"


def listen_url(base_url: str | None) -> str:
    """The ``/v1/listen`` socket URL for ``base_url`` (None: Deepgram's own host).

    ``http``/``https`` become ``ws``/``wss``; a bare host is taken as ``wss``.

    Raises:
        ConfigError: Another scheme, or no host.
    """
    raw = DEFAULT_BASE_URL if base_url is None else base_url.strip()
    if "://" not in raw:
        raw = "wss://" + raw
    parts = urlsplit(raw)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigError(f"deepgram: base_url must be a ws(s)/http(s) URL with a host, got {base_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(_PATH):
        path += _PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class DeepgramSTTService(STTService):
    """Deepgram live STT (streaming, interim results, Finalize at end of speech).

    Args:
        api_key: The key (else ``DEEPGRAM_API_KEY``), sent as ``Authorization: Token``.
        base_url: Host root (``ws://127.0.0.1:PORT`` for a local server); ``/v1/listen``
            is appended. None: ``wss://api.deepgram.com``.
        settings: :class:`DeepgramSTTSettings`.
        keepalive_secs: Send ``KeepAlive`` after this long without sending anything.
        close_timeout_secs: At the end, how long to wait for the server's last results
            after ``CloseStream``.
        **kwargs: :class:`~flowcat.services.STTService` arguments (``sample_rate``…).

    Events: ``on_speech_started(svc, msg)``, ``on_utterance_end(svc, msg)``,
    ``on_speech_final(svc, msg)``, ``on_metadata(svc, msg)``.
    """

    capabilities = ServiceCapabilities(interim_results=True, transport="websocket")

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        settings: DeepgramSTTSettings | None = None,
        keepalive_secs: float = 4.0,
        close_timeout_secs: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=resolve_api_key("deepgram", api_key),
                         settings=settings if settings is not None else DeepgramSTTSettings(), **kwargs)
        self.url = listen_url(base_url)
        self.keepalive_secs = keepalive_secs
        self.close_timeout_secs = close_timeout_secs
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._last_send = 0.0
        self._unknown = 0
        self._fast_close = False
        for name in ("on_speech_started", "on_utterance_end", "on_speech_final", "on_metadata"):
            self._register_event_handler(name)

    # ------------------------------------------------------------ the socket

    def query_params(self) -> dict[str, str]:
        """The handshake's query parameters, as sent."""
        s = self.settings
        assert isinstance(s, DeepgramSTTSettings)  # noqa: S101 - the constructor's settings type
        q: dict[str, str] = {}
        if s.model:
            q["model"] = s.model
        if s.language:
            q["language"] = s.language
        q.update(encoding="linear16", sample_rate=str(self.sample_rate), channels="1",
                 interim_results=_flag(s.interim_results), punctuate=_flag(s.punctuate),
                 smart_format=_flag(s.smart_format))
        if s.endpointing is not None:
            q["endpointing"] = _flag(False) if s.endpointing is False else str(int(s.endpointing))
        if s.utterance_end_ms is not None:
            q["utterance_end_ms"] = str(int(s.utterance_end_ms))
        if s.vad_events:
            q["vad_events"] = "true"
        q.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in s.extra.items()})
        return q

    async def connect(self) -> None:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        session = await http_session()
        try:
            ws = await session.ws_connect(
                self.url, params=self.query_params(), autoping=True, heartbeat=None,
                headers={"Authorization": f"Token {self._api_key.reveal()}"},
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.close_timeout_secs),
            )
        except aiohttp.WSServerHandshakeError as exc:
            detail = exc.headers.get("dg-error") if exc.headers else None  # Deepgram's reason for the refusal
            what = f"{self.name} ({detail})" if detail else self.name
            raise handshake_error(exc, what, self._api_key) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        self._ws = ws
        self._last_send = asyncio.get_running_loop().time()
        # The connection outlives interruptions: its transcripts must not be dropped as stale.
        self._recv = self.create_task(self._read_socket(ws), "deepgram_receive", generation_bound=False)
        self._keepalive = self.create_task(self._keep_alive(ws), "deepgram_keepalive", generation_bound=False)

    async def disconnect(self) -> None:
        ws, self._ws = self._ws, None
        if self._keepalive is not None:
            await self.cancel_task(self._keepalive)
            self._keepalive = None
        recv, self._recv = self._recv, None
        if ws is not None and not ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                await ws.send_str(_CLOSE_STREAM)
            if recv is not None and not self._fast_close:
                # The server sends its last results and Metadata, then closes.
                await asyncio.wait({recv}, timeout=self.close_timeout_secs)
        if recv is not None:
            await self.cancel_task(recv)
        if ws is not None:
            await ws.close()

    async def cancel(self, frame: CancelFrame) -> None:
        self._fast_close = True  # no waiting for the last results: the call is being torn down
        await super().cancel(frame)

    async def send_audio(self, audio: bytes) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        if not audio:
            return  # an empty binary frame closes the stream
        try:
            await ws.send_bytes(audio)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        self._last_send = asyncio.get_running_loop().time()

    async def finalize(self) -> None:
        await self._send_text(_FINALIZE)

    async def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        try:
            await ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        self._last_send = asyncio.get_running_loop().time()

    async def _keep_alive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        while not ws.closed:
            idle = loop.time() - self._last_send
            if idle < self.keepalive_secs:
                await asyncio.sleep(self.keepalive_secs - idle)
                continue
            try:
                await ws.send_str(_KEEPALIVE)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return  # the receive loop reports the lost connection
            self._last_send = loop.time()

    # ------------------------------------------------------------ receiving

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._on_message(msg.data)
            elif msg.type in WS_ENDED:
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")  # Deepgram puts its error code here (NET-0001…)
                break
        if self._ws is ws:  # not closed by us: reconnect
            self._ws = None
            code = ws.close_code
            self.connection_lost(ServiceConnectionError(
                self.redact(f"{self.name}: closed by the server (code {code}{': ' + reason if reason else ''})")
            ))

    async def _on_message(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            self.bad_input("a message that is not a JSON object", raw)
            return
        if kind == "Results":
            try:
                alt = msg["channel"]["alternatives"][0]
                text = str(alt.get("transcript") or "")
                final = bool(msg.get("is_final"))
            except (KeyError, IndexError, TypeError, AttributeError):
                self.bad_input("a Results message without channel.alternatives[0]", raw)
                return
            languages = alt.get("languages")
            language = languages[0] if isinstance(languages, list) and languages else getattr(self.settings, "language", None)
            if text:
                await self.push_transcription(text, final=final, language=language, result=msg)
            elif final and msg.get("from_finalize"):
                await self.stop_ttfb_metrics()  # Finalize answered, nothing more was said
            if final and msg.get("speech_final"):
                await self._call_event_handler("on_speech_final", msg)
        elif kind == "SpeechStarted":
            await self._call_event_handler("on_speech_started", msg)
        elif kind == "UtteranceEnd":
            await self._call_event_handler("on_utterance_end", msg)
        elif kind == "Metadata":
            logger.debug("%s: metadata, request %s", self.name, msg.get("request_id"))
            await self._call_event_handler("on_metadata", msg)
        else:
            self._unknown += 1
            if _UNKNOWN.due(self._unknown):
                _UNKNOWN(self._unknown, "%s: skipped a message of unknown type %r (#%d)", self.name,
                         str(kind)[:40], self._unknown)
