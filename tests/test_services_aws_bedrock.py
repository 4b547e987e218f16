"""AWSBedrockLLMService: the conformance suite against a SigV4-verifying ConverseStream fake, and the wire.

The wire tests assert the request exactly (path with the model id encoded, signed headers,
JSON body: system, messages with toolUse/toolResult blocks, toolConfig, inferenceConfig),
how the event stream becomes frames (text, tool-use input joined across fragments, usage)
and how failures map (in-stream exceptions, HTTP errors with ``x-amzn-ErrorType``, a bad CRC).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from _fake_bedrock import AKID, SECRET, USAGE, FakeBedrock, Reply, ToolUse, event, exception, reply_frames
from _helpers import conformance_params
from flowcat.errors import (
    ConfigError,
    ServiceAuthError,
    ServiceConnectionError,
    ServiceProtocolError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from flowcat.frames import (
    ErrorFrame,
    Frame,
    FunctionCallResultFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMUsageMetricsData,
    MetricsFrame,
)
from flowcat.runtime import FrameProcessor, PipelineParams
from flowcat.services import Backoff, FunctionCallParams, close_http_sessions
from flowcat.services.adapters import AWSBedrockLLMAdapter, FunctionSchema, LLMSpecificMessage, ToolsSchema
from flowcat.services.llm import AWSBedrockLLMService, AWSBedrockLLMSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)
MODEL = "us.amazon.nova-lite-v1:0"


def make_service(fake: FakeProvider, **kw: Any) -> AWSBedrockLLMService:
    assert isinstance(fake, FakeBedrock)
    kw.setdefault("request_timeout_secs", 0.5)
    kw.setdefault("chunk_timeout_secs", 0.5)
    kw.setdefault("retry", FAST)
    return AWSBedrockLLMService(base_url=fake.url, aws_access_key=AKID, aws_secret_key=fake.api_key,
                                aws_region="us-east-1", model=MODEL, **kw)


def _factory(fake: FakeProvider) -> FrameProcessor:
    return make_service(fake)


TARGET = ConformanceTarget("llm", FakeBedrock, _factory)
CONFORMANCE = {"llm:aws_bedrock": TARGET}  # the registry test checks every provider has one


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ----------------------------------------------------------------------------- helpers


async def run(llm: AWSBedrockLLMService, context: LLMContext, settle: float = 0.0) -> tuple[list[Frame], list[Frame]]:
    frames: list[Frame] = [LLMContextFrame(context)]
    if settle:
        frames.append(SleepFrame(settle))  # let tool calls finish before the EndFrame
    try:
        return await run_test(llm, frames_to_send=frames,
                              params=PipelineParams(enable_metrics=True, enable_usage_metrics=True), timeout=10)
    finally:
        await close_http_sessions()


async def serve(*replies: Reply | str, **kw: Any) -> FakeBedrock:
    fake = FakeBedrock(list(replies), **kw)
    await fake.start()
    return fake


def text(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def errors(frames: list[Frame]) -> list[ErrorFrame]:
    return [f for f in frames if isinstance(f, ErrorFrame)]


WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])


# ----------------------------------------------------------------------------- request


async def test_request_on_the_wire_with_system_turns_a_tool_call_and_its_result() -> None:
    fake = await serve("Sunny.")
    try:
        llm = make_service(fake, settings=AWSBedrockLLMSettings(
            model=MODEL, max_tokens=256, temperature=0.5, top_p=0.9, stop_sequences=["END"], latency="optimized",
            additional_model_request_fields={"top_k": 20}))
        context = LLMContext([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "tooluse_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"sky": "clear", "c": 21}'},
            {"role": "user", "content": "And tomorrow?"},
        ], tools=ToolsSchema([WEATHER]), tool_choice="required")
        down, _ = await run(llm, context)
    finally:
        await fake.close()
    assert text(down) == "Sunny."
    assert fake.bodies == [{
        "system": [{"text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
            # The tool result and the next user text share one user turn (turns must alternate).
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"sky": "clear", "c": 21}}]}},
                {"text": "And tomorrow?"}]},
        ],
        "toolConfig": {"tools": [{"toolSpec": {
            "name": "get_weather", "description": "Weather in a city.",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}}}],
            "toolChoice": {"any": {}}},
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
        "performanceConfig": {"latency": "optimized"},
        "additionalModelRequestFields": {"top_k": 20},
    }]
    assert fake.paths == ["/model/us.amazon.nova-lite-v1%3A0/converse-stream"]  # the ':' encoded on the wire
    assert fake.models == [MODEL]
    h = fake.headers[0]
    assert h["Content-Type"] == "application/json"
    assert h["Accept"] == "application/vnd.amazon.eventstream"
    assert h["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/{h['X-Amz-Date'][:8]}/us-east-1/bedrock/"
                                         "aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=")
    assert fake.auth_failures == 0  # the fake recomputed the signature and agreed
    assert SECRET not in json.dumps(h)


async def test_session_token_is_sent_and_signed() -> None:
    fake = await serve("Hi.", session_token="FQoGZXIvYXdzEXAMPLE-token//abc==")
    try:
        llm = make_service(fake, aws_session_token="FQoGZXIvYXdzEXAMPLE-token//abc==")
        down, _ = await run(llm, LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    assert text(down) == "Hi." and fake.auth_failures == 0
    h = fake.headers[0]
    assert h["X-Amz-Security-Token"] == "FQoGZXIvYXdzEXAMPLE-token//abc=="
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token," in h["Authorization"]


async def test_a_wrong_secret_is_refused_by_the_fake_and_reported_once() -> None:
    fake = await serve("never")
    try:
        llm = AWSBedrockLLMService(base_url=fake.url, aws_access_key=AKID, aws_secret_key="not-the-secret-0123456789",
                                   aws_region="us-east-1", model=MODEL, retry=FAST, request_timeout_secs=2)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    assert fake.auth_errors == ["signature mismatch"]  # refused once: an auth error is not retried
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceAuthError) and err.exception.status_code == 403
    assert "InvalidSignatureException" in err.error and "not-the-secret" not in err.error
    assert text(down) == ""


async def test_bedrock_api_key_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-0123456789abcdef")
    fake = await serve("Keyed.", bearer_key="bedrock-api-key-0123456789abcdef")
    try:
        llm = AWSBedrockLLMService(base_url=fake.url, aws_region="us-east-1", model=MODEL)
        down, _ = await run(llm, LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    assert text(down) == "Keyed." and fake.auth_failures == 0
    assert fake.headers[0]["Authorization"] == "Bearer bedrock-api-key-0123456789abcdef"
    assert "X-Amz-Date" not in fake.headers[0]


def test_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK",
                "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        AWSBedrockLLMService()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-0123456789")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    llm = AWSBedrockLLMService(model="anthropic.claude-3-haiku-20240307-v1:0")
    assert llm.region == "eu-west-3" and llm.credentials is not None and llm.credentials.access_key_id == "AKIDENV"
    assert llm.url == ("https://bedrock-runtime.eu-west-3.amazonaws.com/model/"
                       "anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
    assert "env-secret" not in llm.redact("echo env-secret-0123456789")
    monkeypatch.delenv("AWS_REGION")
    assert AWSBedrockLLMService().region == "us-east-1"
    with pytest.raises(ConfigError, match="http"):
        AWSBedrockLLMService(base_url="bedrock-runtime.example")


# ----------------------------------------------------------------------------- stream


async def test_tool_use_input_streamed_in_fragments_is_joined_and_the_call_runs() -> None:
    fake = await serve(Reply("Checking.", [ToolUse("get_weather", {"city": "Paris", "unit": "celsius"}, "tooluse_A"),
                                           ToolUse("get_time", {"tz": "Europe/Paris"}, "tooluse_B")],
                             input_chunk=3), "Done.")
    calls: list[tuple[str, dict[str, Any], str]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, dict(params.arguments), params.tool_call_id))
        await params.result_callback({"ok": True})

    try:
        llm = make_service(fake)
        llm.register_function("get_weather", handler)
        llm.register_function("get_time", handler)
        down, _ = await run(llm, LLMContext([{"role": "user", "content": "Weather and time?"}],
                                            tools=ToolsSchema([WEATHER])), settle=0.3)
    finally:
        await fake.close()
    assert sorted(calls) == [("get_time", {"tz": "Europe/Paris"}, "tooluse_B"),
                             ("get_weather", {"city": "Paris", "unit": "celsius"}, "tooluse_A")]
    results = [f for f in down if isinstance(f, FunctionCallResultFrame)]
    assert sorted(r.tool_call_id for r in results) == ["tooluse_A", "tooluse_B"]
    assert text(down).startswith("Checking.")


async def test_usage_metrics_and_frame_order() -> None:
    fake = await serve()
    fake.script = reply_frames("Hi there.", usage={"inputTokens": 30, "outputTokens": 4, "totalTokens": 34,
                                                   "cacheReadInputTokens": 10})
    try:
        down, _ = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    kinds = [type(f) for f in down if isinstance(f, (LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame))]
    assert kinds[0] is LLMFullResponseStartFrame and kinds[-1] is LLMFullResponseEndFrame
    usage = [d.value for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens, usage[0].total_tokens,
            usage[0].cache_read_input_tokens) == (30, 4, 34, 10)


async def test_unknown_events_are_skipped_and_counted() -> None:
    fake = await serve()
    fake.script = [event("messageStart", {"role": "assistant"}), event("futureEvent", {"x": 1}),
                   event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ok"}}),
                   event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}),
                   event("messageStop", {"stopReason": "end_turn"}), event("metadata", {"usage": USAGE})]
    try:
        llm = make_service(fake)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    assert text(down) == "ok" and not errors(up) and llm.bad_messages == 1


@pytest.mark.parametrize(("name", "cls", "status", "retried"), [
    ("throttlingException", ServiceRateLimitError, 429, True),
    ("serviceUnavailableException", ServiceStatusError, 503, True),
    ("internalServerException", ServiceStatusError, 500, True),
    ("modelStreamErrorException", ServiceStatusError, 424, True),
    ("validationException", ServiceStatusError, 400, False),
])
async def test_in_stream_exceptions(name: str, cls: type, status: int, retried: bool) -> None:
    fake = await serve()
    fake.script = [exception(name, f"{name} happened")]
    try:
        down, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    errs = errors(up)
    assert len(errs) == 1 and type(errs[0].exception) is cls
    exc = errs[0].exception
    assert isinstance(exc, ServiceStatusError) and exc.status_code == status
    assert f"{name} happened" in errs[0].error
    assert fake.requests == (FAST.max_attempts if retried else 1)


async def test_an_exception_after_text_is_not_retried() -> None:
    fake = await serve()
    fake.set(Behaviour.STREAM_ERROR, failures=1)
    fake.stream_exception = ("throttlingException", "slow down")
    try:
        down, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    assert text(down) == "Hello" and fake.requests == 1
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceRateLimitError) and not err.exception.retryable


@pytest.mark.parametrize(("status", "cls", "requests"), [
    (429, ServiceRateLimitError, 4), (503, ServiceStatusError, 4), (400, ServiceStatusError, 1),
    (403, ServiceAuthError, 1), (404, ServiceStatusError, 1),
])
async def test_http_errors_carry_the_error_type(status: int, cls: type, requests: int) -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, status=status)
    try:
        _, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert type(err.exception) is cls and fake.requests == requests
    assert {429: "ThrottlingException", 503: "ServiceUnavailableException", 400: "ValidationException",
            403: "AccessDeniedException", 404: "ResourceNotFoundException"}[status] in err.error
    assert SECRET not in err.error  # the body echoed the secret; it is masked


async def test_a_bad_crc_fails_the_request_logs_and_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    fake = await serve()
    fake.set(Behaviour.MALFORMED, failures=1)
    try:
        with caplog.at_level(logging.WARNING, logger="flowcat.services.llm.aws_bedrock"):
            down, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceProtocolError) and "message CRC mismatch" in err.error
    assert text(down) == "Hello" and fake.requests == 1  # output was pushed: not replayed
    assert any("CRC mismatch" in r.getMessage() and "closing the connection" in r.getMessage() for r in caplog.records)


async def test_a_payload_that_is_not_json_is_a_protocol_error() -> None:
    fake = await serve()
    fake.script = [event("messageStart", {"role": "assistant"}),
                   _raw_event("contentBlockDelta", b"{not json")]
    try:
        _, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceProtocolError) and fake.requests == 1


async def test_a_stream_without_message_stop_is_a_connection_error() -> None:
    fake = await serve()
    fake.script = reply_frames("Cut short.")[:3]
    try:
        down, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceConnectionError) and "messageStop" in err.error


def _raw_event(name: str, payload: bytes) -> bytes:
    from flowcat.services._eventstream import encode_message

    return encode_message({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                          payload)


# ----------------------------------------------------------------------------- adapter


def test_adapter_conversion_rules() -> None:
    adapter = AWSBedrockLLMAdapter()
    context = LLMContext([
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "t2", "type": "function", "function": {"name": "b", "arguments": {"x": 1}}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "plain text result"},
        {"role": "tool", "tool_call_id": "t2", "content": '{"x": 2}', "status": "error"},
        {"role": "system", "content": "Later system note."},
        LLMSpecificMessage("aws", {"role": "assistant", "content": [{"text": "vendor turn"}]}),
        LLMSpecificMessage("openai", {"role": "user", "content": "not for Bedrock"}),
    ], tool_choice={"type": "function", "function": {"name": "a"}},
        tools=ToolsSchema([FunctionSchema("a", "", {}, [])]))
    params = adapter.get_llm_invocation_params(context)
    assert params["system"] == [{"text": "Sys."}]
    assert params["messages"] == [
        {"role": "user", "content": [{"text": "Look:"}, {"image": {"format": "png", "source": {"bytes": "iVBO"}}},
                                     {"text": "(empty)"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "a", "input": {}}},
                                          {"toolUse": {"toolUseId": "t2", "name": "b", "input": {"x": 1}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "plain text result"}]}},
            {"toolResult": {"toolUseId": "t2", "content": [{"json": {"x": 2}}], "status": "error"}},
            {"text": "Later system note."}]},
        {"role": "assistant", "content": [{"text": "vendor turn"}]},
        {"role": "user", "content": [{"text": "."}]},  # no assistant prefill: a user turn closes it
    ]
    assert params["toolConfig"] == {"tools": [{"toolSpec": {"name": "a", "description": "a", "inputSchema": {
        "json": {"type": "object", "properties": {}, "required": []}}}}], "toolChoice": {"tool": {"name": "a"}}}
    assert adapter.get_llm_invocation_params(LLMContext([{"role": "user", "content": "x"}]),
                                             system_instruction="Override.")["system"] == [{"text": "Override."}]


async def test_the_fake_checks_the_path_rule_a_single_encoded_signature_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Bedrock (like every service but S3) signs the wire path encoded once more: '%3A' as '%253A'.
    # A client that signed the wire path as is (the S3 rule) is refused by the fake's own check.
    import flowcat.services.llm.aws_bedrock as mod

    real = mod.sign_request
    monkeypatch.setattr(mod, "sign_request", lambda *a, **kw: real(*a, **kw, double_encode=False))
    fake = await serve("never")
    try:
        _, up = await run(make_service(fake), LLMContext([{"role": "user", "content": "Hi"}]))
    finally:
        await fake.close()
    assert fake.auth_errors == ["signature mismatch"]
    assert isinstance(errors(up)[0].exception, ServiceAuthError)
