"""Gemini Live (the ``BidiGenerateContent`` WebSocket of the Gemini API): speech to speech.

Wire protocol:

* https://ai.google.dev/gemini-api/docs/live-api/get-started-websocket
* https://ai.google.dev/api/live (the message reference)
* https://ai.google.dev/gemini-api/docs/live-session (session limits, resumption, goAway)

``wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=<key>``
(or the key in an ``x-goog-api-key`` header: ``auth="header"``, UNCONFIRMED). Every message
is a JSON object with one top-level field. The client sends ``setup`` first (model,
``generationConfig`` with ``responseModalities`` and the voice, ``systemInstruction``,
``tools.functionDeclarations``, ``realtimeInputConfig``, the transcription switches,
``sessionResumption``, ``contextWindowCompression``) and waits for ``setupComplete``; then
``realtimeInput.audio`` (base64 PCM16, ``audio/pcm;rate=16000``), ``realtimeInput.activityStart``
/ ``activityEnd`` (local turns: automatic activity detection disabled), ``clientContent``
(text turns) and ``toolResponse.functionResponses``. The server sends
``serverContent`` (``modelTurn.parts[].inlineData`` = PCM16 at 24 kHz, ``inputTranscription``,
``outputTranscription``, ``generationComplete``, ``interrupted``, ``turnComplete``),
``toolCall.functionCalls``, ``toolCallCancellation``, ``goAway`` (``timeLeft``),
``sessionResumptionUpdate`` (``newHandle``, ``resumable``) and ``usageMetadata`` beside any
of them. Server JSON may come in binary frames: both are decoded. Errors come as the close
(code and reason; 1007 invalid argument, 1011 internal or quota), reported and reconnected.

How the realtime seam maps onto it:

* **turns**: Gemini sends no speech-start/stop events. With server VAD the first
  ``inputTranscription`` fragment while the model is silent, or ``interrupted``, is the
  caller starting to speak (``UserStartedSpeakingFrame``, an interruption); the model's first
  output is the end of the turn (``UserStoppedSpeakingFrame``); TTFB runs from the last
  fragment of the caller's transcript to the first audio. The caller's transcript (fragments,
  not ordered against the model's output) goes upstream as one ``TranscriptionFrame`` when a
  model turn completes or asks for a tool.
* **barge-in**: the server cuts its own generation and says ``interrupted``; the rest of that
  turn (until its ``turnComplete``) is dropped. Gemini has no truncate or cancel message:
  the server's history keeps what it generated, and nothing is sent (UNCONFIRMED how much of
  the unheard audio the model remembers; :attr:`conversation`, replayed into a fresh session
  without a resumption handle, keeps only the transcript received before the cut).
* **tools**: each ``toolCall.functionCalls[]`` (``id``, ``name``, ``args``) runs through the
  function machinery at once (``toolCallCancellation.ids`` cancels those still running); a result goes back as ``toolResponse.functionResponses[]``
  (``id``, ``name``, ``response`` = the result object, or ``{"result": value}``), after which the
  model continues by itself (no response request is sent).
* **session**: the setup is fixed for a connection, so a change of tools, instructions or
  settings reconnects (resuming with the last handle: everything but the model may change).
  ``goAway`` renews the session once the running turn ended, or a second before the deadline
  (``timeLeft``) if it has not, with
  ``sessionResumption.handle`` = the last ``sessionResumptionUpdate.newHandle`` while
  ``resumable``; without a handle the conversation is replayed as ``clientContent`` text
  turns (``turnComplete: false``). A greeting (a first context) is asked for with
  ``clientContent.turnComplete: true`` (UNCONFIRMED: with no ``turns`` of its own).
* **usage**: ``usageMetadata`` (``promptTokenCount``, ``responseTokenCount`` or
  ``candidatesTokenCount``, ``*TokensDetails`` by modality) as ``LLMTokenUsage`` whenever it
  comes (UNCONFIRMED whether the counts are per turn or per session).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from ...errors import ServiceConnectionError, ServiceTimeout
from ...frames import Frame, UserStartedSpeakingFrame
from ...runtime import FrameDirection
from .._backoff import Backoff
from .._realtime import RealtimeLLMSettings
from .._realtime_state import ConversationItem
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from ._gemini_turns import GeminiLiveTurns
from ._gemini_wire import _object, _response, _without_handle
from .openai import _ws_url

__all__ = ["GeminiLiveLLMService", "GeminiLiveLLMSettings", "GeminiLiveSettings"]

logger = logging.getLogger("flowcat.services.realtime.gemini")

DEFAULT_URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)

PROVIDERS = (
    ProviderInfo(
        name="gemini",
        kind="realtime",
        title="Google Gemini Live (BidiGenerateContent)",
        service="flowcat.services.realtime.GeminiLiveLLMService",
        docs=(
            "https://ai.google.dev/gemini-api/docs/live-api/get-started-websocket",
            "https://ai.google.dev/api/live",
            "https://ai.google.dev/gemini-api/docs/live-session",
        ),
        env="GOOGLE_API_KEY",
        base_url=DEFAULT_URL,
        notes="16 kHz in, 24 kHz out; server VAD or activityStart/End; goAway resumes with the last handle",
    ),
)


@dataclass
class GeminiLiveLLMSettings(RealtimeLLMSettings):
    """The ``setup`` (a change reconnects: the setup is fixed for a connection).

    Attributes:
        model: The model (``models/`` is added when missing).
        voice: A prebuilt voice name.
        language: ``speechConfig.languageCode`` (None: the model's choice).
        modalities: ``responseModalities`` (``AUDIO``; ``TEXT`` gives text output).
        input_transcription: Ask for the caller's transcript.
        output_transcription: Ask for the transcript of the model's audio.
        activity_detection: More ``automaticActivityDetection`` fields with server VAD
            (``startOfSpeechSensitivity``, ``silenceDurationMs``, …; UNCONFIRMED names).
        session_resumption: Ask for resumption handles (used on reconnection).
        context_window_compression: The ``contextWindowCompression`` object (e.g.
            ``{"slidingWindow": {}}``; None: off, the session is capped).
        temperature: ``generationConfig.temperature`` (None: the default).
    """

    model: str | None = "models/gemini-2.5-flash-native-audio-preview-12-2025"
    voice: str | None = "Charon"
    language: str | None = None
    modalities: tuple[str, ...] = ("AUDIO",)
    input_transcription: bool = True
    output_transcription: bool = True
    activity_detection: dict[str, Any] | None = None
    session_resumption: bool = True
    context_window_compression: dict[str, Any] | None = None
    temperature: float | None = None


GeminiLiveSettings = GeminiLiveLLMSettings
"""Short alias of :class:`GeminiLiveLLMSettings`."""


class GeminiLiveLLMService(GeminiLiveTurns):
    """Gemini Live speech-to-speech (see the module docstring).

    Args:
        api_key: The key (else ``GOOGLE_API_KEY``, then ``GEMINI_API_KEY``).
        url: The socket URL without the key (``ws://127.0.0.1:PORT/ws/…`` for a local server).
        settings: :class:`GeminiLiveLLMSettings`.
        auth: ``"query"`` (``?key=``) or ``"header"`` (``x-goog-api-key``).
        max_session_secs: Renew the session after this long (None: on ``goAway`` only).
        **kwargs: :class:`~flowcat.services.RealtimeLLMService` arguments.
    """

    vendor = "google"
    input_sample_rate: ClassVar[int] = 16000
    output_sample_rate: ClassVar[int] = 24000
    binary_json: ClassVar[bool] = True

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        url: str | None = None,
        settings: GeminiLiveLLMSettings | None = None,
        auth: str = "query",
        max_session_secs: float | None = None,
        reconnect: Backoff | None = None,
        **kwargs: Any,
    ) -> None:
        if api_key is None and not os.environ.get("GOOGLE_API_KEY") and os.environ.get("GEMINI_API_KEY"):
            api_key = resolve_api_key("gemini")
        super().__init__(
            settings=settings or GeminiLiveLLMSettings(),
            api_key=resolve_api_key(self.vendor, api_key),
            max_session_secs=max_session_secs,
            reconnect=reconnect,
            **kwargs,
        )
        self.url = _ws_url(url or DEFAULT_URL)
        self.auth = auth
        self._resuming = False  # this connection resumed a session: nothing is replayed
        self._last_setup: dict[str, Any] | None = None
        self._in_session: set[int] = set()  # ids of conversation items the session has
        self._no_resume = False  # the next session starts fresh (a reseed without replay)

    # ------------------------------------------------------------------ wire

    def socket_url(self) -> str:
        if self.auth == "header":
            return self.url
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}key={quote(self._api_key.reveal(), safe='')}"

    def socket_headers(self) -> dict[str, str]:
        if self.auth != "header":
            return {}
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        return {"x-goog-api-key": self._api_key.reveal()}

    def _instructions(self) -> str | None:
        if self.s.instructions is not None:
            return self.s.instructions
        system = [i.text for i in self.conversation.items if i.role == "system"]
        return "\n".join(system) if system else None

    def _declarations(self) -> list[dict[str, Any]]:
        ctx = self._context
        out = []
        for t in (self.tools_for(ctx) if ctx is not None else None) or [
            s.to_openai() for s in self.tool_schemas()
        ]:
            fn = t.get("function", t)
            decl: dict[str, Any] = {"name": fn.get("name"), "description": fn.get("description", "")}
            params = fn.get("parameters")
            if params and params.get("properties"):
                decl["parameters"] = params
            out.append(decl)
        return out

    def setup_message(self) -> dict[str, Any]:
        """The ``setup`` message of the next connection."""
        s = self.s
        model = s.model or ""
        gen: dict[str, Any] = {"responseModalities": list(s.modalities)}
        if "AUDIO" in s.modalities:
            speech: dict[str, Any] = {}
            if s.voice:
                speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": s.voice}}
            if s.language:
                speech["languageCode"] = s.language
            if speech:
                gen["speechConfig"] = speech
        if s.temperature is not None:
            gen["temperature"] = s.temperature
        setup: dict[str, Any] = {
            "model": model if model.startswith("models/") else f"models/{model}",
            "generationConfig": gen,
        }
        instructions = self._instructions()
        if instructions:
            setup["systemInstruction"] = {"parts": [{"text": instructions}]}
        decls = self._declarations()
        if decls:
            setup["tools"] = [{"functionDeclarations": decls}]
        vad: dict[str, Any] = {"disabled": not s.server_vad}
        if s.server_vad and s.activity_detection:
            vad.update(s.activity_detection)
        setup["realtimeInputConfig"] = {"automaticActivityDetection": vad}
        if s.input_transcription:
            setup["inputAudioTranscription"] = {}
        if s.output_transcription and "AUDIO" in s.modalities:
            setup["outputAudioTranscription"] = {}
        if s.session_resumption:
            handle = None if self._no_resume else self.resumption_handle
            setup["sessionResumption"] = {"handle": handle} if handle else {}
        if s.context_window_compression is not None:
            setup["contextWindowCompression"] = s.context_window_compression
        setup.update(s.extra)
        return {"setup": setup}

    def session_events(self) -> list[dict[str, Any]]:
        message = self.setup_message()
        self._resuming = "handle" in message["setup"].get("sessionResumption", {})
        self._last_setup = _without_handle(message)
        self._no_resume = False
        if not self._resuming:
            self._in_session.clear()  # a fresh session has nothing yet
        self._turn, self._said = None, []  # a turn of the old connection will not complete
        return [message]

    async def session_ready(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Wait for ``setupComplete`` (nothing may be sent before it)."""
        try:
            async with asyncio.timeout(self.connect_timeout_secs):
                await self._setup_complete(ws)
        except TimeoutError:
            raise ServiceTimeout(f"{self.name}: no setupComplete in {self.connect_timeout_secs} s") from None

    async def _setup_complete(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    event = json.loads(msg.data)
                except ValueError:
                    self.bad_input("a setup answer that is not JSON", msg.data)
                    continue
                if isinstance(event, dict) and "setupComplete" in event:
                    return
                logger.debug(
                    "%s: %s before setupComplete",
                    self.name,
                    self.event_kind(event) if isinstance(event, dict) else "a message",
                )
                continue
            reason = f": {msg.extra}" if msg.type is aiohttp.WSMsgType.CLOSE and msg.extra else ""
            raise ServiceConnectionError(
                self.redact(f"{self.name}: closed during setup (code {ws.close_code}{reason})"),
                retryable=ws.close_code not in (1007, 1008),
            )

    async def renew_session(self, *, instructions: str | None = None, replay: bool = True) -> None:
        """As the base; without ``replay`` (a relay's reseed) the fresh session does not resume the
        old one (it would keep its audio history)."""
        if not replay:
            self._no_resume = True
        await super().renew_session(instructions=instructions, replay=replay)

    async def update_session(self) -> None:
        """The setup changed: reconnect (resuming when a handle exists; a new model cannot resume)."""
        if self._last_setup is None or _without_handle(self.setup_message()) == self._last_setup:
            return
        if (self.s.model or "").removeprefix("models/") != str(
            self._last_setup["setup"].get("model", "")
        ).removeprefix("models/"):
            self.resumption_handle = None
        logger.info("%s: the setup changed; reconnecting", self.name)
        await self.renew_session()

    def _content(self, item: ConversationItem) -> dict[str, Any] | None:
        if item.role == "user":
            return {"role": "user", "parts": [{"text": item.text}]}
        if item.role == "assistant":
            return {"role": "model", "parts": [{"text": item.text}]}
        if item.role == "function_call":  # replay only (UNCONFIRMED in clientContent)
            return {
                "role": "model",
                "parts": [
                    {"functionCall": {"id": item.call_id, "name": item.name, "args": _object(item.text)}}
                ],
            }
        if item.role == "function_call_output":
            return {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": item.call_id,
                            "name": self._call_names.get(item.call_id, ""),
                            "response": _response(item.text),
                        }
                    }
                ],
            }
        return None  # system: the setup's systemInstruction

    def replay_events(self, items: list[ConversationItem]) -> list[dict[str, Any]]:
        if self._resuming:
            return []  # the resumed session has what the old one had
        self._in_session.update(id(i) for i in items)
        turns = [c for c in map(self._content, items) if c is not None]
        return [{"clientContent": {"turns": turns, "turnComplete": False}}] if turns else []

    def item_events(self, item: ConversationItem) -> list[dict[str, Any]]:
        if item.role == "function_call_output":
            self._tool_reply = True
            return [
                {
                    "toolResponse": {
                        "functionResponses": [
                            {
                                "id": item.call_id,
                                "name": self._call_names.get(item.call_id, ""),
                                "response": _response(item.text),
                            }
                        ]
                    }
                }
            ]
        if id(item) in self._in_session:
            return []
        self._in_session.add(id(item))
        content = self._content(item)
        return [{"clientContent": {"turns": [content], "turnComplete": False}}] if content else []

    def audio_message(self, b64: str) -> str:
        return '{"realtimeInput":{"audio":{"data":"' + b64 + '","mimeType":"audio/pcm;rate=16000"}}}'

    def commit_events(self) -> list[dict[str, Any]]:
        return [{"realtimeInput": {"activityEnd": {}}}]

    def response_event(self) -> dict[str, Any] | None:
        if self._tool_reply:
            self._tool_reply = False
            return None  # the model goes on by itself after a toolResponse
        return {"clientContent": {"turnComplete": True}}

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if (
            type(frame) is UserStartedSpeakingFrame
            and direction is FrameDirection.DOWNSTREAM
            and not self._server_vad
        ):
            await self.send_event({"realtimeInput": {"activityStart": {}}})
        await super().handle_frame(frame, direction)
