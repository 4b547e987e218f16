"""Rime text-to-speech over its JSON WebSocket (``/ws3``), with word timestamps.

Wire protocol:

* https://docs.rime.ai/api-reference/endpoint/websockets-json (the JSON socket's messages)
* https://docs.rime.ai/docs/websockets (``/ws3`` is the current endpoint; ``/ws2`` legacy, mist only)
* https://docs.rime.ai/docs/websockets-segment (``segment=never``: synthesis only on flush)

``GET wss://users-ws.rime.ai/ws3?speaker=<voice>&modelId=<model>&audioFormat=pcm
&samplingRate=<rate>&segment=never[&lang=]`` with ``Authorization: Bearer <key>``; every
synthesis option is in the query. Client messages: ``{"text", "contextId"}``,
``{"operation": "flush"}`` (synthesize the buffer now), ``{"operation": "clear"}`` (drop
it: barge-in), ``{"operation": "eos"}`` (finish and close). Server messages: ``{"type":
"chunk", "data": <base64>, "contextId"}``, ``{"type": "timestamps", "word_timestamps":
{"words", "start", "end"}, "contextId"}`` (seconds from the start of that synthesis's
audio), ``{"type": "done", "contextId"?}`` when a synthesis is complete, and ``{"type":
"error", "message"}`` (the socket stays open).

Each unit of text (a sentence) is sent with its own ``contextId`` and flushed; ``done``
ends it. On interruption the client sends ``clear``; chunks still arriving carry the old
``contextId`` and are dropped.

UNCONFIRMED: the ``samplingRate`` query name and the rates ``pcm`` supports; that ``done``
repeats the ``contextId`` (without one it ends the unit in flight); that ``pcm`` is 16-bit
little-endian mono; ``/ws2`` sending ``done``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

from ...errors import ConfigError, ServiceStatusError
from .._ai_service import ServiceCapabilities
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._tts import TTSAudio, TTSChunk, TTSSettings, TTSWords
from ._socket import SocketTTSService, ws_url

__all__ = ["RimeTTSService", "RimeTTSSettings"]

logger = logging.getLogger("flowcat.services.tts.rime")

PROVIDERS = (
    ProviderInfo(
        name="rime",
        kind="tts",
        title="Rime JSON WebSocket",
        service="flowcat.services.tts.RimeTTSService",
        docs=("https://docs.rime.ai/api-reference/endpoint/websockets-json", "https://docs.rime.ai/docs/websockets"),
        env="RIME_API_KEY",
        base_url="wss://users-ws.rime.ai/ws3",
        notes="a contextId per sentence, word timestamps, clear on interruption",
    ),
)

DEFAULT_URL = "wss://users-ws.rime.ai/ws3"
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


@dataclass
class RimeTTSSettings(TTSSettings):
    """Query settings: ``voice`` is the ``speaker``, ``model`` the ``modelId``, ``language``
    the ``lang``; ``extra`` is added to the query (``speedAlpha``, ``reduceLatency``…)."""

    model: str | None = "arcana"
    segment: str = "never"


class RimeTTSService(SocketTTSService):
    """Rime JSON WebSocket TTS: a ``contextId`` and a flush per unit, ``clear`` on interruption.

    Args:
        api_key: The key (else ``RIME_API_KEY``), sent as ``Authorization: Bearer``.
        voice_id: Shortcut for ``settings.voice`` (the speaker; required one way or the other).
        url: The socket URL (``ws://127.0.0.1:PORT/ws3`` for a local server). None: ``/ws3`` of Rime.
        settings: :class:`RimeTTSSettings`.
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``…).
    """

    capabilities = ServiceCapabilities(word_timestamps=True, context_ids=True, transport="websocket",
                                       sample_rates=SAMPLE_RATES)

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        voice_id: str | None = None,
        url: str | None = None,
        settings: RimeTTSSettings | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else RimeTTSSettings()
        if voice_id is not None:
            settings.voice = voice_id
        if not settings.voice:
            raise ConfigError("rime: a voice_id (speaker) is required")
        super().__init__(url=ws_url(url, DEFAULT_URL, "", "rime"), api_key=resolve_api_key("rime", api_key),
                         settings=settings, **kwargs)
        self._active: str | None = None  # the contextId of the unit in flight
        self._by_ctx: dict[str, str] = {}  # utterance context id -> its unit's contextId

    @property
    def _s(self) -> RimeTTSSettings:
        return cast(RimeTTSSettings, self.settings)

    async def on_settings_changed(self, changed: dict[str, Any]) -> None:
        self.reconnect_later()  # everything is in the query: the next unit opens a new socket

    # ------------------------------------------------------------ the socket

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        s = self._s
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        params = {"speaker": str(s.voice), "modelId": str(s.model), "audioFormat": "pcm",
                  "samplingRate": str(self.sample_rate), "segment": s.segment}
        if s.language:
            params["lang"] = s.language
        params.update({k: str(v) for k, v in s.extra.items()})
        return params, {"Authorization": f"Bearer {self._api_key.reveal()}"}

    def goodbye_message(self) -> dict[str, Any] | None:
        return {"operation": "eos"}

    def on_socket_closed(self, exc: Any) -> None:
        self._active = None
        self._by_ctx.clear()

    # ------------------------------------------------------------ requests

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        await self.connect()
        unit = uuid.uuid4().hex
        self.contexts.open(unit)
        self._active = unit
        self._by_ctx[context_id] = unit
        finished = False
        try:
            await self.send_json({"text": text.strip() + " ", "contextId": unit})
            await self.send_json({"operation": "flush"})
            items = cast(AsyncGenerator[Any, None], self.contexts.items(unit))
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
            finished = True
        finally:
            if self._by_ctx.get(context_id) == unit:
                del self._by_ctx[context_id]
            if not finished:  # interrupted, timed out or failed: clear what Rime still has
                await self._clear(unit)
            elif self._active == unit:
                self._active = None

    async def on_context_interrupted(self, context_id: str) -> None:
        unit = self._by_ctx.pop(context_id, None)
        if unit is not None:
            await self._clear(unit)

    async def _clear(self, unit: str) -> None:
        self.contexts.cancel(unit)
        if self._active == unit:
            self._active = None
            await self.send_quietly({"operation": "clear"})

    # ------------------------------------------------------------ receiving

    def on_text(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
            kind = msg.get("type")
            unit = msg.get("contextId") or self._active
        except (ValueError, AttributeError):
            self.bad_input("a message that is not a JSON object", raw)
            return
        unit = str(unit)
        if kind == "chunk":
            try:
                audio = base64.b64decode(msg["data"], validate=True)
            except (KeyError, TypeError, ValueError, binascii.Error):
                self.bad_input("a chunk without base64 audio in data", raw)
                return
            self.contexts.put(unit, TTSAudio(audio))
        elif kind == "timestamps":
            try:
                ts = msg["word_timestamps"]
                words = [(str(w), float(t)) for w, t in zip(ts["words"], ts["start"], strict=False)]
            except (KeyError, TypeError, ValueError):
                self.bad_input("timestamps without word_timestamps.words/start", raw)
                return
            self.contexts.put(unit, TTSWords(words))
        elif kind == "done":
            self.contexts.finish(unit)
        elif kind == "error":
            text = msg.get("message") or msg.get("error") or "error"
            if self._active is not None:
                self.contexts.fail(self._active, ServiceStatusError(self.redact(f"{self.name}: {text}"), 400))
        else:
            self.unknown_message(kind)
