"""OpenAILLMService: the conformance suite against a local Chat Completions fake, and the wire.

The wire tests assert the request exactly (path, headers, JSON body: model, stream,
stream_options, messages, tools, tool_choice, parameters) and how each documented
stream shape becomes frames: text deltas, tool-call pieces joined by index, the usage
chunk, comments, an error object after HTTP 200, a body without ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from _fake_openai import USAGE, FakeOpenAI, chunk, sse
from _helpers import conformance_params
from flowcat.errors import ConfigError, LLMContextConversionError, ServiceRateLimitError, ServiceStatusError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
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
from flowcat.services.adapters import (
    AdapterType,
    FunctionSchema,
    LLMSpecificMessage,
    OpenAILLMAdapter,
    ToolsSchema,
)
from flowcat.services.llm import OpenAILLMService, OpenAILLMSettings
from flowcat.testing import SleepFrame, fakes, run_test
from flowcat.testing.conformance import (
    Behaviour,
    ConformanceTarget,
    FakeProvider,
    Scenario,
    run_scenario,
    scenarios,
)

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    assert isinstance(fake, FakeOpenAI)
    return OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, request_timeout_secs=0.5,
                            chunk_timeout_secs=0.5, retry=FAST)


TARGET = ConformanceTarget("llm", FakeOpenAI, make_service)
CONFORMANCE = {"llm:openai": TARGET}  # the registry test checks every provider has one
VENDOR_KEY = "sk-vendor-fake-0123456789-SECRET"
# The benchmark's vendor fake (flowcat.testing.fakes), serving /v1/chat/completions too.
VENDOR_TARGET = ConformanceTarget(
    "llm",
    lambda: fakes.FakeOpenAI(["Hello from the fake — café ☕."], api_key=VENDOR_KEY, echo_key_in_errors=True,
                             split_writes=True, sse_comments=True),
    lambda f: OpenAILLMService(base_url=f.url + "/v1", api_key=f.api_key, request_timeout_secs=0.5,
                               chunk_timeout_secs=0.5, retry=FAST),
)


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


@pytest.mark.parametrize("scenario", scenarios("llm"), ids=str)
async def test_conformance_against_the_benchmark_fake(scenario: Scenario) -> None:
    await run_scenario(VENDOR_TARGET, scenario)


# ----------------------------------------------------------------------------- helpers


async def run(llm: OpenAILLMService, context: LLMContext, settle: float = 0.0) -> tuple[list[Frame], list[Frame]]:
    frames: list[Frame] = [LLMContextFrame(context)]
    if settle:
        frames.append(SleepFrame(settle))  # let tool calls finish before the EndFrame
    try:
        return await run_test(llm, frames_to_send=frames,
                              params=PipelineParams(enable_metrics=True, enable_usage_metrics=True), timeout=10)
    finally:
        await close_http_sessions()


async def serve(**kw: Any) -> FakeOpenAI:
    fake = FakeOpenAI(**kw)
    await fake.start()
    return fake


def text(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


# ----------------------------------------------------------------------------- request


async def test_request_on_the_wire() -> None:
    fake = await serve()
    try:
        llm = OpenAILLMService(
            base_url=fake.base_url + "/", api_key=fake.api_key,
            settings=OpenAILLMSettings(model="gpt-test", temperature=0.5, max_completion_tokens=64,
                                       extra={"reasoning_effort": "low"}),
            organization="org-1", headers={"X-Title": "flowcat"},
        )
        schema = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])
        context = LLMContext([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}],
                             tools=ToolsSchema([schema]), tool_choice="auto")
        await run(llm, context)
    finally:
        await fake.close()
    assert fake.bodies == [{
        "model": "gpt-test", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "auto", "temperature": 0.5, "max_completion_tokens": 64, "reasoning_effort": "low",
    }]
    h = fake.headers[0]
    assert h["Authorization"] == f"Bearer {fake.api_key}"
    assert h["Content-Type"] == "application/json"
    assert h["OpenAI-Organization"] == "org-1" and h["X-Title"] == "flowcat"


async def test_request_through_the_agent_adapter_with_a_direct_function() -> None:
    async def get_time(params: FunctionCallParams, zone: str) -> str:
        """Current time.

        Args:
            zone: The time zone.
        """
        return "noon"

    fake = await serve()
    try:
        llm = OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, model="m",
                               adapter=OpenAILLMAdapter(convert_developer_to_user=True),
                               settings=OpenAILLMSettings(system_instruction="You are terse."))
        llm.register_direct_function(get_time)
        context = LLMContext([{"role": "developer", "content": "Rules."},
                              LLMSpecificMessage("openai", {"role": "user", "content": "vendor"}),
                              LLMSpecificMessage("anthropic", {"role": "user", "content": "other"})])
        await run(llm, context)
    finally:
        await fake.close()
    body = fake.bodies[0]
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Rules."}, {"role": "user", "content": "vendor"}]
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    assert body["tools"][0]["function"]["parameters"]["required"] == ["zone"]


def test_key_from_the_environment_and_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAILLMService()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789")
    llm = OpenAILLMService()
    assert llm._api_key is not None and llm._api_key.reveal() == "sk-env-0123456789"
    assert llm.url == "https://api.openai.com/v1/chat/completions"
    assert "sk-env" not in repr(llm._api_key)
    with pytest.raises(ConfigError, match="base_url"):
        OpenAILLMService(base_url="api.openai.com/v1")


# ----------------------------------------------------------------------------- stream shapes


async def test_tool_call_pieces_are_joined_by_index() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, params.tool_call_id, dict(params.arguments)))
        await params.result_callback({"ok": params.function_name})

    fake = await serve()
    fake.script = [
        sse(chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_", "arguments": ""}}]})),
        sse(chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "get_time", "arguments": "{\"zo"}}]})),
        sse(chunk({"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": "{\"city\":"}}]})),
        sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": " \"Par\u00eds\"}"}}]})),
        sse(chunk({"tool_calls": [{"index": 1, "function": {"arguments": "ne\": \"UTC\"}"}}]})),
        sse(chunk({}, "tool_calls")), sse(USAGE), b"data: [DONE]\n\n",
    ]
    try:
        llm = OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key)
        llm.register_function(None, handler)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "two calls"}]), settle=0.3)
    finally:
        await fake.close()
    started = [f for f in down if isinstance(f, FunctionCallsStartedFrame)]
    assert [(c.function_name, c.tool_call_id, c.arguments) for c in started[0].function_calls] == [
        ("get_weather", "call_a", {"city": "París"}), ("get_time", "call_b", {"zone": "UTC"})]
    assert sorted(calls) == [("get_time", "call_b", {"zone": "UTC"}), ("get_weather", "call_a", {"city": "París"})]
    results = {f.tool_call_id: f.result for f in down if isinstance(f, FunctionCallResultFrame)}
    assert results == {"call_a": {"ok": "get_weather"}, "call_b": {"ok": "get_time"}}
    assert not [f for f in up if isinstance(f, ErrorFrame)]


async def test_comments_role_chunk_and_usage_metrics() -> None:
    fake = await serve()
    fake.script = [b": OPENROUTER PROCESSING\n\n", b": keep-alive\n\n", sse(chunk({"role": "assistant"})),
                   sse(chunk({"content": "Hi"})), b": keep-alive\n\n", sse(chunk({"content": " there"}, "stop")),
                   sse(USAGE), b"data: [DONE]\n\n"]
    try:
        down, up = await run(OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, model="gpt-x"),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    kinds = [type(f) for f in down if isinstance(f, (LLMFullResponseStartFrame, LLMTextFrame,
                                                       LLMFullResponseEndFrame))]
    assert kinds == [LLMFullResponseStartFrame, LLMTextFrame, LLMTextFrame, LLMFullResponseEndFrame]
    assert text(down) == "Hi there"
    usage = [d for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]
    assert len(usage) == 1
    u = usage[0].value
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cache_read_input_tokens) == (5, 5, 10, 2)
    assert usage[0].model == "gpt-x"
    assert not [f for f in up if isinstance(f, ErrorFrame)]


@pytest.mark.parametrize(("error", "status", "kind"), [
    ({"message": "The server had an error", "type": "server_error", "param": None, "code": None}, 500,
     ServiceStatusError),
    ({"code": 429, "message": "Rate limited upstream", "metadata": {}}, 429, ServiceRateLimitError),  # OpenRouter
    ({"code": "400", "message": "bad"}, 400, ServiceStatusError),
])
async def test_error_object_after_200_is_reported_and_not_replayed(error: dict[str, Any], status: int,
                                                                   kind: type[Exception]) -> None:
    fake = await serve()
    fake.script = [sse(chunk({"content": "Par"})), sse({"error": error})]
    try:
        down, up = await run(OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, kind)
    assert errors[0].exception.status_code == status  # type: ignore[attr-defined]
    assert text(down) == "Par" and fake.requests == 1  # output was pushed: never replayed
    assert any(isinstance(f, LLMFullResponseEndFrame) for f in down)


async def test_error_object_before_output_is_retried_when_retryable() -> None:
    fake = await serve()
    fake.script = [sse({"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}})]
    try:
        llm = OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, retry=Backoff(initial=0.01,
                                                                                        max_attempts=2))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert fake.requests == 2
    assert [type(f.exception) for f in up if isinstance(f, ErrorFrame)] == [ServiceStatusError]


async def test_end_without_done_after_finish_reason_is_complete_without_it_is_an_error() -> None:
    fake = await serve()
    fake.script = [sse(chunk({"content": "ok"}, "stop"))]
    try:
        down, up = await run(OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key),
                             LLMContext([{"role": "user", "content": "hi"}]))
        assert text(down) == "ok" and not [f for f in up if isinstance(f, ErrorFrame)]
        fake.script = [sse(chunk({"content": "cut"}))]
        down, up = await run(OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "cut"
    assert len([f for f in up if isinstance(f, ErrorFrame)]) == 1


async def test_retry_after_is_honoured() -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, failures=1, status=429)
    fake.retry_after = "0.3"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        down, up = await run(OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert loop.time() - t0 >= 0.3  # the backoff alone would wait ~20 ms
    assert fake.requests == 2 and text(down) == fake.expected_text
    assert not [f for f in up if isinstance(f, ErrorFrame)]


async def test_a_context_the_adapter_cannot_convert_is_an_error_frame_and_nothing_is_sent() -> None:
    fake = await serve()
    try:
        llm = OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}, {"content": "no role"}]))
    finally:
        await fake.close()
    assert fake.bodies == []
    assert [type(f) for f in down if not isinstance(f, MetricsFrame)][:2] == [
        LLMFullResponseStartFrame, LLMFullResponseEndFrame]
    (err,) = [f for f in up if isinstance(f, ErrorFrame)]
    assert "LLMContextConversionError" in err.error and "message 1" in err.error and not err.fatal


def test_body_is_json_serialisable_with_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    body = OpenAILLMService().build_request(LLMContext([{"role": "user", "content": "hi"}]))
    assert json.loads(json.dumps(body)) == {"model": "gpt-4.1", "stream": True,
                                            "stream_options": {"include_usage": True},
                                            "messages": [{"role": "user", "content": "hi"}]}
    body = OpenAILLMService(settings=OpenAILLMSettings(include_usage=False)).build_request(LLMContext())
    assert "stream_options" not in body and body["stream"] is True


def test_by_default_vendor_messages_are_unwrapped_or_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    context = LLMContext([{"role": "user", "content": "a"},
                          LLMSpecificMessage("openai", {"role": "user", "content": [{"type": "text", "text": "b"}]}),
                          LLMSpecificMessage("anthropic", {"role": "user", "content": "c"})], tool_choice="none")
    body = OpenAILLMService(settings=OpenAILLMSettings(system_instruction="S")).build_request(context)
    assert body["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                                {"role": "user", "content": [{"type": "text", "text": "b"}]}]
    assert body["tool_choice"] == "none" and "tools" not in body


def test_the_openai_adapter_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    llm = OpenAILLMService()
    assert type(llm.adapter) is OpenAILLMAdapter
    # Custom OpenAI tools of the context are sent, after the standard ones and before the
    # registered direct functions (the adapter's job: a plain request builder dropped them).
    weather = FunctionSchema("get_weather", "Weather", {"city": {"type": "string"}}, ["city"])
    async def lookup(params: FunctionCallParams) -> None:
        """Look up."""

    llm.register_direct_function(lookup)
    tools = ToolsSchema([weather], custom_tools={AdapterType.OPENAI: [{"type": "custom", "custom": {"name": "sql"}}],
                                                 AdapterType.GEMINI: [{"googleSearch": {}}]})
    body = llm.build_request(LLMContext([{"role": "user", "content": "hi"}], tools=tools))
    assert body["tools"] == [weather.to_openai(), {"type": "custom", "custom": {"name": "sql"}},
                             {"type": "function", "function": {"name": "lookup", "description": "Look up.",
                              "parameters": {"type": "object", "properties": {}, "required": []}}}]
    # A malformed message is refused before anything is sent, naming which.
    with pytest.raises(LLMContextConversionError, match="message 1"):
        llm.build_request(LLMContext([{"role": "user", "content": "hi"}, {"content": "no role"}]))
    # An adapter given overrides the default.
    custom = OpenAILLMAdapter(convert_developer_to_user=True)
    assert OpenAILLMService(adapter=custom).adapter is custom


def test_openai_shaped_tool_dicts_in_a_plain_context_are_sent_as_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    # pipecat users often put OpenAI `tools[]` entries straight into the context; they reach the
    # wire as the same functions (and other adapters can read them as standard schemas).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    entry = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    body = OpenAILLMService().build_request(LLMContext([{"role": "user", "content": "hi"}], tools=[entry]))
    assert body["tools"] == [entry]
    from flowcat.services.adapters import AnthropicLLMAdapter, normalize_tools

    schema = normalize_tools([entry])
    assert schema is not None and [t.name for t in schema.standard_tools] == ["get_weather"]
    assert AnthropicLLMAdapter().to_provider_tools_format(schema)[0]["input_schema"]["required"] == ["city"]
