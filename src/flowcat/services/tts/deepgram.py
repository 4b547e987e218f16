"""Deepgram Aura text-to-speech over its streaming WebSocket (``/v1/speak``).

Wire protocol:

* https://developers.deepgram.com/reference/text-to-speech/speak-streaming
* https://developers.deepgram.com/docs/tts-ws-flush , /docs/tts-ws-clear , /reference/tts-ws-close
* https://developers.deepgram.com/docs/streaming-text-to-speech

``GET wss://api.deepgram.com/v1/speak?model=aura-2-...&encoding=linear16&sample_rate=<rate>``
with ``Authorization: Token <key>``. Text frames from the client: ``{"type": "Speak",
"text"}``, ``{"type": "Flush"}`` (the server answers ``{"type": "Flushed",
"sequence_id"}`` once the audio of the text before it is sent), ``{"type": "Clear"}``
(drops the text and audio buffers; answered ``{"type": "Cleared", "sequence_id"}``) and
``{"type": "Close"}``. The audio comes as binary frames (raw PCM16 for ``linear16``); the
server also sends ``Metadata`` and ``Warning`` messages, and reports an error by closing
the socket (code and reason). Flush is limited to 20 per 60 s (a ``Warning`` beyond that).

The socket carries one stream, no context ids: units of text are spoken one after the
other, each ``Speak`` followed by a ``Flush`` whose ``Flushed`` ends that unit's audio.
On interruption the client sends ``Clear`` and drops every binary frame until
``Cleared`` (the audio already in flight); a new unit first waits for that ``Cleared``
(``clear_timeout_secs``, then the socket is replaced).

UNCONFIRMED: the ``Warning`` fields (``description``, ``code``) and an ``Error`` JSON
message (``description`` / ``err_msg``), both logged/handled as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

from ..._ratelimit import RateLimitedLog
from ...errors import ConfigError, ServiceStatusError
from ...frames import StartFrame
from .._ai_service import ServiceCapabilities
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._tts import TTSAudio, TTSChunk, TTSSettings
from ._socket import SocketTTSService, ws_url

__all__ = ["DeepgramTTSService", "DeepgramTTSSettings"]

logger = logging.getLogger("flowcat.services.tts.deepgram")
_WARN = RateLimitedLog(logger)

PROVIDERS = (
    ProviderInfo(
        name="deepgram",
        kind="tts",
        title="Deepgram Aura WebSocket",
        service="flowcat.services.tts.DeepgramTTSService",
        docs=("https://developers.deepgram.com/reference/text-to-speech/speak-streaming",),
        env="DEEPGRAM_API_KEY",
        base_url="wss://api.deepgram.com",
        notes="Flush per sentence, Clear on interruption",
    ),
)

DEFAULT_BASE_URL = "wss://api.deepgram.com"
SAMPLE_RATES = (8000, 16000, 24000, 44100, 48000)


@dataclass
class DeepgramTTSSettings(TTSSettings):
    """``model`` is the Aura voice model (``aura-2-thalia-en``…); ``extra`` is added to the query."""

    model: str | None = "aura-2-thalia-en"


class DeepgramTTSService(SocketTTSService):
    """Deepgram Aura streaming TTS: one socket, a ``Speak`` + ``Flush`` per unit, ``Clear`` on interruption.

    Args:
        api_key: The key (else ``DEEPGRAM_API_KEY``), sent as ``Authorization: Token``.
        base_url: Host root (``ws://127.0.0.1:PORT`` for a local server); ``/v1/speak`` is
            appended. None: Deepgram's.
        settings: :class:`DeepgramTTSSettings`.
        clear_timeout_secs: How long a new unit waits for the ``Cleared`` of an
            interrupted one before the socket is replaced.
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``…).
    """

    capabilities = ServiceCapabilities(transport="websocket", sample_rates=SAMPLE_RATES)

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        settings: DeepgramTTSSettings | None = None,
        clear_timeout_secs: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(url=ws_url(base_url, DEFAULT_BASE_URL, "/v1/speak", "deepgram"),
                         api_key=resolve_api_key("deepgram", api_key),
                         settings=settings if settings is not None else DeepgramTTSSettings(), **kwargs)
        self.clear_timeout_secs = clear_timeout_secs
        self.metadata: dict[str, Any] | None = None  # the last Metadata message
        self._active: str | None = None  # the unit whose audio the binary frames are
        self._by_ctx: dict[str, str] = {}  # utterance context id -> its unit in flight
        self._clears = 0  # Clear sent, Cleared not yet received
        self._cleared = asyncio.Event()
        self._cleared.set()
        self._warnings = 0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self.sample_rate not in SAMPLE_RATES:
            raise ConfigError(f"{self.name}: sample rate {self.sample_rate} is not one of {SAMPLE_RATES}")

    async def on_settings_changed(self, changed: dict[str, Any]) -> None:
        self.reconnect_later()  # everything is in the query: the next unit opens a new socket

    # ------------------------------------------------------------ the socket

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        params = {"model": str(self.settings.model), "encoding": "linear16", "sample_rate": str(self.sample_rate)}
        params.update({k: str(v) for k, v in self.settings.extra.items()})
        return params, {"Authorization": f"Token {self._api_key.reveal()}"}

    def goodbye_message(self) -> dict[str, Any] | None:
        return {"type": "Close"}

    def on_socket_closed(self, exc: Any) -> None:
        self._active = None
        self._by_ctx.clear()
        self._clears = 0
        self._cleared.set()

    # ------------------------------------------------------------ requests

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        if self._clears:
            try:
                async with asyncio.timeout(self.clear_timeout_secs):
                    await self._cleared.wait()
            except TimeoutError:
                logger.warning("%s: no Cleared within %g s; opening a new socket", self.name,
                               self.clear_timeout_secs)
                await self.close_socket()
        await self.connect()
        unit = uuid.uuid4().hex
        self.contexts.open(unit)
        self._active = unit
        self._by_ctx[context_id] = unit
        finished = False
        try:
            await self.send_json({"type": "Speak", "text": text})
            await self.send_json({"type": "Flush"})
            items = cast(AsyncGenerator[Any, None], self.contexts.items(unit))
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
            finished = True
        finally:
            if self._by_ctx.get(context_id) == unit:
                del self._by_ctx[context_id]
            if not finished:  # interrupted, timed out or failed: clear what the server still has
                await self._clear(unit)
            elif self._active == unit:
                self._active = None

    async def on_context_interrupted(self, context_id: str) -> None:
        unit = self._by_ctx.pop(context_id, None)
        if unit is not None:
            await self._clear(unit)

    async def _clear(self, unit: str) -> None:
        self.contexts.cancel(unit)
        if self._active != unit:
            return
        self._active = None
        if self.connected:
            self._clears += 1
            self._cleared.clear()
            await self.send_quietly({"type": "Clear"})

    # ------------------------------------------------------------ receiving

    def on_binary(self, data: bytes) -> None:
        unit = self._active
        if self._clears or unit is None:
            self.contexts.stale_dropped += 1  # audio of a cleared unit, still in flight
            return
        self.contexts.put(unit, TTSAudio(data))

    def on_text(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            self.bad_input("a message that is not a JSON object", raw)
            return
        if kind == "Flushed":
            if not self._clears and self._active is not None:
                self.contexts.finish(self._active)
        elif kind == "Cleared":
            self._clears = max(0, self._clears - 1)
            if not self._clears:
                self._cleared.set()
        elif kind == "Metadata":
            self.metadata = msg
            logger.debug("%s: metadata: model %s, request %s", self.name, msg.get("model_name"),
                         msg.get("request_id"))
        elif kind == "Warning":
            self._warnings += 1
            if _WARN.due(self._warnings):
                _WARN(self._warnings, "%s: Deepgram warning %s: %s (#%d)", self.name, str(msg.get("code"))[:40],
                      self.redact(str(msg.get("description") or msg.get("warn_msg") or ""))[:200], self._warnings)
        elif kind in ("Error", "error"):
            text = msg.get("description") or msg.get("err_msg") or msg.get("message") or "error"
            exc = ServiceStatusError(self.redact(f"{self.name}: {text}"), 400)
            if self._active is not None:
                self.contexts.fail(self._active, exc)
        else:
            self.unknown_message(kind)
