"""AnthropicLLMService: the conformance suite against a local Messages fake, and the wire.

The wire tests assert the request exactly (path, headers, JSON body: model, max_tokens,
stream, system, messages with tool_use/tool_result blocks, tools, tool_choice, prompt
caching) and how each documented event becomes frames: text deltas, tool input pieces
joined per block, usage with cache tokens, ping/unknown/thinking events skipped, an
``error`` event after HTTP 200, a body without ``message_stop``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from _fake_anthropic import FakeAnthropic, event, message_end, message_start, reply, text_block, tool_block
from _helpers import conformance_params
from flowcat.errors import (
    ConfigError,
    ServiceAuthError,
    ServiceConnectionError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from flowcat.frames import (
    ErrorFrame,
    Frame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    LLMUsageMetricsData,
    MetricsFrame,
)
from flowcat.runtime import FrameProcessor, PipelineParams
from flowcat.services import Backoff, FunctionCallParams, close_http_sessions
from flowcat.services.adapters import AnthropicLLMAdapter, FunctionSchema, ToolsSchema
from flowcat.services.llm import AnthropicLLMService, AnthropicLLMSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    assert isinstance(fake, FakeAnthropic)
    return AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key, request_timeout_secs=0.5,
                               chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"llm:anthropic": ConformanceTarget("llm", FakeAnthropic, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ----------------------------------------------------------------------------- helpers


async def run(llm: AnthropicLLMService, context: LLMContext, settle: float = 0.0) -> tuple[list[Frame], list[Frame]]:
    frames: list[Frame] = [LLMContextFrame(context)]
    if settle:
        frames.append(SleepFrame(settle))  # let tool calls finish before the EndFrame
    try:
        return await run_test(llm, frames_to_send=frames,
                              params=PipelineParams(enable_metrics=True, enable_usage_metrics=True), timeout=10)
    finally:
        await close_http_sessions()


async def serve() -> FakeAnthropic:
    fake = FakeAnthropic()
    await fake.start()
    return fake


def text(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def errors(up: list[Frame]) -> list[ErrorFrame]:
    return [f for f in up if isinstance(f, ErrorFrame)]


WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])

# A context with a system prompt, user/assistant turns, a tool call and its result.
CONVERSATION = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "Hi."},
    {"role": "assistant", "content": "Hello! Ask me about the weather."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [{"id": "toolu_01", "type": "function",
                                          "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "toolu_01", "content": '{"sky": "sunny", "temp": 21}'},
]

EXPECTED_MESSAGES = [
    {"role": "user", "content": "Hi."},
    {"role": "assistant", "content": "Hello! Ask me about the weather."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                                       "input": {"city": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                  "content": '{"sky": "sunny", "temp": 21}'}]},
]

EXPECTED_TOOLS = [{"name": "get_weather", "description": "Weather in a city.",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}]


# ----------------------------------------------------------------------------- request


async def test_request_on_the_wire() -> None:
    fake = await serve()
    try:
        llm = AnthropicLLMService(
            base_url=fake.base_url + "/", api_key=fake.api_key, beta=["prompt-caching-2024-07-31", "x-2"],
            settings=AnthropicLLMSettings(model="claude-test", max_tokens=256, temperature=0.5, top_k=5,
                                          extra={"metadata": {"user_id": "u1"}}),
            headers={"X-Trace": "t1"},
        )
        await run(llm, LLMContext(CONVERSATION, tools=ToolsSchema([WEATHER]), tool_choice="auto"))
    finally:
        await fake.close()
    assert fake.bodies == [{
        "model": "claude-test", "max_tokens": 256, "stream": True,
        "system": "You are a weather bot.",
        "messages": EXPECTED_MESSAGES,
        "tools": EXPECTED_TOOLS,
        "tool_choice": {"type": "auto"},
        "temperature": 0.5, "top_k": 5, "metadata": {"user_id": "u1"},
    }]
    h = fake.headers[0]
    assert h["x-api-key"] == fake.api_key and "Authorization" not in h
    assert h["anthropic-version"] == "2023-06-01"
    assert h["anthropic-beta"] == "prompt-caching-2024-07-31,x-2"
    assert h["Content-Type"] == "application/json" and h["X-Trace"] == "t1"


async def test_prompt_caching_marks_the_system_prompt_and_the_last_message() -> None:
    fake = await serve()
    try:
        llm = AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key,
                                  settings=AnthropicLLMSettings(model="m", enable_prompt_caching=True))
        context = LLMContext(CONVERSATION + [{"role": "user", "content": "And tomorrow?"}])
        await run(llm, context)
    finally:
        await fake.close()
    body = fake.bodies[0]
    assert body["system"] == [{"type": "text", "text": "You are a weather bot.",
                               "cache_control": {"type": "ephemeral"}}]
    # The tool result and the new question are one user turn; its last block is the breakpoint.
    assert body["messages"][:-1] == EXPECTED_MESSAGES[:-1]
    assert body["messages"][-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": '{"sky": "sunny", "temp": 21}'},
        {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}}]}
    assert "cache_control" not in json.dumps(body["messages"][:-1])
    assert context.messages[-1] == {"role": "user", "content": "And tomorrow?"}  # the context is untouched


async def test_registered_direct_functions_are_added_to_the_tools() -> None:
    async def get_time(params: FunctionCallParams, zone: str) -> str:
        """Current time.

        Args:
            zone: The time zone.
        """
        return "noon"

    fake = await serve()
    try:
        llm = AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key,
                                  settings=AnthropicLLMSettings(system_instruction="Be terse."))
        llm.register_direct_function(get_time)
        await run(llm, LLMContext([{"role": "user", "content": "time?"}], tools=ToolsSchema([WEATHER])))
    finally:
        await fake.close()
    body = fake.bodies[0]
    assert body["system"] == "Be terse." and body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 4096
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][1]["input_schema"]["required"] == ["zone"]


def test_key_from_the_environment_and_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicLLMService()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-0123456789")
    llm = AnthropicLLMService()
    assert llm._api_key is not None and llm._api_key.reveal() == "sk-ant-env-0123456789"
    assert llm.url == "https://api.anthropic.com/v1/messages"
    assert type(llm.adapter) is AnthropicLLMAdapter
    with pytest.raises(ConfigError, match="base_url"):
        AnthropicLLMService(base_url="api.anthropic.com")


# ----------------------------------------------------------------------------- stream shapes


async def test_tool_use_pieces_are_joined_per_block_after_text() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, params.tool_call_id, dict(params.arguments)))
        await params.result_callback({"ok": params.function_name})

    fake = await serve()
    fake.script = [
        message_start(),
        text_block(0, ["Let me", " check."]),
        tool_block(1, "toolu_a", "get_weather", ['{"ci', 'ty": "Par', 'ís"}']),
        event("ping", {}),
        tool_block(2, "toolu_b", "get_time", []),  # no input pieces at all: {}
        message_end("tool_use"),
    ]
    try:
        llm = AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key)
        llm.register_function(None, handler)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "two calls"}]), settle=0.3)
    finally:
        await fake.close()
    assert text(down) == "Let me check."
    started = [f for f in down if isinstance(f, FunctionCallsStartedFrame)]
    assert [(c.function_name, c.tool_call_id, c.arguments) for c in started[0].function_calls] == [
        ("get_weather", "toolu_a", {"city": "París"}), ("get_time", "toolu_b", {})]
    assert sorted(calls) == [("get_time", "toolu_b", {}), ("get_weather", "toolu_a", {"city": "París"})]
    results = {f.tool_call_id: f.result for f in down if isinstance(f, FunctionCallResultFrame)}
    assert results == {"toolu_a": {"ok": "get_weather"}, "toolu_b": {"ok": "get_time"}}
    assert not errors(up)


async def test_usage_with_cache_tokens_and_skipped_events() -> None:
    fake = await serve()
    fake.script = [
        event("ping", {}),
        message_start(input_tokens=20, cache_creation=100, cache_read=1500),
        event("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
        event("content_block_stop", {"index": 0}),
        event("content_block_start", {"index": 1, "content_block": {"type": "redacted_thinking", "data": "x"}}),
        event("content_block_stop", {"index": 1}),
        event("some_future_event", {"whatever": 1}),
        text_block(2, ["Hi", " there"]),
        event("content_block_delta", {"index": 2, "delta": {"type": "future_delta", "x": 1}}),
        event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 3}}),
        event("message_delta", {"delta": {}, "usage": {"output_tokens": 9}}),  # cumulative: the last counts
        event("message_stop", {}),
    ]
    try:
        down, up = await run(AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key, model="claude-x"),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "Hi there" and not errors(up)
    usage = [d for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]
    assert len(usage) == 1 and usage[0].model == "claude-x"
    u = usage[0].value
    assert (u.prompt_tokens, u.completion_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens,
            u.total_tokens) == (20, 9, 100, 1500, 1629)


@pytest.mark.parametrize(("kind", "status", "cls", "retryable"), [
    ("overloaded_error", 529, ServiceStatusError, True),
    ("api_error", 500, ServiceStatusError, True),
    ("rate_limit_error", 429, ServiceRateLimitError, True),
    ("invalid_request_error", 400, ServiceStatusError, False),
    ("authentication_error", 401, ServiceAuthError, False),
])
async def test_error_event_before_output_maps_to_the_http_status(kind: str, status: int, cls: type[Exception],
                                                                 retryable: bool) -> None:
    fake = await serve()
    fake.script = [message_start(), event("ping", {}),
                   event("error", {"error": {"type": kind, "message": f"{kind} {fake.api_key}"}})]
    try:
        llm = AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key,
                                  retry=Backoff(initial=0.01, max_attempts=2))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert type(err.exception) is cls and err.exception.status_code == status  # type: ignore[attr-defined]
    assert fake.requests == (2 if retryable else 1)
    assert fake.api_key is not None and fake.api_key not in err.error


async def test_error_event_after_output_is_reported_and_not_replayed() -> None:
    fake = await serve()
    fake.set(Behaviour.STREAM_ERROR, failures=1)
    try:
        down, up = await run(AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceStatusError) and err.exception.status_code == 529
    assert text(down) == "Hello" and fake.requests == 1  # output was pushed: never replayed
    assert any(isinstance(f, LLMFullResponseEndFrame) for f in down)


@pytest.mark.parametrize(("status", "cls", "requests"), [
    (529, ServiceStatusError, 2), (429, ServiceRateLimitError, 2), (401, ServiceAuthError, 1),
    (400, ServiceStatusError, 1), (413, ServiceStatusError, 1),
])
async def test_http_error_bodies(status: int, cls: type[Exception], requests: int) -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, failures=-1, status=status)
    try:
        llm = AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key,
                                  retry=Backoff(initial=0.01, max_attempts=2))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert type(err.exception) is cls and err.exception.status_code == status  # type: ignore[attr-defined]
    assert fake.requests == requests
    assert ": key ***" in err.error and str(fake.api_key) not in err.error  # the vendor's message, key masked


async def test_a_body_that_ends_before_message_stop_is_an_error() -> None:
    fake = await serve()
    fake.script = [message_start(), text_block(0, ["cut"])]
    try:
        down, up = await run(AnthropicLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "cut"
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceConnectionError) and "message_stop" in err.error


def test_the_body_for_the_canned_reply_helper_round_trips() -> None:
    # The fake's helper builds the documented event order (used by the cascade test).
    payload = reply("It is sunny.", [("toolu_9", "get_weather", {"city": "Paris"})]).decode()
    names = [line[7:] for line in payload.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == 2 and names.count("content_block_stop") == 2
