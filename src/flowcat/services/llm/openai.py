"""OpenAI Chat Completions, streamed over Server-Sent Events (and every OpenAI-compatible host).

Wire protocol:

* https://platform.openai.com/docs/api-reference/chat/create-chat-completion
* https://platform.openai.com/docs/guides/streaming-responses
* spec: github.com/openai/openai-openapi ``openapi.yaml``
  (``CreateChatCompletionStreamResponse``, ``ChatCompletionMessageToolCallChunk``,
  ``ChatCompletionStreamOptions``)

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>`` and a JSON
body ``{"model", "stream": true, "stream_options": {"include_usage": true},
"messages", "tools"?, "tool_choice"?, ...}``. The answer is SSE: ``data:
{chat.completion.chunk}`` events, then ``data: [DONE]``. Text is in
``choices[0].delta.content``; tool calls come as ``delta.tool_calls[]`` pieces joined
by ``index`` (``id`` and ``function.name`` on the first piece, ``arguments``
fragments after); with ``include_usage`` one chunk with empty ``choices`` carries
``usage`` before ``[DONE]``.

Accepted on purpose (compatible hosts, partly UNCONFIRMED for api.openai.com):
SSE comments (OpenRouter's ``: OPENROUTER PROCESSING``, DeepSeek's ``: keep-alive``)
are skipped; an ``{"error": {...}}`` event after HTTP 200 is a failure (its ``code``
a string or a number); usage on the last content chunk (Fireworks, Groq), under
``x_groq.usage``, or a cumulative snapshot on every chunk (NVIDIA NIM, vLLM's
``continuous_usage_stats``): the last one seen is reported, once, when the stream
ends; a tool call that arrives whole in one delta, without ``index`` or with a new
``id`` at an index already used (Mistral, SambaNova), is a call of its own; a body
that closes without ``[DONE]`` after a ``finish_reason`` (counted as complete).

The compatible hosts are thin configurations of this class
(:mod:`flowcat.services.llm.openai_compatible`): they change the class attributes
:attr:`OpenAILLMService.key_vendor`, :attr:`~OpenAILLMService.key_required`,
:attr:`~OpenAILLMService.auth_header`/:attr:`~OpenAILLMService.auth_scheme` and the
:attr:`~OpenAILLMService.url` property.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import (
    ConfigError,
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
from ..adapters import BaseLLMAdapter, OpenAILLMAdapter

__all__ = ["OpenAILLMService", "OpenAILLMSettings"]

logger = logging.getLogger("flowcat.services.llm.openai")

PROVIDERS = (
    ProviderInfo(
        name="openai",
        kind="llm",
        title="OpenAI Chat Completions",
        service="flowcat.services.llm.OpenAILLMService",
        docs=("https://platform.openai.com/docs/api-reference/chat/create-chat-completion",),
        env="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        notes="any OpenAI-compatible host through base_url",
    ),
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Error "type"/"code" strings of in-stream errors, as statuses.
_ERROR_KINDS = {
    "invalid_request_error": 400,
    "invalid_prompt": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 503,
}


@dataclass
class OpenAILLMSettings(ServiceSettings):
    """Chat Completions parameters (None: not sent, the server's default applies).

    ``extra`` is merged into the request body as given (vendor parameters of a
    compatible host: vLLM's top-level ``extra_body`` fields, say).
    """

    model: str | None = "gpt-4.1"
    system_instruction: str | None = None
    include_usage: bool = True  # stream_options.include_usage (off for a server that rejects stream_options)
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None


_BODY_FIELDS = ("temperature", "top_p", "max_completion_tokens", "max_tokens", "seed", "frequency_penalty",
                "presence_penalty", "parallel_tool_calls", "service_tier")


class OpenAILLMService(LLMService):
    """Chat Completions over SSE, for OpenAI or any compatible server (``base_url``).

    Args:
        api_key: The key (else ``OPENAI_API_KEY``). Compatible local servers that ignore
            keys still need a non-empty one.
        base_url: The API root; ``/chat/completions`` is appended.
        model: Shortcut for ``settings.model``.
        settings: :class:`OpenAILLMSettings`.
        adapter: Builds ``messages``/``tools``/``tool_choice`` from the context
            (``settings.system_instruction`` first, vendor messages for ``"openai"``
            unwrapped, others left out, custom tools); None: a default
            :class:`~flowcat.services.adapters.OpenAILLMAdapter`. Pass
            ``OpenAILLMAdapter(convert_developer_to_user=True)`` for hosts that reject
            the developer role, or any :class:`~flowcat.services.adapters.BaseLLMAdapter`.
            Registered direct functions are added to its ``tools``.
        organization: ``OpenAI-Organization`` header.
        project: ``OpenAI-Project`` header.
        headers: Extra request headers (OpenRouter's ``HTTP-Referer``, say).
        **kwargs: :class:`~flowcat.services.LLMService` arguments.

    Raises:
        ConfigError: No key, or ``base_url`` is not an http(s) URL.
    """

    capabilities = ServiceCapabilities(function_calling=True, parallel_tool_calls=True, transport="sse")

    key_vendor: ClassVar[str] = "openai"
    """Whose key: read from ``<VENDOR>_API_KEY`` when ``api_key`` is not given."""
    key_required: ClassVar[bool] = True
    """Whether a missing key is a :class:`~flowcat.errors.ConfigError` (local servers: no)."""
    auth_header: ClassVar[str] = "Authorization"
    """The header carrying the key (Azure: ``api-key``); not sent when the key is empty."""
    auth_scheme: ClassVar[str] = "Bearer "
    """What precedes the key in :attr:`auth_header`."""

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str = DEFAULT_BASE_URL,
        model: str | None = None,
        settings: OpenAILLMSettings | None = None,
        adapter: BaseLLMAdapter | None = None,
        organization: str | None = None,
        project: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else OpenAILLMSettings()
        if model is not None:
            settings.model = model
        super().__init__(api_key=resolve_api_key(self.key_vendor, api_key, required=self.key_required),
                         settings=settings, **kwargs)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.adapter: BaseLLMAdapter = adapter if adapter is not None else OpenAILLMAdapter()
        self._headers: dict[str, str] = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._headers.update(headers or {})

    @property
    def url(self) -> str:
        """The completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def request_headers(self) -> dict[str, str]:
        """The headers of a request: the fixed ones and the key (when there is one)."""
        key = self._api_key
        if not key:
            return dict(self._headers)
        return {**self._headers, self.auth_header: f"{self.auth_scheme}{key.reveal()}"}

    # ----------------------------------------------------------- request

    def build_request(self, context: LLMContext) -> dict[str, Any]:
        """The JSON body for ``context`` (what is sent, byte for byte, less the encoding)."""
        s = self.settings
        assert isinstance(s, OpenAILLMSettings)  # noqa: S101 - the constructor's settings type
        fields = dict(self.adapter.get_llm_invocation_params(context, system_instruction=s.system_instruction))
        tools = list(fields.get("tools") or [])
        names = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
        tools += [f.to_openai() for f in self.tool_schemas() if f.name not in names]
        if tools:
            fields["tools"] = tools
        body: dict[str, Any] = {"model": s.model, "stream": True}
        if s.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(fields)
        for name in _BODY_FIELDS:
            value = getattr(s, name)
            if value is not None:
                body[name] = value
        body.update(s.extra)
        return body

    # ------------------------------------------------------------ stream

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        body = self.build_request(context)
        session = await http_session()
        finished = done = False
        usage: Mapping[str, Any] | None = None
        slots = _ToolSlots()
        async with session.post(self.url, json=body, headers=self.request_headers()) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            async for event in iter_sse(resp.content):
                data = event.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    done = True
                    break
                obj = json.loads(data)
                if not isinstance(obj, dict):
                    raise ServiceProtocolError(f"{self.name}: an event that is not a JSON object")
                if obj.get("error") is not None or event.event == "error":
                    raise self._stream_error(obj.get("error", obj))
                for choice in obj.get("choices") or ():
                    if choice.get("index", 0) != 0:
                        continue  # n > 1 is not supported: the first choice is the answer
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        yield LLMTextDelta(text)
                    for tc in delta.get("tool_calls") or ():
                        fn = tc.get("function") or {}
                        yield LLMToolCallDelta(slots.index(tc), tc.get("id"), fn.get("name"),
                                               fn.get("arguments") or "")
                    if choice.get("finish_reason"):
                        finished = True
                # Once at the end, or a cumulative snapshot per chunk: the last one counts.
                u = obj.get("usage")
                if not u and "x_groq" in obj:
                    u = (obj["x_groq"] or {}).get("usage")
                if u:
                    usage = u
        if not (done or finished):
            raise ServiceConnectionError(f"{self.name}: the stream ended without [DONE]")
        if usage:
            yield _usage(usage)
        if not done:
            logger.debug("%s: the stream ended after finish_reason without [DONE]", self.name)

    def _stream_error(self, err: Any) -> ServiceError:
        """An error object inside a 200 stream, as the service error for its kind."""
        return stream_error(err, self.name, self.redact)


def stream_error(err: Any, name: str, redact: Callable[[str], str]) -> ServiceError:
    """An OpenAI-style error object (``{message, type, code}``) as the service error for its kind.

    ``code`` may be a status (OpenRouter: a number) or a kind (``"rate_limit_exceeded"``);
    unknown kinds count as 500 (retryable before any output). Texts go through ``redact``.
    """
    if not isinstance(err, dict):
        err = {"message": str(err)}
    msg = redact(f"{name}: error in the stream: {err.get('message') or err}")
    code = err.get("code")
    status: int | None = None
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        status = int(code)
    else:
        status = _ERROR_KINDS.get(str(code)) or _ERROR_KINDS.get(str(err.get("type")))
    if status is None:
        status = 500
    if status == 429:
        return ServiceRateLimitError(msg, 429, redact(json.dumps(err)))
    return ServiceStatusError(msg, status, redact(json.dumps(err)))


class _ToolSlots:
    """Which tool call of the response a ``delta.tool_calls[]`` piece belongs to.

    OpenAI numbers the calls (``index``) and sends the ``id`` on the first piece only.
    Some compatible hosts send each call whole, without ``index``, or every call at
    index 0 (UNCONFIRMED: Mistral, SambaNova): a piece without ``index`` continues the
    last call unless it brings a new ``id``, and a new ``id`` at an index already
    holding another call opens a call of its own.
    """

    __slots__ = ("_ids", "_map", "_last")

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}  # slot -> call id
        self._map: dict[int, int] = {}  # wire index -> slot (the latest call at that index)
        self._last = -1

    def index(self, tc: Mapping[str, Any]) -> int:
        raw, call_id = tc.get("index"), tc.get("id")
        slot = self._last if raw is None else self._map.get(int(raw), -1)
        if slot >= 0 and call_id and self._ids[slot] not in ("", call_id):
            slot = -1  # another call, whole, at the same index (or with no index)
        if slot < 0:
            slot = len(self._ids)
            self._ids[slot] = ""
            if raw is not None:
                self._map[int(raw)] = slot
        if call_id:
            self._ids[slot] = call_id
        self._last = slot
        return slot


def _usage(u: Mapping[str, Any]) -> LLMTokenUsage:
    prompt = int(u.get("prompt_tokens") or 0)
    completion = int(u.get("completion_tokens") or 0)
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(u.get("total_tokens") or prompt + completion),
        cache_read_input_tokens=None if cached is None else int(cached),
        reasoning_tokens=None if reasoning is None else int(reasoning),
    )
