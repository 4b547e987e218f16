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
import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from ...errors import ServiceConnectionError, ServiceTimeout
from ...frames import Frame, LLMTokenUsage, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
from ...runtime import FrameDirection
from .._backoff import Backoff
from .._realtime import RealtimeLLMService, RealtimeLLMSettings
from .._realtime_state import ConversationItem
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
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

GO_AWAY_MARGIN_SECS = 1.0
"""A turn still running this long before a ``goAway`` deadline is cut by the renewal."""

_KNOWN = (
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "setupComplete",
    "usageMetadata",
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


class GeminiLiveLLMService(RealtimeLLMService):
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
        self.resumption_handle: str | None = None
        """The last resumable ``newHandle`` (used by the next connection)."""
        self._resuming = False  # this connection resumed a session: nothing is replayed
        self._last_setup: dict[str, Any] | None = None
        self._in_session: set[int] = set()  # ids of conversation items the session has
        self._call_names: dict[str, str] = {}
        self._tool_reply = False  # results went up since the last response request
        self._turn: str | None = None  # the model turn being received
        self._turns = 0
        self._said: list[str] = []  # the model's transcript of the current turn
        self._heard: list[str] = []  # fragments of the caller's transcript
        self._usage: LLMTokenUsage | None = None  # the usageMetadata of the message being handled
        self._no_resume = False  # the next session starts fresh (a reseed without replay)

    @property
    def s(self) -> GeminiLiveLLMSettings:
        return self._settings  # type: ignore[return-value]

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

    # ---------------------------------------------------------------- events

    def event_kind(self, event: dict[str, Any]) -> str | None:
        for key in _KNOWN:
            if key in event:
                return key
        return next(iter(event), None)  # an unknown message: ignored, not malformed

    async def handle_event(self, event: dict[str, Any]) -> None:
        raw_usage = event.get("usageMetadata")
        self._usage = _usage(raw_usage) if raw_usage is not None else None  # turnComplete takes it
        content = event.get("serverContent")
        if content is not None:
            await self._server_content(content)
        if "toolCall" in event:
            await self._on_tool_call(event["toolCall"])
        if "toolCallCancellation" in event:
            for call_id in event["toolCallCancellation"].get("ids") or ():
                if await self.cancel_function_call(str(call_id), "withdrawn by the model"):
                    logger.info("%s: the model withdrew tool call %s", self.name, call_id)
        if "sessionResumptionUpdate" in event:
            update = event["sessionResumptionUpdate"]
            if update.get("resumable") and update.get("newHandle"):
                self.resumption_handle = str(update["newHandle"])
        if "goAway" in event:
            await self._go_away(event["goAway"].get("timeLeft"))
        usage, self._usage = self._usage, None
        if usage is not None:  # not taken by a turn's end
            await self.start_llm_usage_metrics(usage)

    async def _go_away(self, time_left: Any) -> None:
        """Renew the session now, or when the running turn ends, but before the deadline anyway."""
        secs = _seconds(time_left)
        logger.info("%s: goAway (%s s left): renewing the session", self.name, secs)
        await self.renew_session()
        if self._renew_due and secs is not None:
            if self._cap_task is not None:  # the session cap: this renewal comes first
                await self.cancel_task(self._cap_task)
            self._cap_task = self.create_task(
                self._renew_by(max(0.0, secs - GO_AWAY_MARGIN_SECS)),
                f"{self.name}_go_away",
                generation_bound=False,
            )

    async def _renew_by(self, secs: float) -> None:
        await asyncio.sleep(secs)
        if self._renew_due:
            logger.info("%s: the goAway deadline is near: renewing during the turn", self.name)
            await self._end_response()  # the turn will not complete on the new connection
            await self._renew()

    async def _server_content(self, content: dict[str, Any]) -> None:
        if content.get("interrupted"):
            await self._interrupted()
        heard = (content.get("inputTranscription") or {}).get("text")
        if heard:
            if self._server_vad and not self._user_speaking and self._turn is None:
                await self.on_speech_started()
            self._heard.append(str(heard))
            await self.start_ttfb_metrics()
        for part in (content.get("modelTurn") or {}).get("parts") or ():
            data = (part.get("inlineData") or {}).get("data")
            if data is not None:
                try:
                    pcm = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    self.bad_input("modelTurn audio that is not base64", None)
                    continue
                await self.on_audio(await self._turn_id(), self._turn or "", pcm)
            elif part.get("text") and not part.get("thought") and "AUDIO" not in self.s.modalities:
                await self.on_text(await self._turn_id(), str(part["text"]), spoken=False)
                self._said.append(str(part["text"]))
        said = (content.get("outputTranscription") or {}).get("text")
        if said:
            rid = await self._turn_id()
            if self._live(rid):
                self._said.append(str(said))
            await self.on_text(rid, str(said), spoken=True)
        if content.get("generationComplete") and self._turn is not None:
            await self.on_audio_done(self._turn)
        if content.get("turnComplete"):
            await self._turn_complete()

    async def _turn_id(self) -> str:
        """The model turn being received (its first output starts it and ends the caller's turn)."""
        if self._turn is None:
            self._turns += 1
            self._turn = f"turn_{self._turns}"
            self._said = []
            self._tool_reply = False
            if self._user_speaking:
                self._user_speaking = False
                await self.broadcast_frame(UserStoppedSpeakingFrame)
            await self.on_response_started(self._turn)
        return self._turn

    async def _flush_heard(self) -> None:
        text, self._heard = "".join(self._heard), []
        await self.on_user_transcript(text)

    async def _interrupted(self) -> None:
        if self._server_vad and not self._user_speaking:
            await self.on_speech_started()  # the barge-in, the interruption both ways
        else:
            await self._barge_in()

    async def _turn_complete(self) -> None:
        turn, self._turn = self._turn, None
        if turn is None or not self._live(turn):
            if turn is not None:  # cut by a barge-in: keep what was received before the cut
                said, self._said = "".join(self._said), []
                self.conversation.add(ConversationItem("assistant", said))
                await self.on_response_done(turn, "cancelled", None)
            return
        await self._flush_heard()
        await self.on_text_done(turn, "".join(self._said))
        self._said = []
        usage, self._usage = self._usage, None
        await self.on_response_done(turn, "completed", usage)

    async def _on_tool_call(self, body: dict[str, Any]) -> None:
        rid = await self._turn_id()
        await self._flush_heard()
        if self._said:
            await self.on_text_done(rid, "".join(self._said))
            self._said = []
        for call in body.get("functionCalls") or ():
            call_id, name = str(call.get("id") or ""), str(call["name"])
            self._call_names[call_id] = name
            await self.on_function_call(rid, call_id, name, json.dumps(call.get("args") or {}))
        self._turn = None  # the calls run now; the model answers after their results
        await self.on_response_done(rid, "completed", None)


def _seconds(value: Any) -> float | None:
    """A protobuf ``Duration`` as JSON (``"5s"``, ``"1.5s"``, or ``{"seconds", "nanos"}``)."""
    try:
        if isinstance(value, str):
            return float(value.strip().removesuffix("s"))
        if isinstance(value, dict):
            return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
    except ValueError:
        return None
    return None


def _without_handle(message: dict[str, Any]) -> dict[str, Any]:
    setup = dict(message["setup"])
    setup.pop("sessionResumption", None)
    return {"setup": setup}


def _object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def _response(text: str) -> dict[str, Any]:
    """A tool result as the ``response`` object: the result's own object, else ``{"result": …}``."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _by_modality(details: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict):
            out[str(d.get("modality") or "").upper()] = int(d.get("tokenCount") or 0)
    return out


def _usage(raw: Any) -> LLMTokenUsage | None:
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("promptTokenCount") or 0)
    completion = int(raw.get("responseTokenCount") or raw.get("candidatesTokenCount") or 0)
    inp = _by_modality(raw.get("promptTokensDetails"))
    out = _by_modality(raw.get("responseTokensDetails") or raw.get("candidatesTokensDetails"))
    cached = raw.get("cachedContentTokenCount")
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(raw.get("totalTokenCount") or prompt + completion),
        cache_read_input_tokens=int(cached) if cached is not None else None,
        input_audio_tokens=inp.get("AUDIO"),
        input_text_tokens=inp.get("TEXT"),
        output_audio_tokens=out.get("AUDIO"),
        output_text_tokens=out.get("TEXT"),
    )
