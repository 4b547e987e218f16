"""OpenAI Responses API, streamed over Server-Sent Events.

Wire protocol:

* https://platform.openai.com/docs/api-reference/responses (``POST /v1/responses``)
* https://platform.openai.com/docs/api-reference/responses-streaming (the events)
* spec: github.com/openai/openai-openapi ``openapi.yaml`` (``CreateResponse``,
  ``ResponseStreamEvent``)

``POST {base_url}/responses`` with ``Authorization: Bearer <key>`` and a JSON body
``{"model", "stream": true, "store": false, "input": [items], "instructions"?,
"tools"?, "tool_choice"?, "max_output_tokens"?, ...}``. The context is converted by
:class:`~flowcat.services.adapters.OpenAIResponsesLLMAdapter`: messages become input
messages, an assistant's tool calls ``function_call`` items and tool results
``function_call_output`` items (by ``call_id``); tools are flat
``{"type": "function", "name", "description", "parameters"}``. With ``store:
false`` (the default here) nothing is kept server-side: every request carries the
whole conversation, as with Chat Completions.

The answer is SSE; each event has ``event: <type>`` and a JSON ``data`` whose
``type`` repeats it. Used here:

* ``response.output_text.delta`` (``delta``): text;
* ``response.output_item.added`` with a ``function_call`` item (``call_id``,
  ``name``, ``arguments`` usually empty) opens a tool call at ``output_index``;
  ``response.function_call_arguments.delta`` (``delta``) continues it;
  ``response.function_call_arguments.done`` (``arguments``) and
  ``response.output_item.done`` (the whole item) complete it when no delta came;
* ``response.completed`` (``response.usage``: ``input_tokens``, ``output_tokens``,
  ``total_tokens``, ``*_details``) ends the answer; ``response.incomplete`` ends it
  too (logged with ``incomplete_details.reason``);
* ``response.failed`` (``response.error``: ``code``, ``message``) and ``error``
  (``code``, ``message``, ``param``) are failures, mapped like Chat Completions'
  in-stream errors (a ``rate_limit_exceeded`` code: rate limit, retryable before
  output).

There is no ``[DONE]``: a body that closes before ``response.completed`` /
``incomplete`` is a dropped connection. Other events (``response.created``,
``response.content_part.*``, reasoning summaries, ...) are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, ServiceConnectionError, ServiceProtocolError
from ...frames import LLMContext, LLMTokenUsage
from .._ai_service import ServiceCapabilities, ServiceSettings
from .._http import http_session, iter_sse, raise_for_status
from .._llm import LLMChunk, LLMService, LLMTextDelta, LLMToolCallDelta
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from ..adapters import BaseLLMAdapter, OpenAIResponsesLLMAdapter
from .openai import DEFAULT_BASE_URL, stream_error

__all__ = ["OpenAIResponsesLLMService", "OpenAIResponsesLLMSettings"]

logger = logging.getLogger("flowcat.services.llm.openai_responses")

PROVIDERS = (
    ProviderInfo(
        name="openai_responses",
        kind="llm",
        title="OpenAI Responses API",
        service="flowcat.services.llm.OpenAIResponsesLLMService",
        docs=("https://platform.openai.com/docs/api-reference/responses",
              "https://platform.openai.com/docs/api-reference/responses-streaming"),
        env="OPENAI_API_KEY",
        base_url=DEFAULT_BASE_URL,
        notes="`POST /responses`, store=false (the whole context each turn); function_call items",
    ),
)

_BODY_FIELDS = ("temperature", "top_p", "max_output_tokens", "parallel_tool_calls", "service_tier", "truncation")


@dataclass
class OpenAIResponsesLLMSettings(ServiceSettings):
    """Responses API parameters (None: not sent). ``extra`` is merged into the body as given.

    ``reasoning_effort`` is sent as ``reasoning: {"effort": ...}``.
    """

    model: str | None = "gpt-4.1"
    system_instruction: str | None = None
    store: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None
    truncation: str | None = None
    reasoning_effort: str | None = None


class OpenAIResponsesLLMService(LLMService):
    """The OpenAI Responses API over SSE (``POST {base_url}/responses``).

    Args:
        api_key: The key (else ``OPENAI_API_KEY``).
        base_url: The API root; ``/responses`` is appended.
        model: Shortcut for ``settings.model``.
        settings: :class:`OpenAIResponsesLLMSettings`.
        adapter: Builds ``input``/``instructions``/``tools``/``tool_choice``; None: an
            :class:`~flowcat.services.adapters.OpenAIResponsesLLMAdapter`. Registered
            direct functions are added to its ``tools``.
        organization: ``OpenAI-Organization`` header.
        project: ``OpenAI-Project`` header.
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
        settings: OpenAIResponsesLLMSettings | None = None,
        adapter: BaseLLMAdapter | None = None,
        organization: str | None = None,
        project: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else OpenAIResponsesLLMSettings()
        if model is not None:
            settings.model = model
        super().__init__(api_key=resolve_api_key("openai", api_key), settings=settings, **kwargs)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.adapter: BaseLLMAdapter = adapter if adapter is not None else OpenAIResponsesLLMAdapter()
        self._headers: dict[str, str] = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._headers.update(headers or {})

    @property
    def url(self) -> str:
        """The responses endpoint."""
        return f"{self.base_url}/responses"

    # ----------------------------------------------------------- request

    def build_request(self, context: LLMContext) -> dict[str, Any]:
        """The JSON body for ``context`` (what is sent, less the encoding)."""
        s = self.settings
        assert isinstance(s, OpenAIResponsesLLMSettings)  # noqa: S101 - the constructor's settings type
        fields = dict(self.adapter.get_llm_invocation_params(context, system_instruction=s.system_instruction))
        tools = list(fields.get("tools") or [])
        names = {t.get("name") for t in tools if isinstance(t, dict)}
        tools += [_flat_tool(f.to_openai()) for f in self.tool_schemas() if f.name not in names]
        if tools:
            fields["tools"] = tools
        body: dict[str, Any] = {"model": s.model, "stream": True, "store": s.store}
        body.update(fields)
        for name in _BODY_FIELDS:
            value = getattr(s, name)
            if value is not None:
                body[name] = value
        if s.reasoning_effort is not None:
            body["reasoning"] = {"effort": s.reasoning_effort}
        body.update(s.extra)
        return body

    # ------------------------------------------------------------ stream

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        body = self.build_request(context)
        headers = {**self._headers, "Authorization": f"Bearer {self._api_key.reveal()}"}
        session = await http_session()
        calls = _Calls()
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
                if kind == "response.output_text.delta":
                    delta = obj.get("delta")
                    if delta:
                        yield LLMTextDelta(str(delta))
                elif kind in _TOOL_EVENTS:
                    for chunk in calls.on_event(kind, obj):
                        yield chunk
                elif kind in ("response.completed", "response.incomplete"):
                    response = obj.get("response") or {}
                    if kind == "response.incomplete":
                        logger.debug("%s: response incomplete: %s", self.name,
                                     (response.get("incomplete_details") or {}).get("reason"))
                    usage = response.get("usage")
                    if usage:
                        yield _usage(usage)
                    return
                elif kind == "response.failed":
                    response = obj.get("response") or {}
                    raise stream_error(response.get("error") or {"message": "response failed"}, self.name,
                                       self.redact)
                elif kind == "error":
                    err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
                    raise stream_error(err, self.name, self.redact)
        raise ServiceConnectionError(f"{self.name}: the stream ended before response.completed")


_TOOL_EVENTS = frozenset({
    "response.output_item.added", "response.output_item.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
})


class _Calls:
    """The function calls of one response, by ``output_index`` (or ``item_id``)."""

    __slots__ = ("_args", "_slots")

    def __init__(self) -> None:
        self._slots: dict[Any, int] = {}  # output_index / item id -> call slot
        self._args: dict[int, bool] = {}  # slot -> arguments already sent

    def _slot(self, obj: Mapping[str, Any], item: Mapping[str, Any] | None) -> tuple[int, bool]:
        keys = [k for k in (obj.get("output_index"), obj.get("item_id"), (item or {}).get("id")) if k is not None]
        for k in keys:
            if k in self._slots:
                return self._slots[k], False
        slot = len(self._args)
        self._args[slot] = False
        for k in keys:
            self._slots[k] = slot
        return slot, True

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> list[LLMToolCallDelta]:
        item = obj.get("item") if kind.startswith("response.output_item.") else None
        if item is not None and (not isinstance(item, dict) or item.get("type") != "function_call"):
            return []  # a message, reasoning, a built-in tool call: not ours
        if item is None and not ("output_index" in obj or "item_id" in obj):
            return []
        slot, new = self._slot(obj, item)
        out: list[LLMToolCallDelta] = []
        if item is not None and (new or kind == "response.output_item.added"):
            out.append(LLMToolCallDelta(slot, item.get("call_id") or item.get("id"), item.get("name")))
        if kind == "response.function_call_arguments.delta":
            delta = obj.get("delta") or ""
            if delta:
                self._args[slot] = True
                out.append(LLMToolCallDelta(slot, arguments=str(delta)))
        elif not self._args[slot]:
            whole = obj.get("arguments") if item is None else item.get("arguments")
            if whole:
                self._args[slot] = True
                out.append(LLMToolCallDelta(slot, arguments=str(whole)))
        return out


def _flat_tool(chat_tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = chat_tool.get("function") or {}
    return {"type": "function", **fn}


def _usage(u: Mapping[str, Any]) -> LLMTokenUsage:
    prompt = int(u.get("input_tokens") or 0)
    completion = int(u.get("output_tokens") or 0)
    cached = (u.get("input_tokens_details") or {}).get("cached_tokens")
    reasoning = (u.get("output_tokens_details") or {}).get("reasoning_tokens")
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(u.get("total_tokens") or prompt + completion),
        cache_read_input_tokens=None if cached is None else int(cached),
        reasoning_tokens=None if reasoning is None else int(reasoning),
    )
