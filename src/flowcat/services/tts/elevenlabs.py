"""ElevenLabs text-to-speech over the multi-context WebSocket, with word timestamps from its alignment.

Wire protocol:

* https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-multi-stream-input
* https://elevenlabs.io/docs/eleven-api/guides/how-to/websockets/multi-context-web-socket
* (single context, not used: https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-stream-input)

``GET wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/multi-stream-input?model_id=
&output_format=pcm_<rate>&auto_mode=&sync_alignment=[&language_code=][&inactivity_timeout=]
[&apply_text_normalization=][&enable_logging=]`` with the ``xi-api-key`` header. One socket
carries many contexts (at most 5 at a time). Client messages (snake_case): a context is
opened with ``{"text": " ", "context_id", "voice_settings"?}``, text is
``{"text": "... ", "context_id", "flush": true}``, ``{"context_id", "close_context": true}``
closes it, ``{"close_socket": true}`` ends the socket; ``{"text": ""}`` keeps it alive.
Server messages (camelCase): ``{"audio": <base64 PCM16>, "alignment" | "normalizedAlignment":
{"chars", "charStartTimesMs", "charDurationsMs"}, "contextId"}`` and finally
``{"isFinal": true, "contextId"}``.

Each unit of text (a sentence) is its own ElevenLabs context: opened, sent with ``flush``
and closed at once, so the server generates it all and ``isFinal`` marks the end of that
unit's audio (the protocol has no per-flush marker). On interruption (or a unit given up)
the context is closed again with ``close_context`` — the barge-in form — and whatever still
arrives for it is dropped. Alignment characters are joined into words (a word may span
chunks); each word's time counts from the start of its unit's audio.

Where the single-context ``stream-input`` endpoint differs: no ``context_id``; the first
message must be the ``" "`` BOS with the settings; an empty ``text`` is the end of input
and closes the socket (on multi-stream it is a keepalive); ``isFinal`` ends the socket's
only stream.

UNCONFIRMED, accepted both ways: ``isFinal`` or ``is_final``, ``contextId`` or
``context_id``; ``charDurationsMs`` or ``charsDurationsMs``; whether alignment times count
from the chunk (documented for single-context) or from the context (told apart by the
first later chunk, logged once); in-socket errors as ``{"error" | "message", "code"}``;
that a second ``close_context`` for a closing context is accepted; that ``pcm_*`` is
16-bit little-endian mono; a context-less ``{"text": ""}`` keepalive.
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
from urllib.parse import quote

from ...errors import ConfigError, ServiceAuthError, ServiceError, ServiceRateLimitError, ServiceStatusError
from ...frames import StartFrame
from .._ai_service import ServiceCapabilities
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._tts import TTSAudio, TTSChunk, TTSSettings, TTSWords
from ._socket import SocketTTSService, ws_url

__all__ = ["ElevenLabsTTSService", "ElevenLabsTTSSettings"]

logger = logging.getLogger("flowcat.services.tts.elevenlabs")

PROVIDERS = (
    ProviderInfo(
        name="elevenlabs",
        kind="tts",
        title="ElevenLabs multi-context WebSocket",
        service="flowcat.services.tts.ElevenLabsTTSService",
        docs=("https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-multi-stream-input",),
        env="ELEVENLABS_API_KEY",
        base_url="wss://api.elevenlabs.io",
        notes="a context per sentence, word timestamps from the character alignment",
    ),
)

DEFAULT_BASE_URL = "wss://api.elevenlabs.io"
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100)
_AUTH_CODES = {"invalid_api_key", "unauthorized", "missing_api_key", "quota_exceeded", "only_for_creator+"}
_BUSY_CODES = {"too_many_concurrent_requests", "system_busy", "rate_limit_exceeded"}


@dataclass
class ElevenLabsTTSSettings(TTSSettings):
    """Connection (query) and voice settings; ``voice`` is the voice id.

    ``stability``, ``similarity_boost``, ``style``, ``use_speaker_boost`` and ``speed`` are
    sent as the context's ``voice_settings`` when any is set; ``extra`` is merged into
    each context's opening message (``generation_config``, ``pronunciation_dictionary_locators``).
    """

    model: str | None = "eleven_flash_v2_5"
    auto_mode: bool = True
    sync_alignment: bool = True
    inactivity_timeout: int | None = None
    apply_text_normalization: str | None = None
    enable_logging: bool | None = None
    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None
    speed: float | None = None

    def voice_settings(self) -> dict[str, Any]:
        fields = ("stability", "similarity_boost", "style", "use_speaker_boost", "speed")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _Unit:
    """One ElevenLabs context: one unit of text, its audio so far and the word being joined."""

    __slots__ = ("audio_bytes", "id", "partial", "partial_start")

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.audio_bytes = 0
        self.partial = ""
        self.partial_start = 0.0


class ElevenLabsTTSService(SocketTTSService):
    """ElevenLabs multi-context WebSocket TTS.

    Args:
        api_key: The key (else ``ELEVENLABS_API_KEY``), sent as ``xi-api-key``.
        voice_id: Shortcut for ``settings.voice`` (required one way or the other).
        base_url: Host root (``ws://127.0.0.1:PORT`` for a local server). None: ElevenLabs'.
        settings: :class:`ElevenLabsTTSSettings`.
        keepalive_secs: Idle time after which ``{"text": ""}`` is sent (the server closes
            after ``inactivity_timeout``, 20 s by default).
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``…).
    """

    capabilities = ServiceCapabilities(word_timestamps=True, context_ids=True, transport="websocket",
                                       sample_rates=SAMPLE_RATES)

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        voice_id: str | None = None,
        base_url: str | None = None,
        settings: ElevenLabsTTSSettings | None = None,
        keepalive_secs: float | None = 10.0,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else ElevenLabsTTSSettings()
        if voice_id is not None:
            settings.voice = voice_id
        if not settings.voice:
            raise ConfigError("elevenlabs: a voice_id is required")
        super().__init__(url=ws_url(base_url, DEFAULT_BASE_URL, "", "elevenlabs"), keepalive_secs=keepalive_secs,
                         api_key=resolve_api_key("elevenlabs", api_key), settings=settings, **kwargs)
        self._units: dict[str, _Unit] = {}  # ElevenLabs context id -> unit in flight
        self._current: dict[str, str] = {}  # utterance context id -> its unit's ElevenLabs context
        self._cumulative: bool | None = None  # alignment times from the context (True) or the chunk

    @property
    def _s(self) -> ElevenLabsTTSSettings:
        return cast(ElevenLabsTTSSettings, self.settings)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self.sample_rate not in SAMPLE_RATES:
            raise ConfigError(f"{self.name}: sample rate {self.sample_rate} is not one of {SAMPLE_RATES}")

    async def on_settings_changed(self, changed: dict[str, Any]) -> None:
        if changed.keys() & {"voice", "model", "language", "auto_mode", "sync_alignment", "inactivity_timeout",
                             "apply_text_normalization", "enable_logging"}:
            self.reconnect_later()  # query settings: the next unit opens a new socket

    # ------------------------------------------------------------ the socket

    def socket_url(self) -> str:
        return f"{self.url}/v1/text-to-speech/{quote(str(self._s.voice), safe='')}/multi-stream-input"

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        s = self._s
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        params = {"model_id": str(s.model), "output_format": f"pcm_{self.sample_rate}",
                  "auto_mode": _flag(s.auto_mode), "sync_alignment": _flag(s.sync_alignment)}
        if s.language:
            params["language_code"] = s.language
        if s.inactivity_timeout is not None:
            params["inactivity_timeout"] = str(s.inactivity_timeout)
        if s.apply_text_normalization is not None:
            params["apply_text_normalization"] = s.apply_text_normalization
        if s.enable_logging is not None:
            params["enable_logging"] = _flag(s.enable_logging)
        return params, {"xi-api-key": self._api_key.reveal()}

    def keepalive_message(self) -> dict[str, Any] | None:
        return {"text": ""}

    def goodbye_message(self) -> dict[str, Any] | None:
        return {"close_socket": True}

    def on_socket_closed(self, exc: Any) -> None:
        self._units.clear()
        self._current.clear()

    # ------------------------------------------------------------ requests

    def opening(self, wire_id: str) -> dict[str, Any]:
        """The message that opens an ElevenLabs context, as sent."""
        msg: dict[str, Any] = {"text": " ", "context_id": wire_id}
        voice = self._s.voice_settings()
        if voice:
            msg["voice_settings"] = voice
        msg.update(self._s.extra)
        return msg

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        await self.connect()
        unit = _Unit()
        self._units[unit.id] = unit
        self._current[context_id] = unit.id
        self.contexts.open(unit.id)
        finished = False
        try:
            await self.send_json(self.opening(unit.id))
            await self.send_json({"text": text.strip() + " ", "context_id": unit.id, "flush": True})
            await self.send_json({"context_id": unit.id, "close_context": True})
            items = cast(AsyncGenerator[Any, None], self.contexts.items(unit.id))
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
            finished = True
        finally:
            if self._current.get(context_id) == unit.id:
                del self._current[context_id]
            if not finished:  # interrupted, timed out or failed: the context is given up
                await self._give_up(unit.id)
            self._units.pop(unit.id, None)

    async def on_context_interrupted(self, context_id: str) -> None:
        wire_id = self._current.pop(context_id, None)
        if wire_id is not None:
            await self._give_up(wire_id)

    async def _give_up(self, wire_id: str) -> None:
        """Barge-in: drop what still arrives for the context and close it (once)."""
        self.contexts.cancel(wire_id)
        if self._units.pop(wire_id, None) is not None:
            await self.send_quietly({"context_id": wire_id, "close_context": True})

    # ------------------------------------------------------------ receiving

    def on_text(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
            wire_id = msg.get("contextId", msg.get("context_id"))
        except (ValueError, AttributeError):
            self.bad_input("a message that is not a JSON object", raw)
            return
        wire_id = str(wire_id)
        unit = self._units.get(wire_id)
        audio_b64 = msg.get("audio")
        if audio_b64:
            try:
                audio = base64.b64decode(audio_b64, validate=True)
            except (TypeError, ValueError, binascii.Error):
                self.bad_input("audio that is not base64", raw)
                return
            alignment = msg.get("alignment") or msg.get("normalizedAlignment")
            if unit is not None and alignment:
                words = self._words(unit, alignment, raw)
                if words:
                    self.contexts.put(wire_id, TTSWords(words))
            if self.contexts.put(wire_id, TTSAudio(audio)) and unit is not None:
                unit.audio_bytes += len(audio)
        if msg.get("isFinal") is True or msg.get("is_final") is True:
            if unit is not None and unit.partial:
                self.contexts.put(wire_id, TTSWords([(unit.partial, unit.partial_start)]))
                unit.partial = ""
            self.contexts.finish(wire_id)
        elif not audio_b64 and ("error" in msg or "message" in msg):
            self._on_error(msg, wire_id if "contextId" in msg or "context_id" in msg else None)
        elif not audio_b64 and "audio" not in msg:
            self.unknown_message(",".join(sorted(msg))[:40])

    def _words(self, unit: _Unit, alignment: Any, raw: str) -> list[tuple[str, float]]:
        """Complete words of one chunk's alignment, with times from the unit's audio start."""
        try:
            chars = [str(c) for c in alignment["chars"]]
            starts = [float(t) / 1000.0 for t in alignment["charStartTimesMs"]]
        except (KeyError, TypeError, ValueError):
            self.bad_input("alignment without chars/charStartTimesMs", raw)
            return []
        offset = unit.audio_bytes / (2 * (self.sample_rate or 1))
        if offset > 0 and starts and self._cumulative is None:
            # A later chunk starting near the audio before it: times count from the context.
            self._cumulative = starts[0] >= offset / 2
            logger.info("%s: alignment times count from the start of the %s", self.name,
                        "context" if self._cumulative else "chunk")
        base = 0.0 if self._cumulative else offset
        words: list[tuple[str, float]] = []
        for ch, start in zip(chars, starts, strict=False):
            if ch.isspace():
                if unit.partial:
                    words.append((unit.partial, round(unit.partial_start, 6)))
                    unit.partial = ""
            else:
                if not unit.partial:
                    unit.partial_start = base + start
                unit.partial += ch
        return words

    def _on_error(self, msg: dict[str, Any], wire_id: str | None) -> None:
        text = msg.get("message") or msg.get("error") or "error"
        code = msg.get("code", msg.get("error"))
        what = self.redact(f"{self.name}: {text}{f' ({code})' if code and code != text else ''}")
        status = code if isinstance(code, int) else None
        exc: ServiceError
        if status in (401, 403) or code in _AUTH_CODES:
            exc = ServiceAuthError(what, status or 401)
        elif status == 429 or code in _BUSY_CODES:
            exc = ServiceRateLimitError(what, 429)
        else:
            exc = ServiceStatusError(what, status if status and status >= 400 else 400)
        if wire_id is None:
            self.contexts.fail_all(exc)
        else:
            self.contexts.fail(wire_id, exc)
