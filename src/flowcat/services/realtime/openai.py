"""OpenAI Realtime (speech-to-speech over a WebSocket), GA protocol and beta; Azure OpenAI
and xAI Grok voice as configurations of the same wire.

Wire protocol:

* https://developers.openai.com/api/docs/guides/realtime-websocket
* https://developers.openai.com/api/reference/resources/realtime/client-events
* https://platform.openai.com/docs/api-reference/realtime-server-events
* https://platform.openai.com/docs/guides/realtime-conversations
* Azure: https://learn.microsoft.com/azure/foundry/openai/how-to/realtime-audio-websockets ,
  https://learn.microsoft.com/azure/foundry/openai/how-to/realtime-audio-preview-api-migration-guide
* xAI: https://docs.x.ai/docs/guides/voice/agent

GA: ``wss://api.openai.com/v1/realtime?model=…`` with ``Authorization: Bearer <key>``;
``session.update`` with ``session.type = "realtime"``, ``audio.input/output.format =
{"type": "audio/pcm", "rate": 24000}``, ``audio.input.turn_detection`` (server VAD, or
``null`` for local turns) and ``audio.input.transcription``; the caller's audio goes up
as ``input_audio_buffer.append``. Down come ``input_audio_buffer.speech_started`` /
``speech_stopped``, ``conversation.item.input_audio_transcription.completed``,
``response.created``, ``response.output_audio.delta`` / ``.done``,
``response.output_audio_transcript.delta`` / ``.done``, ``response.output_text.*``,
``response.function_call_arguments.done``, ``response.done`` (with ``usage``) and
``error``. A barge-in sends ``conversation.item.truncate`` (``audio_end_ms`` = what was
played) and ``response.cancel``.

Beta (``beta=True``): the ``OpenAI-Beta: realtime=v1`` header, a flat session
(``modalities``, ``voice``, ``input_audio_format: "pcm16"``, ``input_audio_transcription``,
``turn_detection``) and the older event names (``response.audio.delta``,
``response.audio_transcript.delta``, ``response.text.delta``). Both name sets are
accepted whichever protocol is chosen (the beta names are UNCONFIRMED against a current
primary page; so are the session cap and close codes: ``max_session_secs`` defaults
under the documented 60-minute cap).

Unknown server events are ignored (the protocol adds events often); malformed ones are
counted and logged (rate-limited).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from ...errors import ConfigError
from ...frames import LLMTokenUsage
from .._backoff import Backoff
from .._realtime import RealtimeLLMService, RealtimeLLMSettings
from .._realtime_state import ConversationItem
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key

__all__ = [
    "AzureRealtimeLLMService",
    "GrokRealtimeLLMService",
    "OpenAIRealtimeLLMService",
    "OpenAIRealtimeSettings",
]

logger = logging.getLogger("flowcat.services.realtime.openai")

PROVIDERS = (
    ProviderInfo(
        name="openai",
        kind="realtime",
        title="OpenAI Realtime (GA; beta by flag)",
        service="flowcat.services.realtime.OpenAIRealtimeLLMService",
        docs=(
            "https://developers.openai.com/api/docs/guides/realtime-websocket",
            "https://developers.openai.com/api/reference/resources/realtime/client-events",
        ),
        env="OPENAI_API_KEY",
        base_url="wss://api.openai.com/v1/realtime",
        notes="server VAD or local turns, truncation on barge-in, session renewal",
    ),
    ProviderInfo(
        name="azure",
        kind="realtime",
        title="Azure OpenAI Realtime",
        service="flowcat.services.realtime.AzureRealtimeLLMService",
        docs=("https://learn.microsoft.com/azure/foundry/openai/how-to/realtime-audio-websockets",),
        env="AZURE_OPENAI_API_KEY",
        notes="the OpenAI GA wire; `api-key` header, deployment as the model",
    ),
    ProviderInfo(
        name="grok",
        kind="realtime",
        title="xAI Grok Voice Agent",
        service="flowcat.services.realtime.GrokRealtimeLLMService",
        docs=("https://docs.x.ai/docs/guides/voice/agent",),
        env="XAI_API_KEY",
        base_url="wss://api.x.ai/v1/realtime",
        notes="the OpenAI GA wire (session fields UNCONFIRMED)",
    ),
)

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
_PCM = {"type": "audio/pcm", "rate": 24000}


@dataclass
class OpenAIRealtimeSettings(RealtimeLLMSettings):
    """Session settings (a change is sent as a ``session.update`` at once).

    Attributes:
        model: The model (the URL's ``model``).
        voice: The voice (cannot change once the model has spoken).
        transcription_model: Model transcribing the caller (None: no user transcripts).
        turn_detection: The ``turn_detection`` object used with ``server_vad`` (None:
            ``{"type": "server_vad"}``).
        output_modalities: ``["audio"]`` or ``["text"]``.
        tool_choice: ``"auto"``, ``"none"``, ``"required"``.
    """

    model: str | None = "gpt-realtime"
    voice: str | None = "marin"
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    turn_detection: dict[str, Any] | None = None
    output_modalities: tuple[str, ...] = ("audio",)
    tool_choice: str | None = "auto"


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigError(f"realtime: url must be a ws(s)/http(s) URL with a host, got {url!r}")
    return scheme + url[len(parts.scheme) :]


class OpenAIRealtimeLLMService(RealtimeLLMService):
    """OpenAI Realtime speech-to-speech.

    Args:
        api_key: The key (else ``OPENAI_API_KEY``).
        url: The socket URL without the model (``ws://127.0.0.1:PORT/v1/realtime`` for a
            local server). None: ``wss://api.openai.com/v1/realtime``.
        settings: :class:`OpenAIRealtimeSettings`.
        beta: Speak the beta protocol (``OpenAI-Beta: realtime=v1``, flat session).
        max_session_secs: Renew the session after this long (default 55 min, under the cap).
        **kwargs: :class:`~flowcat.services.RealtimeLLMService` arguments.
    """

    vendor = "openai"
    """Names the key's environment variable (``<VENDOR>_API_KEY``)."""

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        url: str | None = None,
        settings: OpenAIRealtimeSettings | None = None,
        beta: bool = False,
        max_session_secs: float | None = 55 * 60,
        reconnect: Backoff | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            settings=settings or OpenAIRealtimeSettings(),
            api_key=resolve_api_key(self.vendor, api_key),
            max_session_secs=max_session_secs,
            reconnect=reconnect,
            **kwargs,
        )
        self.url = _ws_url(url or DEFAULT_URL)
        self.beta = beta

    @property
    def s(self) -> OpenAIRealtimeSettings:
        return self._settings  # type: ignore[return-value]

    # ------------------------------------------------------------------ wire

    def socket_url(self) -> str:
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}model={quote(self.s.model or '')}"

    def socket_headers(self) -> dict[str, str]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        headers = {"Authorization": f"Bearer {self._api_key.reveal()}"}
        if self.beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        return headers

    def _tools(self) -> list[dict[str, Any]]:
        out = []
        ctx = self._context
        for t in (self.tools_for(ctx) if ctx is not None else None) or [
            s.to_openai() for s in self.tool_schemas()
        ]:
            fn = t.get("function", t)
            out.append(
                {
                    "type": "function",
                    "name": fn.get("name"),
                    "description": fn.get("description", ""),
                    "parameters": fn.get("parameters", {"type": "object", "properties": {}}),
                }
            )
        return out

    def _instructions(self) -> str | None:
        if self.s.instructions is not None:
            return self.s.instructions
        system = [i.text for i in self.conversation.items if i.role == "system"]
        return "\n".join(system) if system else None

    def session_events(self) -> list[dict[str, Any]]:
        s = self.s
        vad: dict[str, Any] | None = (s.turn_detection or {"type": "server_vad"}) if s.server_vad else None
        transcription = {"model": s.transcription_model} if s.transcription_model else None
        if self.beta:
            session: dict[str, Any] = {
                "modalities": ["text", "audio"] if "audio" in s.output_modalities else ["text"],
                "voice": s.voice,
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": vad,
            }
        else:
            session = {
                "type": "realtime",
                "model": s.model,
                "output_modalities": list(s.output_modalities),
                "audio": {
                    "input": {"format": _PCM, "transcription": transcription, "turn_detection": vad},
                    "output": {"format": _PCM, "voice": s.voice},
                },
            }
        instructions = self._instructions()
        if instructions is not None:
            session["instructions"] = instructions
        tools = self._tools()
        if tools:
            session["tools"] = tools
            if s.tool_choice:
                session["tool_choice"] = s.tool_choice
        session.update(s.extra)
        return [{"type": "session.update", "session": session}]

    def item_events(self, item: ConversationItem) -> list[dict[str, Any]]:
        if item.role == "function_call":
            body: dict[str, Any] = {
                "type": "function_call",
                "call_id": item.call_id,
                "name": item.name,
                "arguments": item.text,
            }
        elif item.role == "function_call_output":
            body = {"type": "function_call_output", "call_id": item.call_id, "output": item.text}
        elif item.role == "system":
            return []  # the session's instructions carry them
        else:
            if item.role == "user":
                kind = "input_text"
            else:
                kind = "text" if self.beta else "output_text"
            body = {"type": "message", "role": item.role, "content": [{"type": kind, "text": item.text}]}
        return [{"type": "conversation.item.create", "item": body}]

    def audio_message(self, b64: str) -> str:
        return '{"type":"input_audio_buffer.append","audio":"' + b64 + '"}'

    def commit_events(self) -> list[dict[str, Any]]:
        return [{"type": "input_audio_buffer.commit"}, {"type": "response.create"}]

    def response_event(self) -> dict[str, Any]:
        return {"type": "response.create"}

    def cancel_event(self, response_id: str | None) -> dict[str, Any] | None:
        return (
            {"type": "response.cancel", "response_id": response_id}
            if response_id
            else {"type": "response.cancel"}
        )

    def truncate_event(self, item_id: str, audio_end_ms: int) -> dict[str, Any] | None:
        return {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        }

    # ---------------------------------------------------------------- events

    async def handle_event(self, event: dict[str, Any]) -> None:
        kind: str = event["type"]
        rid = event.get("response_id")
        if kind in ("response.output_audio.delta", "response.audio.delta"):
            try:
                pcm = base64.b64decode(event["delta"], validate=True)
            except (binascii.Error, ValueError):
                self.bad_input(f"{kind} with a delta that is not base64", None)
                return
            await self.on_audio(rid, str(event.get("item_id") or rid or ""), pcm)
        elif kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            await self.on_text(rid, str(event["delta"]), spoken=True)
        elif kind in ("response.output_text.delta", "response.text.delta"):
            await self.on_text(rid, str(event["delta"]), spoken=False)
        elif kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
            await self.on_text_done(rid, str(event.get("transcript") or ""))
        elif kind in ("response.output_text.done", "response.text.done"):
            await self.on_text_done(rid, str(event.get("text") or ""))
        elif kind in ("response.output_audio.done", "response.audio.done"):
            await self.on_audio_done(rid)
        elif kind == "response.created":
            await self.on_response_started(str(event["response"]["id"]))
        elif kind == "response.function_call_arguments.done":
            await self.on_function_call(
                rid, str(event["call_id"]), str(event["name"]), str(event.get("arguments") or "")
            )
        elif kind == "response.done":
            response = event["response"]
            await self.on_response_done(
                response.get("id"), str(response.get("status") or ""), _usage(response.get("usage"))
            )
        elif kind == "input_audio_buffer.speech_started":
            await self.on_speech_started()
        elif kind == "input_audio_buffer.speech_stopped":
            await self.on_speech_stopped()
        elif kind == "conversation.item.input_audio_transcription.completed":
            await self.on_user_transcript(str(event.get("transcript") or ""), str(event.get("item_id") or ""))
        elif kind == "error":
            err = event.get("error") or {}
            code = str(err.get("code") or err.get("type") or "")
            if code == "response_cancel_not_active":
                logger.debug("%s: nothing to cancel", self.name)
                return
            await self.on_provider_error(str(err.get("message") or err), code=code)


def _usage(raw: Any) -> LLMTokenUsage | None:
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_token_details") or {}
    out = raw.get("output_token_details") or {}
    prompt = int(raw.get("input_tokens") or 0)
    completion = int(raw.get("output_tokens") or 0)
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(raw.get("total_tokens") or prompt + completion),
        cache_read_input_tokens=inp.get("cached_tokens"),
        input_audio_tokens=inp.get("audio_tokens"),
        input_text_tokens=inp.get("text_tokens"),
        output_audio_tokens=out.get("audio_tokens"),
        output_text_tokens=out.get("text_tokens"),
    )


class AzureRealtimeLLMService(OpenAIRealtimeLLMService):
    """Azure OpenAI Realtime: the OpenAI GA wire on a resource's endpoint.

    Args:
        url: ``wss://<resource>.openai.azure.com/openai/v1/realtime`` (required).
        settings: ``model`` is the deployment name.
        **kwargs: :class:`OpenAIRealtimeLLMService` arguments. The key (else
            ``AZURE_OPENAI_API_KEY``) goes in the ``api-key`` header.
    """

    vendor = "azure_openai"

    def __init__(self, *, url: str, **kwargs: Any) -> None:
        super().__init__(url=url, **kwargs)

    def socket_headers(self) -> dict[str, str]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        headers = {"api-key": self._api_key.reveal()}
        if self.beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        return headers


class GrokRealtimeLLMService(OpenAIRealtimeLLMService):
    """xAI Grok Voice Agent: the OpenAI GA wire at ``wss://api.x.ai/v1/realtime``.

    Args:
        url: None: xAI's endpoint.
        settings: Default model ``grok-voice-latest``, voice ``Ara`` (UNCONFIRMED).
        **kwargs: :class:`OpenAIRealtimeLLMService` arguments (key: ``XAI_API_KEY``).
    """

    vendor = "xai"

    def __init__(
        self, *, url: str | None = None, settings: OpenAIRealtimeSettings | None = None, **kwargs: Any
    ) -> None:
        settings = settings or OpenAIRealtimeSettings(
            model="grok-voice-latest", voice="Ara", transcription_model=None
        )
        super().__init__(url=url or "wss://api.x.ai/v1/realtime", settings=settings, **kwargs)
