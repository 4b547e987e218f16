"""AssemblyAI Universal Streaming (v3) speech-to-text over its WebSocket.

Wire protocol:

* https://www.assemblyai.com/docs/api-reference/streaming-api/streaming-api
* https://www.assemblyai.com/docs/streaming/universal-streaming/message-sequence
* https://www.assemblyai.com/docs/streaming/universal-streaming
* https://www.assemblyai.com/docs/streaming/common-session-errors-and-closures

``GET wss://streaming.assemblyai.com/v3/ws?speech_model=…&sample_rate=…&encoding=pcm_s16le
&format_turns=…[&end_of_turn_confidence_threshold=…][&min_end_of_turn_silence_when_confident=…]
[&max_turn_silence=…][&keyterms_prompt=…]`` with ``Authorization: <key>`` (or, with
``token_auth=True``, a temporary token as ``?token=``). The server opens with ``Begin``
(``id``, ``expires_at``). Audio goes up as binary PCM frames of 50 to 1000 ms each (a
frame outside that range closes the session, code 3007): the base's batches are cut to
at most 1000 ms, a tail shorter than 50 ms waits for more audio, and at the end of speech
it is padded with silence to 50 ms before ``{"type": "ForceEndpoint"}``. Control goes up as
text JSON: ``ForceEndpoint`` when the user stops speaking, ``UpdateConfiguration`` (turn
detection parameters, when those settings change), ``{"type": "Terminate"}`` at the end
(the server sends the turns in flight, ``Termination``, and closes 1000; AssemblyAI bills
the time the socket stays open, so it is always sent).

Down come ``Turn`` messages (``turn_order``, ``turn_is_formatted``, ``end_of_turn``,
``transcript``, ``words[]``, ``end_of_turn_confidence``): ``end_of_turn`` true (and, with
``format_turns``, ``turn_is_formatted`` true: the formatted copy follows the unformatted
end of turn) is the final ``TranscriptionFrame``; the others are interims, whose text is
the turn's words so far. ``SpeechStarted`` and ``Termination`` are reported as events.

Errors: an ``Error`` message (``error_code``, ``error``) precedes the close with that code.
Two generations of the closures page disagree, so both are accepted: 1008 (unauthorized:
a bad key, or too many concurrent sessions), 3005 (server error; older pages used it for
every error), 3006 (invalid message), 3007 (audio chunk duration or rate), 3008 (session
expired), 3009 (too many concurrent sessions). Codes are mapped by :func:`close_error`;
one not listed is a retryable connection error, and the text is logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ...errors import (
    ServiceAuthError,
    ServiceConnectionError,
    ServiceError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from .._ai_service import ServiceCapabilities
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._stt import STTSettings
from ._socket import SocketSTTService, socket_url

__all__ = ["AssemblyAISTTService", "AssemblyAISTTSettings"]

logger = logging.getLogger("flowcat.services.stt.assemblyai")

PROVIDERS = (
    ProviderInfo(
        name="assemblyai",
        kind="stt",
        title="AssemblyAI Universal Streaming (v3)",
        service="flowcat.services.stt.AssemblyAISTTService",
        docs=("https://www.assemblyai.com/docs/api-reference/streaming-api/streaming-api",
              "https://www.assemblyai.com/docs/streaming/universal-streaming/message-sequence"),
        env="ASSEMBLYAI_API_KEY",
        base_url="wss://streaming.assemblyai.com",
        notes="Turn messages (interim/final), ForceEndpoint at end of speech, Terminate at the end",
    ),
)

DEFAULT_BASE_URL = "wss://streaming.assemblyai.com"
_PATH = "/v3/ws"
_MIN_MS, _MAX_MS = 50, 1000
_FORCE_ENDPOINT = '{"type": "ForceEndpoint"}'
_TERMINATE = '{"type": "Terminate"}'
_TURN_FIELDS = ("end_of_turn_confidence_threshold", "min_end_of_turn_silence_when_confident", "max_turn_silence")


@dataclass
class AssemblyAISTTSettings(STTSettings):
    """Query parameters of the streaming socket (None: not sent, AssemblyAI's default applies).

    ``model`` is ``speech_model`` (required by current docs). The turn detection fields
    changed mid-call are sent as ``UpdateConfiguration``; the others apply from the next
    connection. ``extra`` entries are sent as more query parameters.
    """

    model: str | None = "universal-streaming-english"
    language: str | None = "en"
    format_turns: bool = True
    end_of_turn_confidence_threshold: float | None = None
    min_end_of_turn_silence_when_confident: int | None = None
    max_turn_silence: int | None = None
    keyterms_prompt: list[str] | None = None


def close_error(code: int | None, text: str, what: str = "assemblyai") -> ServiceError:
    """The service error for an AssemblyAI error code (an ``Error`` message's or the close's)."""
    msg = f"{what}: {text or 'closed by the server'} (code {code})"
    lowered = text.lower()
    if code == 3009 or (code == 1008 and "concurren" in lowered):
        return ServiceRateLimitError(msg, 429)
    if code == 1008:
        return ServiceAuthError(msg, 401)
    if code == 3006:
        return ServiceStatusError(msg, 400)
    if code == 3005 and ("invalid" in lowered):
        return ServiceStatusError(msg, 400)
    # 3005 (server error), 3007 (chunk duration or rate: a burst after a reconnection),
    # 3008 (session expired: a new session helps), 1011 and anything else: reconnect.
    return ServiceConnectionError(msg)


class AssemblyAISTTService(SocketSTTService):
    """AssemblyAI Universal Streaming STT (interim and final turns, ForceEndpoint at end of speech).

    Args:
        api_key: The key (else ``ASSEMBLYAI_API_KEY``), sent as ``Authorization: <key>``;
            with ``token_auth``, a temporary token sent as ``?token=``.
        base_url: Host root (``ws://127.0.0.1:PORT`` for a local server; the EU host is
            ``wss://streaming.eu.assemblyai.com``); ``/v3/ws`` is appended. None: AssemblyAI's.
        settings: :class:`AssemblyAISTTSettings`.
        token_auth: Authenticate with a temporary token in the query instead of the header.
        audio_batch_secs: Audio per binary frame (clamped to 50..1000 ms).
        **kwargs: :class:`SocketSTTService` arguments (``close_timeout_secs``…).

    Events: ``on_begin(svc, msg)``, ``on_speech_started(svc, msg)``, ``on_turn(svc, msg)``
    (every Turn), ``on_termination(svc, msg)``.
    """

    capabilities = ServiceCapabilities(interim_results=True, word_timestamps=True, transport="websocket")

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        settings: AssemblyAISTTSettings | None = None,
        token_auth: bool = False,
        audio_batch_secs: float = 0.1,
        **kwargs: Any,
    ) -> None:
        url = socket_url(base_url, DEFAULT_BASE_URL, _PATH, "assemblyai")
        super().__init__(url=url, api_key=resolve_api_key("assemblyai", api_key),
                         settings=settings if settings is not None else AssemblyAISTTSettings(),
                         audio_batch_secs=min(max(audio_batch_secs, _MIN_MS / 1000), _MAX_MS / 1000), **kwargs)
        self.token_auth = token_auth
        self.session_id: str | None = None
        self._pending = bytearray()  # audio shorter than 50 ms, waiting for more
        for name in ("on_begin", "on_speech_started", "on_turn", "on_termination"):
            self._register_event_handler(name)

    # ------------------------------------------------------------ handshake

    def query_params(self) -> dict[str, str]:
        """The handshake's query parameters, as sent (the token excluded)."""
        s = self.settings
        assert isinstance(s, AssemblyAISTTSettings)  # noqa: S101 - the constructor's settings type
        q: dict[str, str] = {}
        if s.model:
            q["speech_model"] = s.model
        q.update(sample_rate=str(self.sample_rate), encoding="pcm_s16le",
                 format_turns="true" if s.format_turns else "false")
        for name in _TURN_FIELDS:
            value = getattr(s, name)
            if value is not None:
                q[name] = str(value)
        if s.keyterms_prompt:
            q["keyterms_prompt"] = json.dumps(s.keyterms_prompt)
        q.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in s.extra.items()})
        return q

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        q = self.query_params()
        if self.token_auth:
            return {**q, "token": self._api_key.reveal()}, {}
        return q, {"Authorization": self._api_key.reveal()}

    def session_started(self, msg: dict[str, Any]) -> bool:
        if msg.get("type") != "Begin":
            return False
        self.session_id = str(msg.get("id") or "")
        logger.debug("%s: session %s began (expires at %s)", self.name, self.session_id, msg.get("expires_at"))
        self._pending.clear()
        return True

    async def connect(self) -> None:
        await super().connect()
        await self._call_event_handler("on_begin", {"id": self.session_id})

    def error_of(self, msg: dict[str, Any]) -> ServiceError | None:
        if msg.get("type") != "Error" and not ("error" in msg and "type" not in msg):
            return None
        code = msg.get("error_code")
        return close_error(code if isinstance(code, int) else None, self.redact(str(msg.get("error") or "")),
                           self.name)

    def close_error(self, code: int | None, reason: str) -> ServiceError:
        return close_error(code, self.redact(reason), self.name)

    def closing_message(self) -> str | None:
        return _TERMINATE

    # ---------------------------------------------------------------- audio

    async def send_audio(self, audio: bytes) -> None:
        """Send ``audio`` in frames of 50..1000 ms; a tail under 50 ms waits for more."""
        pending = self._pending
        pending += audio
        lo = _MIN_MS * self.sample_rate // 1000 * 2
        hi = _MAX_MS * self.sample_rate // 1000 * 2
        while len(pending) >= lo:
            n = len(pending)
            if n > hi:
                n = hi if n - hi >= lo else n - lo  # never leave a tail shorter than 50 ms behind
            chunk = bytes(pending[:n])
            await self.send_frame(chunk)
            del pending[:n]

    async def finalize(self) -> None:
        pending = self._pending
        if pending:
            lo = _MIN_MS * self.sample_rate // 1000 * 2
            chunk = bytes(pending) + bytes(max(0, lo - len(pending)))  # silence after the end of speech
            await self.send_frame(chunk)
            pending.clear()
        ws = self._ws
        if ws is None or ws.closed:
            raise ServiceConnectionError(f"{self.name}: not connected")
        await self.send_json({"type": "ForceEndpoint"})

    async def update_configuration(self, **fields: Any) -> None:
        """Send ``UpdateConfiguration`` with ``fields`` (turn detection parameters)."""
        await self.send_json({"type": "UpdateConfiguration", **fields})

    async def on_settings_changed(self, changed: dict[str, Any]) -> None:
        live = {k: v for k, v in changed.items() if k in _TURN_FIELDS and v is not None}
        if live and self._ws is not None:
            try:
                await self.update_configuration(**live)
            except ServiceError as exc:
                logger.debug("%s: UpdateConfiguration: %s", self.name, self.redact(str(exc)))

    # ------------------------------------------------------------ receiving

    async def on_message(self, msg: dict[str, Any], raw: str) -> None:
        kind = msg.get("type")
        if kind == "Turn":
            await self._on_turn(msg, raw)
        elif kind == "SpeechStarted":
            await self._call_event_handler("on_speech_started", msg)
        elif kind == "Termination":
            logger.debug("%s: terminated after %s s of audio", self.name, msg.get("audio_duration_seconds"))
            await self._call_event_handler("on_termination", msg)
        elif kind == "Begin":
            logger.debug("%s: a second Begin (%s)", self.name, msg.get("id"))
        else:
            self.unknown(kind)

    async def _on_turn(self, msg: dict[str, Any], raw: str) -> None:
        s = self.settings
        assert isinstance(s, AssemblyAISTTSettings)  # noqa: S101 - the constructor's settings type
        try:
            transcript = str(msg.get("transcript") or "")
            words = msg.get("words") or []
            end = bool(msg.get("end_of_turn"))
            formatted = bool(msg.get("turn_is_formatted"))
            if not isinstance(words, list):
                self.bad_input("a Turn message whose words are not a list", raw)
                return
            live = " ".join(str(w["text"]) for w in words if w["text"])
        except (KeyError, TypeError, AttributeError):
            self.bad_input("a Turn message with malformed words", raw)
            return
        language = msg.get("language_code") or s.language
        await self._call_event_handler("on_turn", msg)
        if end and (formatted or not s.format_turns):
            if transcript:
                await self.push_transcription(transcript, final=True, language=language, result=msg)
            else:
                await self.stop_ttfb_metrics()  # the turn ended with nothing said
        else:
            await self.push_transcription(live or transcript, final=False, language=language, result=msg)
