"""Amazon Nova Sonic speech-to-speech (Bedrock ``InvokeModelWithBidirectionalStream``).

Wire protocol:

* https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-input-events.html
* https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-output-events.html
* https://docs.aws.amazon.com/nova/latest/userguide/input-events.html ,
  https://docs.aws.amazon.com/nova/latest/userguide/output-events.html (Nova Sonic v1)
* https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-barge-in.html
* https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithBidirectionalStream.html

The transport (:mod:`._nova_wire`): one HTTP/2 request per session, SigV4-signed (service
``bedrock``), AWS event-stream framing both ways, each input event in a signed envelope.
**Why h2 and not the AWS SDK**: boto3/botocore have no bidirectional streams; the only Python
SDK that has this operation is the experimental Smithy-based ``aws-sdk-bedrock-runtime``,
built on the AWS CRT's native HTTP/2 client, which needs TLS to a real endpoint and could not
be driven against a local fake (so could not be tested here). flowcat already owns SigV4 and
the event-stream codec (the Bedrock ConverseStream LLM uses them); the pure-Python ``h2``
state machine over asyncio (:mod:`flowcat.services._http2`, the ``aws`` extra) is the rest,
and works against a cleartext HTTP/2 fake (``endpoint_url="http://127.0.0.1:PORT"``).

Events (JSON, ``{"event": {<name>: {…}}}``). Up: ``sessionStart`` (``inferenceConfiguration``),
``promptStart`` (a ``promptName``, ``textOutputConfiguration``, ``audioOutputConfiguration``
with the voice at 24 kHz, ``toolUseOutputConfiguration``, ``toolConfiguration.tools[].toolSpec``
with ``inputSchema.json`` as a JSON string), the system prompt as a ``SYSTEM`` text content
(``contentStart`` / ``textInput`` / ``contentEnd``), the conversation so far as ``USER`` /
``ASSISTANT`` text contents (history goes only here: once, after the system prompt, before
audio), then one ``AUDIO`` content (``interactive``, 16 kHz LPCM) that every ``audioInput``
chunk of the session joins. A tool result is a ``TOOL`` content (``toolResultInputConfiguration.toolUseId``)
with ``toolResult``; the model goes on by itself. A session ends with ``contentEnd`` (audio),
``promptEnd`` and ``sessionEnd``.

Down: ``completionStart``; per block ``contentStart`` (``type`` TEXT/AUDIO/TOOL, ``role``,
``additionalModelFields`` = ``{"generationStage": "SPECULATIVE"|"FINAL"}`` as a JSON string),
``textOutput`` / ``audioOutput`` / ``toolUse``, ``contentEnd`` (``stopReason`` PARTIAL_TURN,
END_TURN, INTERRUPTED, TOOL_USE); ``usageEvent`` (``details.delta.input/output.speechTokens``
/ ``textTokens``); ``completionEnd``. The service maps them:

* the ``USER`` FINAL text is the caller's transcript: its ``contentStart`` is the start of the
  caller's turn (Nova Sonic sends no speech start: server VAD only, ``server_vad=False`` is
  refused), its ``contentEnd`` the end (TTFB runs from there);
* ``ASSISTANT`` SPECULATIVE text is what the next audio will say (``TTSTextFrame`` with the
  audio position); FINAL text (what was actually spoken) goes to the conversation log, even for
  a turn cut by a barge-in: that is Nova's equivalent of truncation (there is no truncate or
  cancel event; the server cuts its own turn);
* a barge-in is a ``textOutput`` of ``{"interrupted": true}`` or ``stopReason: INTERRUPTED``
  (UNCONFIRMED which one the current model sends: both are taken): playback is cut at once and
  the rest of the turn dropped;
* a response ends with the END_TURN/INTERRUPTED ``contentEnd`` of an assistant FINAL text, a
  TOOL_USE ``contentEnd``, or ``completionEnd`` (UNCONFIRMED whether that one comes per turn);
* exceptions end the stream: reported (``ErrorFrame`` with the exception and Bedrock's status)
  and the session is reopened with the conversation replayed as text, as for a dropped
  connection. Sessions are capped at 8 minutes: ``max_session_secs`` defaults to 7.5 minutes.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast
from urllib.parse import quote

import aiohttp

from ...errors import ConfigError, ServiceError, require_extra
from ...frames import LLMTokenUsage
from .._ai_service import ServiceCapabilities
from .._backoff import Backoff
from .._http2 import H2Stream
from .._realtime import RealtimeLLMService, RealtimeLLMSettings
from .._realtime_state import ConversationItem
from .._registry import ProviderInfo
from .._secrets import redact
from .._sigv4 import STREAMING_EVENTS, EventSigner, resolve_aws_credentials, resolve_aws_region, sign_request
from . import _nova_events as ev
from ._nova_wire import EVENTSTREAM, NovaSocket, refusal

__all__ = ["AWSNovaSonicLLMService", "NovaSonicSettings"]

PROVIDERS = (
    ProviderInfo(
        name="nova_sonic",
        kind="realtime",
        title="Amazon Nova Sonic (Bedrock bidirectional stream)",
        service="flowcat.services.realtime.AWSNovaSonicLLMService",
        docs=(
            "https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-input-events.html",
            "https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-output-events.html",
            "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithBidirectionalStream.html",
        ),
        env="AWS_ACCESS_KEY_ID",
        extra="aws",
        base_url="https://bedrock-runtime.us-east-1.amazonaws.com",
        notes="HTTP/2 (h2) + SigV4-signed event stream; server VAD only; 8-minute sessions renewed at 7.5",
    ),
)

DEFAULT_REGION = "us-east-1"


@dataclass
class NovaSonicSettings(RealtimeLLMSettings):
    """Session settings (a change opens a fresh session: the prompt is fixed per stream).

    Attributes:
        model: The Bedrock model id.
        voice: ``audioOutputConfiguration.voiceId``.
        max_tokens: ``inferenceConfiguration.maxTokens``.
        temperature: ``inferenceConfiguration.temperature``.
        top_p: ``inferenceConfiguration.topP``.
        endpointing_sensitivity: Nova 2 Sonic's ``turnDetectionConfiguration.endpointingSensitivity``
            (``HIGH``, ``MEDIUM``, ``LOW``; None: not sent).
    """

    model: str | None = "amazon.nova-2-sonic-v1:0"
    voice: str | None = "matthew"
    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 0.9
    endpointing_sensitivity: str | None = None


class AWSNovaSonicLLMService(RealtimeLLMService):
    """Amazon Nova Sonic speech-to-speech.

    Args:
        aws_access_key: Access key id (else ``AWS_ACCESS_KEY_ID``).
        aws_secret_key: Secret access key (else ``AWS_SECRET_ACCESS_KEY``).
        aws_session_token: Session token of temporary credentials (else ``AWS_SESSION_TOKEN``).
        aws_region: The region (else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1).
        endpoint_url: ``https://bedrock-runtime.<region>.amazonaws.com`` by default;
            ``http://127.0.0.1:PORT`` speaks cleartext HTTP/2 to a local server.
        settings: :class:`NovaSonicSettings` (``server_vad`` must stay True).
        max_session_secs: Renew the session after this long (under the 8-minute cap).
        **kwargs: :class:`~flowcat.services.RealtimeLLMService` arguments.

    Raises:
        ConfigError: No credentials, or ``server_vad=False``.
        MissingExtraError: ``h2`` is not installed (the ``aws`` extra).
    """

    capabilities = ServiceCapabilities(function_calling=True, parallel_tool_calls=True, transport="http2")
    binary_json: ClassVar[bool] = True
    input_sample_rate: ClassVar[int] = 16000
    output_sample_rate: ClassVar[int] = 24000

    def __init__(
        self,
        *,
        aws_access_key: str | None = None,
        aws_secret_key: str | None = None,
        aws_session_token: str | None = None,
        aws_region: str | None = None,
        endpoint_url: str | None = None,
        settings: NovaSonicSettings | None = None,
        max_session_secs: float | None = 7.5 * 60,
        reconnect: Backoff | None = None,
        **kwargs: Any,
    ) -> None:
        require_extra("h2.connection", "AWS Nova Sonic (HTTP/2)", "aws")  # fail here, not at the first call
        settings = settings or NovaSonicSettings()
        if not settings.server_vad:
            raise ConfigError("nova sonic: the model detects turns (server_vad=False is not supported)")
        self.region = resolve_aws_region(aws_region, DEFAULT_REGION)
        self.credentials = resolve_aws_credentials(aws_access_key, aws_secret_key, aws_session_token)
        super().__init__(settings=settings, api_key=self.credentials.secret_access_key,
                         max_session_secs=max_session_secs, reconnect=reconnect, **kwargs)  # fmt: skip
        base = endpoint_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"nova sonic: endpoint_url must be an http(s) URL, got {base!r}")
        self.endpoint_url = base.rstrip("/")
        self._prompt = self._audio_name = ""  # the session's promptName, its audio contentName
        self._opening = ("", "")  # those of the session being opened
        self._config: str | None = None  # the prompt configuration of the open session
        self._blocks: dict[str, tuple[str, str, str]] = {}  # contentId -> (type, role, stage)
        self._texts: dict[str, list[str]] = {}
        self._rid: str | None = None  # the model turn being received
        self._turns = 0
        self._usage = [0, 0, 0, 0]  # input speech, input text, output speech, output text

    @property
    def s(self) -> NovaSonicSettings:
        return self._settings  # type: ignore[return-value]

    def redact(self, text: str) -> str:
        return redact(text, self._api_key, self.credentials.session_token)

    # ------------------------------------------------------------- transport

    def socket_url(self) -> str:
        model = quote(str(self.s.model), safe="")
        return f"{self.endpoint_url}/model/{model}/invoke-with-bidirectional-stream"

    def socket_headers(self) -> dict[str, str]:
        return {"content-type": EVENTSTREAM}

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        url = self.socket_url()
        signed = sign_request("POST", url, list(self.socket_headers().items()), b"", credentials=self.credentials,
                              region=self.region, service="bedrock", payload_hash=STREAMING_EVENTS,
                              content_sha256_header=True)  # fmt: skip
        headers = [*self.socket_headers().items(), *((k.lower(), v) for k, v in signed.headers.items())]
        try:
            stream = await H2Stream.open(url, headers, timeout=self.connect_timeout_secs)
        except ServiceError as exc:
            raise type(exc)(self.redact(f"{self.name}: {exc}")) from None
        if stream.status != 200:
            raise await refusal(stream, self.name, self.redact)
        socket = NovaSocket(stream, EventSigner(self.credentials, self.region, "bedrock", signed.signature))
        # The base drives the stream through the subset of a client WebSocket it uses.
        return cast(aiohttp.ClientWebSocketResponse, socket)

    # ------------------------------------------------------------ input events

    def _tools(self) -> list[dict[str, Any]]:
        ctx = self._context
        tools = self.tools_for(ctx) if ctx is not None else None
        return ev.tool_specs(tools or [s.to_openai() for s in self.tool_schemas()])

    def _instructions(self) -> str | None:
        if self.s.instructions is not None:
            return self.s.instructions
        system = [i.text for i in self.conversation.items if i.role == "system"]
        return "\n".join(system) if system else None

    def _prompt_config(self) -> str:
        s = self.s
        config = [s.model, s.voice, s.max_tokens, s.temperature, s.top_p, s.endpointing_sensitivity,
                  self._instructions(), self._tools(), s.extra]  # fmt: skip
        return json.dumps(config, sort_keys=True, default=str)

    def session_events(self) -> list[dict[str, Any]]:
        """A whole fresh session: its start, the prompt, the system prompt, the conversation so
        far (history is allowed only here) and the audio content all the caller's audio joins."""
        s = self.s
        # The names switch in session_ready: until then the caller's audio goes to the old session.
        prompt, audio = self._opening = (str(uuid.uuid4()), str(uuid.uuid4()))
        self._config = self._prompt_config()
        events = [
            ev.session_start(s.max_tokens, s.top_p, s.temperature, s.endpointing_sensitivity),
            ev.prompt_start(prompt, s.voice, self.output_sample_rate, self._tools(), s.extra),
        ]
        instructions = self._instructions()
        if instructions:
            events += ev.text_content(prompt, "SYSTEM", instructions)
        for item in self.conversation.items:
            if item.role in ("user", "assistant") and item.text:
                events += ev.text_content(prompt, item.role.upper(), item.text)
        events.append(ev.audio_content_start(prompt, audio, self.input_sample_rate))
        return events

    async def session_ready(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._prompt, self._audio_name = self._opening
        self._blocks.clear()
        self._texts.clear()
        cast(NovaSocket, ws).farewell = ev.farewell(self._prompt, self._audio_name)
        self._rid = None  # a turn of the old session will not complete
        self._usage = [0, 0, 0, 0]

    def replay_events(self, items: list[ConversationItem]) -> list[dict[str, Any]]:
        return []  # the session events carry the conversation (it must precede the audio)

    async def update_session(self) -> None:
        """The prompt is fixed for a stream: a change opens a fresh session (conversation replayed)."""
        if self._config is not None and self._prompt_config() != self._config:
            await self.renew_session()

    def item_events(self, item: ConversationItem) -> list[dict[str, Any]]:
        if item.role != "function_call_output":
            return []  # history only goes into a fresh session
        return ev.tool_result_content(self._prompt, item.call_id, item.text)

    def audio_message(self, b64: str) -> str:
        return ev.audio_input(self._prompt, self._audio_name, b64)

    def commit_events(self) -> list[dict[str, Any]]:
        return []  # server VAD only

    def response_event(self) -> dict[str, Any] | None:
        return None  # the model answers by itself

    # ----------------------------------------------------------- output events

    def event_kind(self, event: dict[str, Any]) -> str | None:
        inner = event.get("event")
        if isinstance(inner, dict) and len(inner) == 1:
            kind = next(iter(inner))
            return kind if isinstance(kind, str) else None
        return None

    async def handle_event(self, event: dict[str, Any]) -> None:
        ((kind, body),) = event["event"].items()
        if kind == "audioOutput":
            try:
                pcm = base64.b64decode(body["content"], validate=True)
            except (binascii.Error, ValueError):
                self.bad_input("audioOutput with content that is not base64", None)
                return
            if self._rid is not None:  # else the rest of a turn already ended (cut by a barge-in)
                await self.on_audio(self._rid, str(body.get("contentId") or ""), pcm)
        elif kind == "textOutput":
            await self._text_output(body)
        elif kind == "contentStart":
            await self._content_start(body)
        elif kind == "contentEnd":
            await self._content_end(body)
        elif kind == "toolUse":
            await self._open_turn()
            await self.on_function_call(
                self._rid, str(body["toolUseId"]), str(body["toolName"]), str(body.get("content") or "{}")
            )
        elif kind == "usageEvent":
            delta = ev.usage_delta(body)
            if self._rid is None:  # after the turn it belongs to ended: reported as it comes
                await self.start_llm_usage_metrics(_usage(delta))
            else:
                self._usage = [a + b for a, b in zip(self._usage, delta, strict=True)]
        elif kind == "completionEnd":
            await self._close_turn("completed")

    async def _open_turn(self) -> None:
        if self._rid is None:
            self._turns += 1
            self._rid = f"turn_{self._turns}"
            await self.on_response_started(self._rid)

    async def _close_turn(self, status: str) -> None:
        rid, self._rid = self._rid, None
        if rid is None:
            return
        usage, self._usage = _usage(self._usage), [0, 0, 0, 0]
        await self.on_response_done(rid, status, usage)

    async def _content_start(self, body: dict[str, Any]) -> None:
        cid, role, kind = str(body["contentId"]), str(body.get("role") or ""), str(body.get("type") or "")
        stage = ""
        fields = body.get("additionalModelFields")
        if isinstance(fields, str) and fields:
            try:
                stage = str((json.loads(fields) or {}).get("generationStage") or "")
            except (ValueError, AttributeError):
                self.bad_input("contentStart with additionalModelFields that are not a JSON object", fields)
        self._blocks[cid] = (kind, role, stage)
        if role == "USER":
            if self._rid is not None:
                await self._close_turn("completed")  # the model's turn ended without saying so
            if not self._user_speaking:
                await self.on_speech_started()
        elif role in ("ASSISTANT", "TOOL"):
            await self._open_turn()

    async def _text_output(self, body: dict[str, Any]) -> None:
        cid, text = str(body.get("contentId") or ""), str(body["content"])
        kind, role, stage = self._blocks.get(cid, ("TEXT", str(body.get("role") or ""), ""))
        if text.lstrip().startswith("{") and ev.is_interruption(text):
            await self._interrupted()
            return
        if role == "USER":
            self._texts.setdefault(cid, []).append(text)
        elif role == "ASSISTANT" and stage == "FINAL":
            self._texts.setdefault(cid, []).append(text)
        elif role == "ASSISTANT":
            await self.on_text(self._rid, text, spoken=True)

    async def _content_end(self, body: dict[str, Any]) -> None:
        cid = str(body.get("contentId") or "")
        kind, role, stage = self._blocks.pop(cid, (str(body.get("type") or ""), "", ""))
        reason = str(body.get("stopReason") or "")
        text = "".join(self._texts.pop(cid, ()))
        if reason == "INTERRUPTED":
            await self._interrupted()
        if role == "USER":
            await self.on_user_transcript(text, cid)
            if self._user_speaking:
                await self.on_speech_stopped()
        elif kind == "AUDIO" and role == "ASSISTANT":
            await self.on_audio_done(self._rid)
        elif role == "ASSISTANT" and stage == "FINAL":
            if text.strip():
                self.conversation.add(ConversationItem("assistant", text.strip()))  # what was spoken
            if reason in ("END_TURN", "INTERRUPTED"):
                await self._close_turn("cancelled" if reason == "INTERRUPTED" else "completed")
        elif reason == "TOOL_USE" or kind == "TOOL":
            await self._close_turn("completed")

    async def _interrupted(self) -> None:
        """The server cut its turn (the caller spoke): stop playback now, drop the rest."""
        if self._rid is not None and self._rid not in self._dropped:
            await self.on_speech_started()


def _usage(u: Sequence[int]) -> LLMTokenUsage:
    """Tokens as (input speech, input text, output speech, output text)."""
    return LLMTokenUsage(prompt_tokens=u[0] + u[1], completion_tokens=u[2] + u[3], total_tokens=sum(u),
                         input_audio_tokens=u[0], input_text_tokens=u[1], output_audio_tokens=u[2],
                         output_text_tokens=u[3])  # fmt: skip
