"""Google Gemini ``streamGenerateContent``, streamed over Server-Sent Events.

Wire protocol:

* https://ai.google.dev/api/generate-content (request, ``GenerateContentResponse``, ``UsageMetadata``)
* https://ai.google.dev/gemini-api/docs/function-calling (``functionDeclarations``,
  ``functionCall``/``functionResponse`` parts, parallel calls)
* https://ai.google.dev/gemini-api/docs/troubleshooting (error statuses)

``POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse`` with
``x-goog-api-key`` and a JSON body ``{"contents", "systemInstruction"?, "tools"?,
"toolConfig"?, "generationConfig"?, "safetySettings"?}``, built by
:class:`~flowcat.services.adapters.GeminiLLMAdapter`. Each SSE event is a
``GenerateContentResponse``: ``candidates[0].content.parts[]`` hold ``text`` (incremental)
or a whole ``functionCall`` (``name``, ``args`` object, optional ``id``);
``candidates[0].finishReason`` marks the last chunk and ``usageMetadata``
(``promptTokenCount``, ``candidatesTokenCount``, ``totalTokenCount``,
``cachedContentTokenCount``, ``thoughtsTokenCount``) is cumulative, so the last one
counts. The body just closes at the end (no sentinel). Errors are Google RPC objects
``{"error": {"code", "message", "status"}}`` (``INVALID_ARGUMENT`` 400,
``PERMISSION_DENIED`` 403, ``RESOURCE_EXHAUSTED`` 429, ``UNAVAILABLE`` 503, ...), as the
HTTP error body or, after HTTP 200, as an event.

Function calls arrive whole, one per part; a call without an ``id`` (the Gemini API
leaves it out for most models) gets a local one, ``fc_local_<hex>``, which the adapter
does not send back, so the next request carries the call and its response as Gemini
sent them. Accepted on purpose: ``thought`` parts (thought summaries) are skipped; a
blocked prompt (``promptFeedback.blockReason``, no candidates) ends the answer empty,
logged; a body that closes before any ``finishReason`` is a connection error.
**UNCONFIRMED**: Gemini 3's ``thoughtSignature`` on function-call parts is not kept, so
it is not echoed back on the next request.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ...errors import (
    ConfigError,
    ServiceAuthError,
    ServiceConnectionError,
    ServiceError,
    ServiceProtocolError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from ...frames import LLMContext, LLMTokenUsage
from .._ai_service import ServiceCapabilities, ServiceSettings
from .._http import http_session, iter_sse, raise_for_status
from .._llm import LLMChunk, LLMService, LLMTextDelta, LLMToolCallDelta
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from ..adapters import BaseLLMAdapter, GeminiLLMAdapter, ToolsSchema
from ..adapters._gemini_adapter import LOCAL_CALL_ID_PREFIX

__all__ = ["GeminiLLMService", "GoogleLLMService", "GoogleLLMSettings"]

logger = logging.getLogger("flowcat.services.llm.google")

PROVIDERS = (
    ProviderInfo(
        name="google",
        kind="llm",
        title="Google Gemini",
        service="flowcat.services.llm.GoogleLLMService",
        docs=("https://ai.google.dev/api/generate-content", "https://ai.google.dev/gemini-api/docs/function-calling"),
        env="GOOGLE_API_KEY",
        base_url="https://generativelanguage.googleapis.com",
        notes="GEMINI_API_KEY also read; alias GeminiLLMService",
    ),
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# google.rpc status names (https://ai.google.dev/gemini-api/docs/troubleshooting), as HTTP statuses.
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

_FINE_FINISH = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})


@dataclass
class GoogleLLMSettings(ServiceSettings):
    """``generateContent`` parameters (None: not sent, the server's default applies).

    The sampling fields go into ``generationConfig`` (``max_output_tokens`` as
    ``maxOutputTokens`` and so on); ``thinking_config`` is sent as
    ``generationConfig.thinkingConfig`` as given (``{"thinkingBudget": 0}``);
    ``safety_settings`` as ``safetySettings``. ``extra`` is merged into the body as given.
    """

    model: str | None = "gemini-2.5-flash"
    system_instruction: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    thinking_config: dict[str, Any] | None = None
    safety_settings: list[dict[str, Any]] | None = None


_GENERATION_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("max_output_tokens", "maxOutputTokens"),
    ("stop_sequences", "stopSequences"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("thinking_config", "thinkingConfig"),
)


def _google_key(api_key: str | Secret | None) -> Secret:
    key = resolve_api_key("google", api_key, required=False)
    if not key:
        key = Secret(os.environ.get("GEMINI_API_KEY", ""))
    if not key:
        raise ConfigError("google: no API key: pass api_key= or set GOOGLE_API_KEY (or GEMINI_API_KEY)")
    return key


class GoogleLLMService(LLMService):
    """Gemini ``streamGenerateContent`` over SSE (the Gemini Developer API).

    Args:
        api_key: The key (else ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``).
        base_url: The API root; ``/v1beta/models/{model}:streamGenerateContent?alt=sse`` is appended.
        model: Shortcut for ``settings.model`` (``"gemini-2.5-flash"``; a ``models/`` prefix is accepted).
        settings: :class:`GoogleLLMSettings`.
        adapter: Builds ``contents``/``systemInstruction``/``tools``/``toolConfig`` from the
            context; None: a default :class:`~flowcat.services.adapters.GeminiLLMAdapter`.
            Registered direct functions are added to its ``functionDeclarations``.
        headers: Extra request headers.
        **kwargs: :class:`~flowcat.services.LLMService` arguments.

    Raises:
        ConfigError: No key, or ``base_url`` is not an http(s) URL.
    """

    capabilities = ServiceCapabilities(function_calling=True, parallel_tool_calls=True, transport="sse")

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str = DEFAULT_BASE_URL,
        model: str | None = None,
        settings: GoogleLLMSettings | None = None,
        adapter: BaseLLMAdapter | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else GoogleLLMSettings()
        if model is not None:
            settings.model = model
        super().__init__(api_key=_google_key(api_key), settings=settings, **kwargs)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.adapter: BaseLLMAdapter = adapter if adapter is not None else GeminiLLMAdapter()
        self._headers: dict[str, str] = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        self._headers.update(headers or {})

    @property
    def url(self) -> str:
        """The streaming endpoint for the model in force."""
        model = str(self.settings.model or "").removeprefix("models/")
        return f"{self.base_url}/v1beta/models/{quote(model, safe='.-_')}:streamGenerateContent?alt=sse"

    # ----------------------------------------------------------- request

    def build_request(self, context: LLMContext) -> dict[str, Any]:
        """The JSON body for ``context`` (what is sent, less the encoding)."""
        s = self.settings
        assert isinstance(s, GoogleLLMSettings)  # noqa: S101 - the constructor's settings type
        body = dict(self.adapter.get_llm_invocation_params(context, system_instruction=s.system_instruction))
        tools = [dict(t) if isinstance(t, dict) else t for t in body.get("tools") or []]
        declared = {d.get("name") for t in tools if isinstance(t, dict)
                    for d in t.get("functionDeclarations") or ()}
        extra = [f for f in self.tool_schemas() if f.name not in declared]
        if extra:
            (entry,) = GeminiLLMAdapter().to_provider_tools_format(ToolsSchema(extra))
            for t in tools:
                if isinstance(t, dict) and "functionDeclarations" in t:
                    t["functionDeclarations"] = list(t["functionDeclarations"]) + entry["functionDeclarations"]
                    break
            else:
                tools.insert(0, entry)
        if tools:
            body["tools"] = tools
        config = {wire: getattr(s, name) for name, wire in _GENERATION_FIELDS if getattr(s, name) is not None}
        if config:
            body["generationConfig"] = config
        if s.safety_settings is not None:
            body["safetySettings"] = s.safety_settings
        body.update(s.extra)
        return body

    # ------------------------------------------------------------ stream

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        body = self.build_request(context)
        headers = {**self._headers, "x-goog-api-key": self._api_key.reveal()}
        session = await http_session()
        usage: Any = None
        finished = False
        calls = 0
        async with session.post(self.url, json=body, headers=headers) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            async for event in iter_sse(resp.content):
                data = event.data.strip()
                if not data:
                    continue
                obj = json.loads(data)
                if not isinstance(obj, dict):
                    raise ServiceProtocolError(f"{self.name}: an event that is not a JSON object")
                if obj.get("error") is not None:
                    raise self._stream_error(obj["error"])
                usage = obj.get("usageMetadata") or usage
                candidates = obj.get("candidates") or ()
                if not candidates:
                    block = (obj.get("promptFeedback") or {}).get("blockReason")
                    if block:
                        logger.warning("%s: the prompt was blocked: %s", self.name, block)
                        finished = True
                    continue
                cand = candidates[0]
                for part in (cand.get("content") or {}).get("parts") or ():
                    if part.get("thought"):
                        continue
                    text = part.get("text")
                    if text:
                        yield LLMTextDelta(text)
                    call = part.get("functionCall")
                    if call:
                        call_id = call.get("id") or f"{LOCAL_CALL_ID_PREFIX}{uuid.uuid4().hex}"
                        yield LLMToolCallDelta(calls, call_id, call["name"], json.dumps(call.get("args") or {}))
                        calls += 1
                reason = cand.get("finishReason")
                if reason:
                    finished = True
                    if reason not in _FINE_FINISH:
                        logger.info("%s: the answer stopped: %s", self.name, reason)
        if not finished:
            raise ServiceConnectionError(f"{self.name}: the stream ended without a finishReason")
        if usage:
            yield _usage(usage)

    def _stream_error(self, err: Any) -> ServiceError:
        """A Google RPC error object inside a 200 stream, as the service error for its code."""
        if not isinstance(err, dict):
            err = {"message": str(err)}
        msg = self.redact(f"{self.name}: error in the stream: {err.get('message') or err}")
        code = err.get("code")
        status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
        if status is None:
            status = _RPC_STATUS.get(str(err.get("status")), 500)
        body = self.redact(json.dumps(err))
        if status == 429:
            return ServiceRateLimitError(msg, 429, body)
        if status in (401, 403):
            return ServiceAuthError(msg, status, body)
        return ServiceStatusError(msg, status, body)


GeminiLLMService = GoogleLLMService
"""Another name for :class:`GoogleLLMService`."""


def _usage(u: Mapping[str, Any]) -> LLMTokenUsage:
    prompt = int(u.get("promptTokenCount") or 0)
    completion = int(u.get("candidatesTokenCount") or 0)
    cached = u.get("cachedContentTokenCount")
    thoughts = u.get("thoughtsTokenCount")
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(u.get("totalTokenCount") or prompt + completion),
        cache_read_input_tokens=None if cached is None else int(cached),
        reasoning_tokens=None if thoughts is None else int(thoughts),
    )
