"""AWS Bedrock ``ConverseStream``: SigV4-signed HTTP, answered as an AWS event stream.

Wire protocol:

* https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
* https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html
* https://docs.aws.amazon.com/bedrock/latest/userguide/conversation-inference-call.html (Converse API)
* https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys.html (Bedrock API keys)
* service model: ``boto/botocore`` ``botocore/data/bedrock-runtime/2023-09-30/service-2.json``
  (``signingName: bedrock``, ``protocol: rest-json``)

``POST https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse-stream`` (the
model id URI-encoded: ``:`` as ``%3A``), ``Content-Type: application/json``, signed with
SigV4 for service ``bedrock`` (:mod:`flowcat.services._sigv4`), or ``Authorization: Bearer``
with a Bedrock API key. The body is ``{messages, system?, toolConfig?, inferenceConfig?,
performanceConfig?, additionalModelRequestFields?}`` (:class:`~flowcat.services.adapters.AWSBedrockLLMAdapter`).

The answer (HTTP 200, ``application/vnd.amazon.eventstream``) is a sequence of binary
messages (:mod:`flowcat.services._eventstream`). ``:message-type: event`` messages name a
``ConverseStreamOutput`` member in ``:event-type`` and carry its JSON: ``messageStart``,
``contentBlockStart`` (``start.toolUse {toolUseId, name}``), ``contentBlockDelta``
(``delta.text``, or ``delta.toolUse.input``: a fragment of the JSON input *string*),
``contentBlockStop``, ``messageStop`` (``stopReason``) and ``metadata`` (``usage
{inputTokens, outputTokens, totalTokens}``, ``metrics.latencyMs``). ``:message-type:
exception`` messages name the failure in ``:exception-type`` (``throttlingException`` 429,
``serviceUnavailableException`` 503, ``internalServerException`` 500,
``modelStreamErrorException`` 424 — retried as a server fault —, ``validationException``
400) with ``{"message"}``. Errors before the stream are HTTP statuses with ``{"message"}``
and the error name in ``x-amzn-ErrorType``.

Accepted on purpose (UNCONFIRMED on a vendor page): a ``:message-type: error`` message
(``:error-code``/``:error-message``, the generic AWS event-stream error); an exception name
in either case (``ThrottlingException``); an unknown event type (logged and skipped); a
``"p"`` padding field; the ``metadata`` event before or after ``messageStop``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

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
from .._eventstream import EventStreamMessage, iter_event_stream
from .._http import http_session
from .._llm import LLMChunk, LLMService, LLMTextDelta, LLMToolCallDelta
from .._registry import ProviderInfo
from .._secrets import Secret, redact
from .._sigv4 import AWSCredentials, resolve_aws_credentials, resolve_aws_region, sign_request
from ..adapters import AWSBedrockLLMAdapter, BaseLLMAdapter
from ..adapters._bedrock_adapter import tool_spec

__all__ = ["AWSBedrockLLMService", "AWSBedrockLLMSettings"]

logger = logging.getLogger("flowcat.services.llm.aws_bedrock")

PROVIDERS = (
    ProviderInfo(
        name="aws_bedrock",
        kind="llm",
        title="AWS Bedrock ConverseStream",
        service="flowcat.services.llm.AWSBedrockLLMService",
        docs=("https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html",
              "https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html"),
        env="AWS_ACCESS_KEY_ID",
        base_url="https://bedrock-runtime.{region}.amazonaws.com",
        notes="SigV4 (own signer, no boto3) with AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); region from "
              "aws_region, AWS_REGION or AWS_DEFAULT_REGION (else us-east-1); or a Bedrock API key "
              "(api_key / AWS_BEARER_TOKEN_BEDROCK)",
    ),
)

SIGNING_NAME = "bedrock"
DEFAULT_REGION = "us-east-1"
EVENTSTREAM = "application/vnd.amazon.eventstream"

# In-stream exception (and HTTP error) names, lower-cased, as statuses.
_EXCEPTIONS = {
    "throttlingexception": 429,
    "modelnotreadyexception": 429,
    "serviceunavailableexception": 503,
    "internalserverexception": 500,
    "modelstreamerrorexception": 424,
    "modeltimeoutexception": 408,
    "validationexception": 400,
    "resourcenotfoundexception": 404,
    "accessdeniedexception": 403,
    "unrecognizedclientexception": 403,
    "invalidsignatureexception": 403,
    "expiredtokenexception": 403,
    "modelerrorexception": 424,
}
_RETRYABLE_4XX = {"modelstreamerrorexception"}  # the model's stream broke: worth another attempt


@dataclass
class AWSBedrockLLMSettings(ServiceSettings):
    """Converse parameters (None: not sent, the model's default applies).

    ``latency`` (``"standard"``/``"optimized"``) is sent as ``performanceConfig``;
    ``additional_model_request_fields`` as ``additionalModelRequestFields``; ``extra`` is
    merged into the request body as given.
    """

    model: str | None = "us.amazon.nova-lite-v1:0"
    system_instruction: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    latency: str | None = None
    additional_model_request_fields: dict[str, Any] = field(default_factory=dict)


class AWSBedrockLLMService(LLMService):
    """Bedrock ConverseStream over raw HTTP, SigV4-signed (no boto3).

    Args:
        model: Shortcut for ``settings.model`` (a model id, an inference-profile id such as
            ``us.amazon.nova-lite-v1:0``, or an ARN).
        aws_access_key: Access key id (else ``AWS_ACCESS_KEY_ID``).
        aws_secret_key: Secret access key (else ``AWS_SECRET_ACCESS_KEY``).
        aws_session_token: Session token of temporary credentials (else ``AWS_SESSION_TOKEN``).
        aws_region: Region (else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then ``us-east-1``).
        api_key: A Bedrock API key, sent as ``Authorization: Bearer`` instead of signing
            (else ``AWS_BEARER_TOKEN_BEDROCK`` when no access key is configured).
        base_url: The endpoint root (default ``https://bedrock-runtime.{region}.amazonaws.com``).
        settings: :class:`AWSBedrockLLMSettings`.
        adapter: Builds ``system``/``messages``/``toolConfig``; None: an
            :class:`~flowcat.services.adapters.AWSBedrockLLMAdapter`. Registered direct
            functions are added to its tools.
        **kwargs: :class:`~flowcat.services.LLMService` arguments.

    Raises:
        ConfigError: No credentials, or ``base_url`` is not an http(s) URL.
    """

    capabilities = ServiceCapabilities(function_calling=True, parallel_tool_calls=True, transport="http")

    def __init__(
        self,
        *,
        model: str | None = None,
        aws_access_key: str | None = None,
        aws_secret_key: str | Secret | None = None,
        aws_session_token: str | Secret | None = None,
        aws_region: str | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        settings: AWSBedrockLLMSettings | None = None,
        adapter: BaseLLMAdapter | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else AWSBedrockLLMSettings()
        if model is not None:
            settings.model = model
        self.region = resolve_aws_region(aws_region, DEFAULT_REGION)
        self.credentials: AWSCredentials | None = None
        bearer: Secret | None = None
        explicit = aws_access_key or aws_secret_key
        if not explicit and (api_key or (not os.environ.get("AWS_ACCESS_KEY_ID")
                                         and os.environ.get("AWS_BEARER_TOKEN_BEDROCK"))):
            raw = api_key or os.environ["AWS_BEARER_TOKEN_BEDROCK"]
            bearer = raw if isinstance(raw, Secret) else Secret(raw)
        else:
            self.credentials = resolve_aws_credentials(aws_access_key, aws_secret_key, aws_session_token)
        self._bearer = bearer
        key = bearer if bearer is not None else self.credentials.secret_access_key if self.credentials else None
        super().__init__(api_key=key, settings=settings, **kwargs)
        base = base_url if base_url is not None else f"https://bedrock-runtime.{self.region}.amazonaws.com"
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base!r}")
        self.base_url = base.rstrip("/")
        self.adapter: BaseLLMAdapter = adapter if adapter is not None else AWSBedrockLLMAdapter()

    @property
    def url(self) -> str:
        """The ConverseStream endpoint of the current model (model id URI-encoded)."""
        return f"{self.base_url}/model/{quote(str(self.settings.model), safe='')}/converse-stream"

    def redact(self, text: str) -> str:
        """``text`` with the secret key, the session token and the API key masked."""
        creds = self.credentials
        return redact(text, self._api_key, creds.session_token if creds else None)

    # ----------------------------------------------------------- request

    def build_request(self, context: LLMContext) -> dict[str, Any]:
        """The JSON body for ``context``."""
        s = self.settings
        assert isinstance(s, AWSBedrockLLMSettings)  # noqa: S101 - the constructor's settings type
        body = dict(self.adapter.get_llm_invocation_params(context, system_instruction=s.system_instruction))
        extra_tools = self.tool_schemas()
        if extra_tools:
            config = dict(body.get("toolConfig") or {})
            tools = list(config.get("tools") or [])
            names = {(t.get("toolSpec") or {}).get("name") for t in tools if isinstance(t, dict)}
            tools += [tool_spec(f.name, f.description, f.properties, f.required)
                      for f in extra_tools if f.name not in names]
            config["tools"] = tools
            body["toolConfig"] = config
        inference = {name: value for name, value in (
            ("maxTokens", s.max_tokens), ("temperature", s.temperature), ("topP", s.top_p),
            ("stopSequences", s.stop_sequences)) if value is not None}
        if inference:
            body["inferenceConfig"] = inference
        if s.latency is not None:
            body["performanceConfig"] = {"latency": s.latency}
        if s.additional_model_request_fields:
            body["additionalModelRequestFields"] = s.additional_model_request_fields
        body.update(s.extra)
        return body

    def request_headers(self, url: str, data: bytes) -> dict[str, str]:
        """The headers to send for ``data`` to ``url``, signed (or with the API key)."""
        host = urlsplit(url).netloc
        headers = {"Host": host, "Content-Type": "application/json", "Accept": EVENTSTREAM}
        if self._bearer is not None:
            headers["Authorization"] = f"Bearer {self._bearer.reveal()}"
            return headers
        assert self.credentials is not None  # noqa: S101 - invariant (type narrowing), not input validation
        signed = sign_request("POST", url, [("host", host), ("content-type", "application/json")], data,
                              credentials=self.credentials, region=self.region, service=SIGNING_NAME)
        headers.update(signed.headers)
        return headers

    # ------------------------------------------------------------ stream

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        body = self.build_request(context)
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        url = self.url
        headers = self.request_headers(url, data)
        session = await http_session()
        async with session.post(URL(url, encoded=True), data=data, headers=headers) as resp:
            if resp.status >= 400:
                raise await self._http_error(resp)
            ctype = resp.headers.get("Content-Type", "")
            if EVENTSTREAM not in ctype:
                logger.debug("%s: answer of type %r parsed as an event stream", self.name, ctype)
            stopped = False
            try:
                async for message in iter_event_stream(resp.content):
                    mtype = message.headers.get(":message-type")
                    if mtype != "event":
                        raise self._stream_exception(message)
                    event = message.headers.get(":event-type")
                    obj = json.loads(message.payload) if message.payload else {}
                    if not isinstance(obj, dict):
                        raise ServiceProtocolError(f"{self.name}: {event} payload is not a JSON object")
                    if event == "contentBlockDelta":
                        delta = obj.get("delta") or {}
                        text = delta.get("text")
                        if text:
                            yield LLMTextDelta(text)
                        tool = delta.get("toolUse")
                        if tool is not None:
                            yield LLMToolCallDelta(int(obj.get("contentBlockIndex", 0)), None, None,
                                                   str(tool.get("input") or ""))
                    elif event == "contentBlockStart":
                        start = (obj.get("start") or {}).get("toolUse")
                        if start is not None:
                            yield LLMToolCallDelta(int(obj.get("contentBlockIndex", 0)), start.get("toolUseId"),
                                                   start.get("name"), "")
                    elif event == "metadata":
                        usage = obj.get("usage")
                        if usage:
                            yield _usage(usage)
                    elif event == "messageStop":
                        stopped = True
                        logger.debug("%s: stop reason %s", self.name, obj.get("stopReason"))
                    elif event not in ("messageStart", "contentBlockStop"):
                        self.bad_input(f"unknown event type {event!r}", message.payload)
            except ServiceProtocolError as exc:
                # The framing (or a payload) is broken: the connection cannot be trusted for reuse.
                logger.warning("%s: %s; closing the connection", self.name, self.redact(str(exc)))
                resp.close()
                raise
            except ValueError as exc:  # a payload that is not JSON
                logger.warning("%s: a malformed event payload; closing the connection", self.name)
                resp.close()
                raise ServiceProtocolError(self.redact(f"{self.name}: malformed event payload: {exc}")) from exc
        if not stopped:
            raise ServiceConnectionError(f"{self.name}: the stream ended without messageStop")

    def _error_for(self, name: str, message: str, status: int | None, body: str) -> ServiceError:
        key = name.split(":", 1)[0].strip().lower()
        code = status if status is not None else _EXCEPTIONS.get(key, 500)
        msg = self.redact(f"{self.name}: {name.split(':', 1)[0] or 'error'}: {message}")
        if code == 429:
            return ServiceRateLimitError(msg, 429, body)
        if code in (401, 403):
            return ServiceAuthError(msg, code, body)
        err = ServiceStatusError(msg, code, body)
        if key in _RETRYABLE_4XX:
            err.retryable = True
        return err

    def _stream_exception(self, message: EventStreamMessage) -> ServiceError:
        h = message.headers
        text = message.payload.decode("utf-8", errors="replace")
        body = self.redact(text)
        if h.get(":message-type") == "exception":
            try:
                detail = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                detail = text
            return self._error_for(str(h.get(":exception-type") or "exception"), str(detail), None, body)
        if h.get(":message-type") == "error":
            return self._error_for(str(h.get(":error-code") or "error"), str(h.get(":error-message") or text),
                                   None, body)
        return ServiceProtocolError(self.redact(f"{self.name}: message of type {h.get(':message-type')!r}"))

    async def _http_error(self, resp: aiohttp.ClientResponse) -> ServiceError:
        raw = await resp.text(errors="replace")
        name = resp.headers.get("x-amzn-ErrorType", "")
        detail: Any = raw[:500]
        try:
            obj = json.loads(raw)
            if isinstance(obj, dict):
                detail = obj.get("message") or obj.get("Message") or raw[:500]
                name = name or str(obj.get("__type") or "").rpartition("#")[2]
        except ValueError:
            pass
        return self._error_for(name, str(detail), resp.status, self.redact(raw))


def _usage(u: dict[str, Any]) -> LLMTokenUsage:
    prompt = int(u.get("inputTokens") or 0)
    completion = int(u.get("outputTokens") or 0)
    cache_read = u.get("cacheReadInputTokens")
    cache_write = u.get("cacheWriteInputTokens")
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(u.get("totalTokens") or prompt + completion),
        cache_read_input_tokens=None if cache_read is None else int(cache_read),
        cache_creation_input_tokens=None if cache_write is None else int(cache_write),
    )
