"""Anthropic Messages, streamed over Server-Sent Events.

Wire protocol:

* https://docs.anthropic.com/en/api/messages (request body, content blocks, tools, errors)
* https://docs.anthropic.com/en/api/messages-streaming (the event flow)
* https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching (``cache_control``)

``POST {base_url}/v1/messages`` with ``x-api-key``, ``anthropic-version: 2023-06-01``
(and ``anthropic-beta`` when asked for) and a JSON body ``{"model", "max_tokens",
"stream": true, "system"?, "messages", "tools"?, "tool_choice"?, ...}``, built by
:class:`~flowcat.services.adapters.AnthropicLLMAdapter`. The answer is SSE with named
events: ``message_start`` (``message.usage``: input tokens, cache write/read tokens),
then per content block ``content_block_start`` (``text`` or ``tool_use`` with ``id`` and
``name``), ``content_block_delta`` (``text_delta`` text, ``input_json_delta``
``partial_json`` fragments of the tool input) and ``content_block_stop``; then
``message_delta`` (``stop_reason``, cumulative ``usage``) and ``message_stop``. ``ping``
events may come anywhere. An ``error`` event (``{"type": "error", "error": {"type",
"message"}}``) can arrive after HTTP 200; its type is mapped to the HTTP status the same
error has before the stream (``overloaded_error`` 529, retryable; ``rate_limit_error`` 429;
``invalid_request_error`` 400; ``authentication_error`` 401; ...).

Accepted on purpose: event types and delta types this module does not know (the docs
reserve the right to add some) are skipped, as are extended-thinking blocks
(``thinking``/``redacted_thinking`` blocks, ``thinking_delta``, ``signature_delta``) and
``citations_delta``; the event name is taken from the data's ``type`` (or the SSE
``event:`` line when the data has none). A body that ends before ``message_stop`` is a
connection error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from ..adapters import AnthropicLLMAdapter, BaseLLMAdapter, ToolsSchema
from ..adapters._anthropic_adapter import add_cache_control

__all__ = ["AnthropicLLMService", "AnthropicLLMSettings"]

logger = logging.getLogger("flowcat.services.llm.anthropic")

PROVIDERS = (
    ProviderInfo(
        name="anthropic",
        kind="llm",
        title="Anthropic Messages",
        service="flowcat.services.llm.AnthropicLLMService",
        docs=("https://docs.anthropic.com/en/api/messages", "https://docs.anthropic.com/en/api/messages-streaming"),
        env="ANTHROPIC_API_KEY",
        base_url="https://api.anthropic.com",
        notes="prompt caching with enable_prompt_caching; thinking blocks skipped",
    ),
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

# Error types (https://docs.anthropic.com/en/api/errors), as the HTTP status each has before a stream.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_SKIPPED_DELTAS = frozenset({"thinking_delta", "signature_delta", "citations_delta"})


@dataclass
class AnthropicLLMSettings(ServiceSettings):
    """Messages API parameters (None: not sent, the server's default applies).

    ``max_tokens`` is required by the API. ``enable_prompt_caching`` marks the system
    prompt and the last message with ``cache_control: {"type": "ephemeral"}`` (so the
    tools, the system prompt and the conversation so far are cached). ``thinking`` is
    sent as given (``{"type": "enabled", "budget_tokens": 1024}``); the thinking blocks
    of the answer are skipped. ``extra`` is merged into the body as given.
    """

    model: str | None = "claude-sonnet-4-5"
    system_instruction: str | None = None
    max_tokens: int = 4096
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    enable_prompt_caching: bool = False
    thinking: dict[str, Any] | None = None


_BODY_FIELDS = ("temperature", "top_p", "top_k", "stop_sequences", "thinking")


class AnthropicLLMService(LLMService):
    """Anthropic Messages over SSE.

    Args:
        api_key: The key (else ``ANTHROPIC_API_KEY``).
        base_url: The API root; ``/v1/messages`` is appended.
        model: Shortcut for ``settings.model``.
        settings: :class:`AnthropicLLMSettings`.
        adapter: Builds ``system``/``messages``/``tools``/``tool_choice`` from the context;
            None: a default :class:`~flowcat.services.adapters.AnthropicLLMAdapter`.
            Registered direct functions are added to its ``tools``.
        beta: ``anthropic-beta`` header value(s) (joined with commas).
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
        settings: AnthropicLLMSettings | None = None,
        adapter: BaseLLMAdapter | None = None,
        beta: str | Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else AnthropicLLMSettings()
        if model is not None:
            settings.model = model
        super().__init__(api_key=resolve_api_key("anthropic", api_key), settings=settings, **kwargs)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.adapter: BaseLLMAdapter = adapter if adapter is not None else AnthropicLLMAdapter()
        self._headers: dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": API_VERSION,
        }
        if beta:
            self._headers["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(beta)
        self._headers.update(headers or {})

    @property
    def url(self) -> str:
        """The messages endpoint."""
        return f"{self.base_url}/v1/messages"

    # ----------------------------------------------------------- request

    def build_request(self, context: LLMContext) -> dict[str, Any]:
        """The JSON body for ``context`` (what is sent, less the encoding)."""
        s = self.settings
        assert isinstance(s, AnthropicLLMSettings)  # noqa: S101 - the constructor's settings type
        fields = dict(self.adapter.get_llm_invocation_params(context, system_instruction=s.system_instruction))
        tools = list(fields.get("tools") or [])
        names = {t.get("name") for t in tools if isinstance(t, dict)}
        extra = [f for f in self.tool_schemas() if f.name not in names]
        if extra:
            tools += AnthropicLLMAdapter().to_provider_tools_format(ToolsSchema(extra))
        if tools:
            fields["tools"] = tools
        if s.enable_prompt_caching:
            fields = add_cache_control(fields)
        body: dict[str, Any] = {"model": s.model, "max_tokens": s.max_tokens, "stream": True}
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
        headers = {**self._headers, "x-api-key": self._api_key.reveal()}
        session = await http_session()
        usage = LLMTokenUsage()
        tools: dict[int, int] = {}  # content block index -> tool call number
        async with session.post(self.url, json=body, headers=headers) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            async for event in iter_sse(resp.content):
                data = event.data.strip()
                if not data:
                    continue
                obj = json.loads(data)
                if not isinstance(obj, dict):
                    raise ServiceProtocolError(f"{self.name}: an event that is not a JSON object")
                kind = obj.get("type") or event.event
                if kind == "content_block_delta":
                    delta = obj["delta"]
                    dtype = delta.get("type")
                    if dtype == "text_delta":
                        if delta.get("text"):
                            yield LLMTextDelta(delta["text"])
                    elif dtype == "input_json_delta":
                        n = tools.get(obj.get("index", -1))
                        if n is None:
                            self.bad_input("input_json_delta for a block that is not a tool_use", data)
                        elif delta.get("partial_json"):
                            yield LLMToolCallDelta(n, arguments=delta["partial_json"])
                    elif dtype not in _SKIPPED_DELTAS:
                        logger.debug("%s: skipped a %r delta", self.name, dtype)
                elif kind == "content_block_start":
                    block = obj["content_block"]
                    btype = block.get("type")
                    if btype == "text":
                        if block.get("text"):
                            yield LLMTextDelta(block["text"])
                    elif btype == "tool_use":
                        n = tools[obj["index"]] = len(tools)
                        given = block.get("input")
                        yield LLMToolCallDelta(n, block.get("id"), block.get("name"),
                                               json.dumps(given) if given else "")
                    else:
                        logger.debug("%s: skipped a %r content block", self.name, btype)
                elif kind == "message_start":
                    _add_usage(usage, (obj.get("message") or {}).get("usage"))
                elif kind == "message_delta":
                    _add_usage(usage, obj.get("usage"))
                    reason = (obj.get("delta") or {}).get("stop_reason")
                    if reason not in (None, "end_turn", "tool_use", "stop_sequence"):
                        logger.info("%s: the answer stopped: %s", self.name, reason)
                elif kind == "message_stop":
                    yield usage
                    return
                elif kind == "error":
                    raise self._stream_error(obj.get("error", obj))
                elif kind not in ("ping", "content_block_stop"):
                    logger.debug("%s: skipped a %r event", self.name, kind)
        raise ServiceConnectionError(f"{self.name}: the stream ended without message_stop")

    def _stream_error(self, err: Any) -> ServiceError:
        """An ``error`` event inside a 200 stream, as the service error its type has over HTTP."""
        if not isinstance(err, dict):
            err = {"message": str(err)}
        msg = self.redact(f"{self.name}: error in the stream: {err.get('message') or err}")
        status = _ERROR_STATUS.get(str(err.get("type")), 500)
        body = self.redact(json.dumps(err))
        if status == 429:
            return ServiceRateLimitError(msg, 429, body)
        if status in (401, 403):
            return ServiceAuthError(msg, status, body)
        return ServiceStatusError(msg, status, body)


def _add_usage(usage: LLMTokenUsage, u: Any) -> None:
    """Fold one ``usage`` object (``message_start``'s or a cumulative ``message_delta``'s) into ``usage``.

    As in pipecat, ``prompt_tokens`` is Anthropic's ``input_tokens`` (net of the cache) and
    ``total_tokens`` adds the cache writes and reads back, so totals compare across providers.
    """
    if not isinstance(u, dict):
        return
    if u.get("input_tokens") is not None:
        usage.prompt_tokens = int(u["input_tokens"])
    if u.get("output_tokens") is not None:
        usage.completion_tokens = int(u["output_tokens"])
    created, read = u.get("cache_creation_input_tokens"), u.get("cache_read_input_tokens")
    if created is not None:
        usage.cache_creation_input_tokens = int(created)
    if read is not None:
        usage.cache_read_input_tokens = int(read)
    usage.total_tokens = (usage.prompt_tokens + usage.completion_tokens + (usage.cache_creation_input_tokens or 0)
                          + (usage.cache_read_input_tokens or 0))
