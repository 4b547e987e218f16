"""Ultravox Realtime (speech-to-speech): create a call over REST, then join its ``joinUrl``
WebSocket.

Wire protocol:

* https://docs.ultravox.ai/apps/websockets (the ``serverWebSocket`` medium, binary audio)
* https://docs.ultravox.ai/apps/datamessages (the JSON data messages)
* https://docs.ultravox.ai/api-reference/calls/calls-post (the call's body)
* https://docs.ultravox.ai/tools/custom/http-vs-client-tools (client tools)

A session is a call: ``POST <url>/api/calls`` with ``X-API-Key: <key>`` and a body carrying
``systemPrompt``, ``model``, ``voice``, ``selectedTools`` (each a ``temporaryTool`` with a
``client`` implementation and ``dynamicParameters`` in the body), ``initialMessages`` (the
conversation so far: ``MESSAGE_ROLE_USER`` / ``_AGENT`` / ``_TOOL_CALL`` / ``_TOOL_RESULT``),
``firstSpeakerSettings``, ``maxDuration`` and ``medium.serverWebSocket`` (``inputSampleRate``,
``outputSampleRate``, ``clientBufferSizeMs``). The answer's ``joinUrl`` is the WebSocket.
On it the caller's audio goes up and the model's comes down as **binary** messages of s16le
PCM at those rates; data messages are JSON text: ``transcript`` (``role`` user/agent,
``medium``, ``text`` or ``delta``, ``final``, ``ordinal``), ``state`` (``idle``,
``listening``, ``thinking``, ``speaking``), ``client_tool_invocation`` (``toolName``,
``invocationId``, ``parameters``), ``playback_clear_buffer`` (a barge-in: drop unplayed
audio), ``call_started``, ``pong``, ``debug``. Up go ``client_tool_result``
(``invocationId``, ``result``, ``agentReaction``) and ``user_text_message``.

Mapping onto :class:`~flowcat.services.RealtimeLLMService`: Ultravox always detects turns
(``server_vad=False`` is refused); it has no response ids, so a response is the model's
output between a ``state`` of ``thinking`` and the end of ``speaking``; it reports no start of
the caller's speech except a barge-in (``playback_clear_buffer``), so both
``UserStartedSpeakingFrame`` and ``UserStoppedSpeakingFrame`` go when it starts thinking.
There is no truncate or cancel message: the server paces its audio to the client's buffer and
cuts its own turn, and audio still arriving after the clear is dropped. The call's config is
fixed: new tools, instructions or settings re-create the call (the conversation replayed as
``initialMessages``) once the running response ended, as do a session renewal and a
reconnection. No token usage is reported (Ultravox bills by the minute).

UNCONFIRMED against a primary page: error reporting on the socket (the close code and reason
are reported, as for the other realtime providers), the exact moment ``state`` leaves
``speaking`` relative to the last audio, and the current default model name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ...errors import ConfigError, ServiceStatusError
from ...frames import UserStartedSpeakingFrame
from .._backoff import Backoff
from .._http import connection_error, http_session, raise_for_status
from .._realtime import RealtimeLLMService, RealtimeLLMSettings
from .._realtime_state import ConversationItem
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key

__all__ = ["UltravoxRealtimeLLMService", "UltravoxRealtimeSettings"]

logger = logging.getLogger("flowcat.services.realtime.ultravox")

PROVIDERS = (
    ProviderInfo(
        name="ultravox",
        kind="realtime",
        title="Ultravox Realtime",
        service="flowcat.services.realtime.UltravoxRealtimeLLMService",
        docs=("https://docs.ultravox.ai/apps/websockets", "https://docs.ultravox.ai/apps/datamessages"),
        env="ULTRAVOX_API_KEY",
        base_url="https://api.ultravox.ai",
        notes="create call -> `joinUrl` socket; binary PCM; client tools; server turns only",
    ),
)

DEFAULT_URL = "https://api.ultravox.ai"
_ROLES = {"user": "MESSAGE_ROLE_USER", "assistant": "MESSAGE_ROLE_AGENT",
          "function_call": "MESSAGE_ROLE_TOOL_CALL", "function_call_output": "MESSAGE_ROLE_TOOL_RESULT"}


@dataclass
class UltravoxRealtimeSettings(RealtimeLLMSettings):
    """The call's settings (fixed per call: a change re-creates the call).

    Attributes:
        model: The model (``model`` of the call).
        voice: The voice name or id (None: the account's default).
        first_speaker: ``"agent"`` (the model greets when the call starts) or ``"user"``;
            calls re-created after the conversation began always wait for the user.
        client_buffer_ms: ``clientBufferSizeMs``: how far ahead of playback the server
            sends audio (large is safe: a barge-in clears it).
        max_duration_secs: ``maxDuration`` of a call (the session cap).
        temperature: Sampling temperature (None: the server's).
        language_hint: ``languageHint`` (e.g. ``"en"``).
    """

    model: str | None = "ultravox-v0.7"
    voice: str | None = None
    first_speaker: str = "agent"
    client_buffer_ms: int = 30000
    max_duration_secs: int = 3600
    temperature: float | None = None
    language_hint: str | None = None


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"ultravox: url must be an http(s) URL with a host, got {url!r}")
    return url.rstrip("/")


class UltravoxRealtimeLLMService(RealtimeLLMService):
    """Ultravox Realtime speech-to-speech over the ``serverWebSocket`` medium.

    Args:
        api_key: The key (else ``ULTRAVOX_API_KEY``), sent as ``X-API-Key`` when a call is created.
        url: The REST base (``http://127.0.0.1:PORT`` for a local server). None:
            ``https://api.ultravox.ai``.
        settings: :class:`UltravoxRealtimeSettings` (``server_vad`` must stay True).
        max_session_secs: Re-create the call after this long (default 55 min, under the
            one-hour ``maxDuration``).
        **kwargs: :class:`~flowcat.services.RealtimeLLMService` arguments.
    """

    vendor = "ultravox"
    """Names the key's environment variable (``<VENDOR>_API_KEY``)."""
    binary_audio = True

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        url: str | None = None,
        settings: UltravoxRealtimeSettings | None = None,
        max_session_secs: float | None = 55 * 60,
        reconnect: Backoff | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings or UltravoxRealtimeSettings()
        if not settings.server_vad:
            raise ConfigError("ultravox: the server always detects turns; server_vad=False is not supported")
        if settings.first_speaker not in ("agent", "user"):
            raise ConfigError(f"ultravox: first_speaker must be 'agent' or 'user', got {settings.first_speaker!r}")
        super().__init__(settings=settings, api_key=resolve_api_key(self.vendor, api_key),
                         max_session_secs=max_session_secs, reconnect=reconnect, **kwargs)
        self.url = _base_url(url or DEFAULT_URL)
        self.join_url: str | None = None
        """The current call's socket URL."""
        self.call_id: str | None = None
        """The current call's id."""
        self._call_config: dict[str, Any] | None = None  # the current call's body, less its history
        self._seeded: set[int] = set()  # conversation items the current call got as initialMessages
        self._state = "idle"
        self._turn: str | None = None  # the response being received (Ultravox has no ids)
        self._turns = 0
        self._clearing = False  # a barge-in cleared playback: drop output until the model goes on
        self._texts: dict[tuple[str, int], str] = {}  # transcript text so far, by (role, ordinal)

    @property
    def s(self) -> UltravoxRealtimeSettings:
        return self._settings  # type: ignore[return-value]

    # ------------------------------------------------------------------ the call

    def _tools(self) -> list[dict[str, Any]]:
        out = []
        ctx = self._context
        for t in (self.tools_for(ctx) if ctx is not None else None) or [
                s.to_openai() for s in self.tool_schemas()]:
            fn = t.get("function", t)
            params = fn.get("parameters") or {}
            required = set(params.get("required") or ())
            out.append({"temporaryTool": {
                "modelToolName": fn.get("name"), "description": fn.get("description", ""),
                "dynamicParameters": [
                    {"name": name, "location": "PARAMETER_LOCATION_BODY", "schema": schema,
                     "required": name in required}
                    for name, schema in (params.get("properties") or {}).items()],
                "client": {},
            }})
        return out

    def _instructions(self) -> str | None:
        if self.s.instructions is not None:
            return self.s.instructions
        system = [i.text for i in self.conversation.items if i.role == "system"]
        return "\n".join(system) if system else None

    def call_config(self) -> dict[str, Any]:
        """The call's body without its history (``initialMessages``, ``firstSpeakerSettings``)."""
        s = self.s
        body: dict[str, Any] = {
            "systemPrompt": self._instructions(), "model": s.model, "voice": s.voice,
            "temperature": s.temperature, "languageHint": s.language_hint,
            "maxDuration": f"{s.max_duration_secs}s",
            "medium": {"serverWebSocket": {"inputSampleRate": self.input_sample_rate,
                                           "outputSampleRate": self.output_sample_rate,
                                           "clientBufferSizeMs": s.client_buffer_ms}},
        }
        tools = self._tools()
        if tools:
            body["selectedTools"] = tools
        body = {k: v for k, v in body.items() if v is not None}
        body.update(s.extra)
        return body

    def _initial_messages(self, items: list[ConversationItem]) -> list[dict[str, Any]]:
        names = {i.call_id: i.name for i in items if i.role == "function_call"}
        out = []
        for item in items:
            role = _ROLES.get(item.role)
            if role is None:
                continue  # system: the systemPrompt carries it
            msg: dict[str, Any] = {"role": role, "text": item.text}
            if item.role in ("function_call", "function_call_output"):
                msg["invocationId"] = item.call_id
                msg["toolName"] = item.name or names.get(item.call_id) or ""
            out.append(msg)
        return out

    async def prepare_socket(self) -> None:
        """Create a call (the config, the conversation so far) and keep its ``joinUrl``."""
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        config = self.call_config()
        items = list(self.conversation.items)
        body = dict(config)
        history = self._initial_messages(items)
        if history:
            body["initialMessages"] = history
        speaker = self.s.first_speaker if not self._active else "user"
        body["firstSpeakerSettings"] = {speaker: {}}
        session = await http_session()
        try:
            async with session.post(
                f"{self.url}/api/calls", json=body, headers={"X-API-Key": self._api_key.reveal()},
                timeout=aiohttp.ClientTimeout(total=self.connect_timeout_secs),
            ) as resp:
                await raise_for_status(resp, f"{self.name}: create call", self._api_key)
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        join = data.get("joinUrl") if isinstance(data, dict) else None
        if not isinstance(join, str) or not join:
            raise ServiceStatusError(self.redact(f"{self.name}: the created call has no joinUrl"), 502)
        self.join_url, self.call_id = join, str(data.get("callId") or "")
        self._call_config = config
        self._seeded = {id(i) for i in items}
        self._state, self._turn, self._clearing = "idle", None, False
        self._texts.clear()
        logger.debug("%s: call %s created (%d messages)", self.name, self.call_id, len(history))

    async def update_session(self) -> None:
        """A call's config is fixed: a change re-creates it (once the running response ended)."""
        if self._call_config is not None and self.call_config() != self._call_config:
            logger.info("%s: the call's config changed; re-creating the call", self.name)
            await self.renew_session()

    # ------------------------------------------------------------------ the wire

    def socket_url(self) -> str:
        if not self.join_url:
            raise ConfigError(f"{self.name}: no call joined")
        return self.join_url

    def socket_headers(self) -> dict[str, str]:
        return {}  # the joinUrl authorizes

    def session_events(self) -> list[dict[str, Any]]:
        return []  # the call's body configured it

    def replay_events(self, items: list[ConversationItem]) -> list[dict[str, Any]]:
        return []  # the call's initialMessages carried them

    def item_events(self, item: ConversationItem) -> list[dict[str, Any]]:
        if id(item) in self._seeded:
            return []
        if item.role == "function_call_output":
            return [{"type": "client_tool_result", "invocationId": item.call_id, "result": item.text,
                     "agentReaction": "speaks"}]
        if item.role == "user":
            return [{"type": "user_text_message", "text": item.text, "urgency": "soon"}]
        return []  # the model's own output and system text cannot be added to a live call

    def audio_message(self, b64: str) -> str:
        raise NotImplementedError("ultravox: audio goes up as binary messages")

    def commit_events(self) -> list[dict[str, Any]]:
        return []  # never called: server turns only

    def response_event(self) -> dict[str, Any] | None:
        return None  # the model goes on by itself (after a tool result too)

    # ---------------------------------------------------------------- receiving

    async def handle_binary(self, data: bytes) -> None:
        if self._clearing:
            return  # audio of the response the caller barged in on
        if len(data) & 1:
            self.bad_input("audio with an odd number of bytes", data)
            return
        rid = await self._output_turn()
        await self.on_audio(rid, rid, data)

    async def _output_turn(self) -> str:
        if self._turn is None:
            self._turns += 1
            self._turn = f"uv_{self._turns}"
        if self._response_id is None:
            await self.on_response_started(self._turn)
        return self._turn

    async def _finish_turn(self, status: str) -> None:
        rid, self._turn = self._turn, None
        if rid is not None:
            await self.on_audio_done(rid)
            await self.on_response_done(rid, status, None)

    async def handle_event(self, event: dict[str, Any]) -> None:
        kind: str = event["type"]
        if kind == "transcript":
            await self._transcript(event)
        elif kind == "state":
            await self._on_state(str(event["state"]))
        elif kind == "client_tool_invocation":
            params = event.get("parameters")
            args = json.dumps(params if isinstance(params, dict) else {})
            rid = await self._output_turn()
            await self.on_function_call(rid, str(event["invocationId"]), str(event["toolName"]), args)
            await self._finish_turn("completed")  # the call runs now; its result unfreezes the model
        elif kind == "playback_clear_buffer":
            cut, self._turn = self._turn, None
            self._clearing = True
            await self.on_speech_started()  # the barge-in: interrupt playback now
            if cut is not None:
                await self.on_response_done(cut, "cancelled", None)
        elif kind == "call_started":
            self.call_id = str(event.get("callId") or self.call_id or "")

    def _busy(self) -> bool:
        # While the model thinks a response is coming: a renewal now would lose it.
        return super()._busy() or self._state == "thinking"

    async def _on_state(self, state: str) -> None:
        prev, self._state = self._state, state
        if state in ("thinking", "speaking"):
            self._clearing = False
        if state == "thinking" and prev in ("listening", "idle"):
            # The end of the caller's turn (Ultravox reports no start outside a barge-in).
            if not self._user_speaking:
                self._user_speaking = True
                await self.broadcast_frame(UserStartedSpeakingFrame)
            await self.on_speech_stopped()
        if prev == "speaking" and state != "speaking":
            await self._finish_turn("completed")
        if self._renew_due and not self._busy():
            await self.renew_session()  # the cap passed while the model was thinking

    async def _transcript(self, event: dict[str, Any]) -> None:
        role = str(event["role"])
        key = (role, int(event.get("ordinal") or 0))
        before = self._texts.get(key, "")
        delta = event.get("delta")
        if isinstance(delta, str):
            full = before + delta
        else:
            full = str(event.get("text") or "")
            delta = full[len(before):] if full.startswith(before) else full
        final = bool(event.get("final"))
        if final:
            self._texts.pop(key, None)
        else:
            self._texts[key] = full
        if role == "user":
            if final:
                self._clearing = False
                await self.on_user_transcript(full)
            return
        if self._clearing:
            return
        if delta:
            rid = await self._output_turn()
            await self.on_text(rid, delta, spoken=event.get("medium", "voice") != "text")
        if final:
            await self.on_text_done(self._turn, full)
