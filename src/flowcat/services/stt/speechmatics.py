"""Speechmatics real-time speech-to-text over its WebSocket (RT API v2).

Wire protocol:

* https://docs.speechmatics.com/rt-api-ref
* https://docs.speechmatics.com/features/end-of-turn (``conversation_config``, ``EndOfUtterance``)

``GET wss://eu.rt.speechmatics.com/v2`` (``eu2``, ``us2``… per region: pass ``base_url``)
with ``Authorization: Bearer <key>`` (or, with ``token_auth=True``, a temporary key as
``?jwt=``). The client opens with ``StartRecognition`` (``audio_format`` ``{type: raw,
encoding: pcm_s16le, sample_rate}``, ``transcription_config`` ``{language,
enable_partials, max_delay, operating_point, conversation_config}``) and waits for
``RecognitionStarted``; audio goes up as binary frames (each one an ``AddAudio``; the
server acknowledges with ``AudioAdded`` ``{seq_no}``). At the end of speech the client
sends ``ForceEndOfUtterance`` (the server finalizes what it holds, then ``EndOfUtterance``;
**unconfirmed** on the reference page we read, so ``force_end_of_utterance=False`` turns it
off and the transcript then comes within ``max_delay``). At the end: ``EndOfStream``
``{last_seq_no}`` (the number of audio frames sent); the server sends its last
``AddTranscript``, ``EndOfTranscript`` and closes.

Down come ``AddPartialTranscript`` (interim) and ``AddTranscript`` (final for its span;
each one a ``TranscriptionFrame``, as Deepgram's ``is_final`` results are), both with
``metadata.transcript`` and ``results[]`` (words with ``alternatives[0].content``);
``EndOfUtterance``; ``Info``/``Warning`` (logged); ``Error`` ``{type, reason}``, after
which the server closes. Error types are mapped by :func:`error_for` (``not_authorised``
-> auth; ``quota_exceeded`` -> rate limit; ``invalid_*``, ``protocol_error``,
``not_allowed``, ``insufficient_funds`` -> not retryable; ``job_error``, ``internal_error``,
``timelimit_exceeded``, ``idle_timeout``, ``session_transfer``… -> reconnect). A refused
upgrade is 400/401/405 per the reference page.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

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

__all__ = ["SpeechmaticsSTTService", "SpeechmaticsSTTSettings"]

logger = logging.getLogger("flowcat.services.stt.speechmatics")

PROVIDERS = (
    ProviderInfo(
        name="speechmatics",
        kind="stt",
        title="Speechmatics real-time",
        service="flowcat.services.stt.SpeechmaticsSTTService",
        docs=("https://docs.speechmatics.com/rt-api-ref",),
        env="SPEECHMATICS_API_KEY",
        base_url="wss://eu.rt.speechmatics.com/v2",
        notes="partials and finals, ForceEndOfUtterance at end of speech, EndOfStream at the end",
    ),
)

DEFAULT_BASE_URL = "wss://eu.rt.speechmatics.com"
_PATH = "/v2"

_AUTH = {"not_authorised", "not_authorized"}
_RATE = {"quota_exceeded"}
_FATAL = {"invalid_message", "invalid_model", "invalid_config", "invalid_audio_type", "invalid_output_format",
          "not_allowed", "protocol_error", "insufficient_funds", "data_error"}


def error_for(kind: str, reason: str, what: str = "speechmatics") -> ServiceError:
    """The service error for a Speechmatics ``Error`` message's ``type``."""
    msg = f"{what}: {kind}: {reason}"
    if kind in _AUTH:
        return ServiceAuthError(msg, 401)
    if kind in _RATE:
        return ServiceRateLimitError(msg, 429)
    if kind in _FATAL or kind.startswith("invalid_"):
        return ServiceStatusError(msg, 400)
    return ServiceConnectionError(msg)  # job_error, internal_error, timeouts, session_transfer, unknown: reconnect


@dataclass
class SpeechmaticsSTTSettings(STTSettings):
    """``transcription_config`` of ``StartRecognition`` (None: not sent, Speechmatics' default applies).

    ``model`` is the ``operating_point`` (``standard`` or ``enhanced``). ``extra`` entries
    are merged into ``transcription_config``. A change applies from the next connection.
    """

    model: str | None = "enhanced"
    language: str | None = "en"
    enable_partials: bool = True
    max_delay: float | None = 1.0
    end_of_utterance_silence_trigger: float | None = None


class SpeechmaticsSTTService(SocketSTTService):
    """Speechmatics real-time STT (partials, finals, ForceEndOfUtterance at end of speech).

    Args:
        api_key: The key (else ``SPEECHMATICS_API_KEY``), sent as ``Authorization: Bearer``;
            with ``token_auth``, a temporary key sent as ``?jwt=``.
        base_url: Host root (``ws://127.0.0.1:PORT`` for a local server); ``/v2`` is appended.
            None: ``wss://eu.rt.speechmatics.com``.
        settings: :class:`SpeechmaticsSTTSettings`.
        token_auth: Authenticate with a temporary key in the query instead of the header.
        force_end_of_utterance: Send ``ForceEndOfUtterance`` when the user stops speaking.
        **kwargs: :class:`SocketSTTService` arguments (``close_timeout_secs``…).

    Events: ``on_end_of_utterance(svc, msg)``, ``on_recognition_started(svc, msg)``.
    """

    capabilities = ServiceCapabilities(interim_results=True, word_timestamps=True, transport="websocket")

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        settings: SpeechmaticsSTTSettings | None = None,
        token_auth: bool = False,
        force_end_of_utterance: bool = True,
        **kwargs: Any,
    ) -> None:
        url = socket_url(base_url, DEFAULT_BASE_URL, _PATH, "speechmatics")
        super().__init__(url=url, api_key=resolve_api_key("speechmatics", api_key),
                         settings=settings if settings is not None else SpeechmaticsSTTSettings(), **kwargs)
        self.token_auth = token_auth
        self.force_end_of_utterance = force_end_of_utterance
        self.session_id: str | None = None
        self.seq_no = 0  # audio frames sent on this connection
        self.acked_seq_no = 0  # the last AudioAdded
        for name in ("on_end_of_utterance", "on_recognition_started"):
            self._register_event_handler(name)

    # ------------------------------------------------------------ handshake

    def start_message(self) -> dict[str, Any]:
        """``StartRecognition``, as sent."""
        s = self.settings
        assert isinstance(s, SpeechmaticsSTTSettings)  # noqa: S101 - the constructor's settings type
        config: dict[str, Any] = {"language": s.language or "en", "enable_partials": s.enable_partials}
        if s.max_delay is not None:
            config["max_delay"] = s.max_delay
        if s.model:
            config["operating_point"] = s.model
        if s.end_of_utterance_silence_trigger is not None:
            config["conversation_config"] = {"end_of_utterance_silence_trigger": s.end_of_utterance_silence_trigger}
        config.update(s.extra)
        return {"message": "StartRecognition",
                "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate},
                "transcription_config": config}

    def handshake(self) -> tuple[dict[str, str], dict[str, str]]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        if self.token_auth:
            return {"jwt": self._api_key.reveal()}, {}
        return {}, {"Authorization": f"Bearer {self._api_key.reveal()}"}

    async def opening(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.seq_no = self.acked_seq_no = 0
        await ws.send_str(json.dumps(self.start_message()))

    def session_started(self, msg: dict[str, Any]) -> bool:
        if msg.get("message") != "RecognitionStarted":
            return False
        self.session_id = str(msg.get("id") or "")
        logger.debug("%s: recognition %s started", self.name, self.session_id)
        return True

    async def connect(self) -> None:
        await super().connect()
        await self._call_event_handler("on_recognition_started", {"id": self.session_id})

    def error_of(self, msg: dict[str, Any]) -> ServiceError | None:
        if msg.get("message") != "Error":
            return None
        return error_for(str(msg.get("type") or "unknown_error"), self.redact(str(msg.get("reason") or "")),
                         self.name)

    def close_error(self, code: int | None, reason: str) -> ServiceError:
        if code in (1008, 4001):  # policy violation / not authorised (unconfirmed codes: the Error message says more)
            return ServiceAuthError(self.redact(f"{self.name}: closed by the server (code {code}: {reason})"), 401)
        return super().close_error(code, reason)

    def closing_message(self) -> str | None:
        return json.dumps({"message": "EndOfStream", "last_seq_no": self.seq_no})

    # ---------------------------------------------------------------- audio

    async def send_audio(self, audio: bytes) -> None:
        if audio:
            await self.send_frame(audio)
            self.seq_no += 1

    async def finalize(self) -> None:
        if self.force_end_of_utterance:
            await self.send_json({"message": "ForceEndOfUtterance"})

    # ------------------------------------------------------------ receiving

    async def on_message(self, msg: dict[str, Any], raw: str) -> None:
        kind = msg.get("message")
        if kind in ("AddTranscript", "AddPartialTranscript"):
            try:
                text = _transcript(msg)
            except (KeyError, IndexError, TypeError, AttributeError):
                self.bad_input(f"an {kind} message without metadata.transcript or results", raw)
                return
            s = self.settings
            language = getattr(s, "language", None)
            await self.push_transcription(text, final=kind == "AddTranscript", language=language, result=msg)
        elif kind == "AudioAdded":
            seq = msg.get("seq_no")
            if isinstance(seq, int):
                self.acked_seq_no = seq
        elif kind == "EndOfUtterance":
            await self.stop_ttfb_metrics()  # nothing more came for this utterance
            await self._call_event_handler("on_end_of_utterance", msg)
        elif kind == "EndOfTranscript":
            logger.debug("%s: end of transcript", self.name)
        elif kind in ("Info", "Warning"):
            logger.debug("%s: %s %s: %s", self.name, kind, msg.get("type"), self.redact(str(msg.get("reason"))))
        else:
            self.unknown(kind)


def _transcript(msg: dict[str, Any]) -> str:
    """The text of an (partial) transcript message: ``metadata.transcript``, else its words."""
    meta = msg.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("transcript"), str):
        return str(meta["transcript"]).strip()
    out = ""
    for r in msg["results"]:
        content = str(r["alternatives"][0]["content"])
        out += content if r.get("type") == "punctuation" or not out else " " + content
    return out.strip()
