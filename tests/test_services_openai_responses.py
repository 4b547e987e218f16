"""OpenAIResponsesLLMService: the conformance suite against a Responses API fake, and the wire.

The request (path, auth, body: model, stream, store, input items, instructions, flat tools,
tool_choice, parameters), text streaming, usage, a tool call round trip (a ``function_call``
item, then the result sent back as ``function_call_output`` on the next request), in-stream
errors (``error``, ``response.failed``) as the right flowcat errors, a malformed event, and the
context conversion of :class:`~flowcat.services.adapters.OpenAIResponsesLLMAdapter`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from _fake_openai_responses import USAGE, FakeOpenAIResponses, event
from _helpers import conformance_params
from flowcat.agent import LLMContextAggregatorPair
from flowcat.errors import (
    LLMContextConversionError,
    ServiceConnectionError,
    ServiceError,
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
from flowcat.runtime import FrameProcessor, Pipeline, PipelineParams
from flowcat.services import Backoff, FunctionCallParams, close_http_sessions
from flowcat.services.adapters import (
    FunctionSchema,
    LLMSpecificMessage,
    OpenAIResponsesLLMAdapter,
    ToolsSchema,
)
from flowcat.services.llm import OpenAIResponsesLLMService, OpenAIResponsesLLMSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    assert isinstance(fake, FakeOpenAIResponses)
    return OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key, request_timeout_secs=0.5,
                                     chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"llm:openai_responses": ConformanceTarget("llm", FakeOpenAIResponses, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ----------------------------------------------------------------------------- helpers


async def run(proc: FrameProcessor, context: LLMContext, settle: float = 0.0) -> tuple[list[Frame], list[Frame]]:
    frames: list[Frame] = [LLMContextFrame(context)]
    if settle:
        frames.append(SleepFrame(settle))
    try:
        return await run_test(proc, frames_to_send=frames,
                              params=PipelineParams(enable_metrics=True, enable_usage_metrics=True), timeout=10)
    finally:
        await close_http_sessions()


async def serve(**kw: Any) -> FakeOpenAIResponses:
    fake = FakeOpenAIResponses(**kw)
    await fake.start()
    return fake


def text(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def errors(frames: list[Frame]) -> list[ErrorFrame]:
    return [f for f in frames if isinstance(f, ErrorFrame)]


WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])


# ----------------------------------------------------------------------------- request


async def test_request_on_the_wire() -> None:
    fake = await serve()
    try:
        llm = OpenAIResponsesLLMService(
            base_url=fake.base_url + "/", api_key=fake.api_key, organization="org-1", headers={"X-Trace": "t"},
            settings=OpenAIResponsesLLMSettings(model="gpt-test", system_instruction="Be brief.", temperature=0.5,
                                                max_output_tokens=64, reasoning_effort="low",
                                                extra={"metadata": {"call": "1"}}))
        context = LLMContext([{"role": "user", "content": "Paris?"}], tools=ToolsSchema([WEATHER]),
                             tool_choice={"type": "function", "function": {"name": "get_weather"}})
        await run(llm, context)
    finally:
        await fake.close()
    assert fake.bodies == [{
        "model": "gpt-test", "stream": True, "store": False,
        "input": [{"role": "user", "content": "Paris?"}], "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "temperature": 0.5, "max_output_tokens": 64, "reasoning": {"effort": "low"}, "metadata": {"call": "1"},
    }]
    h = fake.headers[0]
    assert h["Authorization"] == f"Bearer {fake.api_key}" and h["OpenAI-Organization"] == "org-1"
    assert h["X-Trace"] == "t" and h["Content-Type"] == "application/json"


async def test_text_streaming_and_usage() -> None:
    fake = await serve(replies=[""])
    try:
        down, up = await run(OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key, model="gpt-x"),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert [f.text for f in down if isinstance(f, LLMTextFrame)] == [
        "Hello", " from", " the Responses", " fake — café", " ☕."]
    usage = [d for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]
    assert len(usage) == 1 and usage[0].model == "gpt-x"
    u = usage[0].value
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cache_read_input_tokens, u.reasoning_tokens) == (
        USAGE["input_tokens"], USAGE["output_tokens"], USAGE["total_tokens"], 3, 1)
    assert not errors(up)


async def test_tool_call_round_trip_sends_function_call_output_next() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, params.tool_call_id, dict(params.arguments)))
        await params.result_callback({"sky": "clear"})

    fake = await serve(replies=[[("call_abc", "get_weather", '{"city": "París"}')], "Sunny."])
    try:
        llm = OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key)
        llm.register_function("get_weather", handler)
        context = LLMContext([{"role": "user", "content": "Weather in Paris?"}], tools=ToolsSchema([WEATHER]))
        pair = LLMContextAggregatorPair(context)
        down, up = await run(Pipeline([llm, pair.assistant()]), context, settle=1.0)
    finally:
        await fake.close()
    assert calls == [("get_weather", "call_abc", {"city": "París"})]
    assert len(fake.bodies) == 2, fake.bodies
    assert fake.bodies[1]["input"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city": "París"}'},
        {"type": "function_call_output", "call_id": "call_abc", "output": json.dumps({"sky": "clear"})},
    ]
    assert fake.bodies[1]["tools"] == fake.bodies[0]["tools"]
    assert not errors(up)


async def test_parallel_function_calls_and_arguments_only_in_done_events() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def handler(params: FunctionCallParams) -> None:
        seen.append((params.tool_call_id, dict(params.arguments)))
        await params.result_callback("ok")

    fake = await serve()
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_2", "name": "get_time", "arguments": ""}
    fake.script = [
        fake.answer([("call_1", "get_weather", '{"city": "Oslo"}')]).rsplit(b"event: response.completed", 1)[0],
        # A second call whose arguments arrive only in the .done events (no deltas).
        event({"type": "response.output_item.added", "output_index": 1, "item": item}),
        event({"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 1,
               "arguments": '{"zone": "UTC"}'}),
        event({"type": "response.output_item.done", "output_index": 1,
               "item": {**item, "arguments": '{"zone": "UTC"}'}}),
        event({"type": "response.completed", "response": {"usage": USAGE}}),
    ]
    try:
        llm = OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key)
        llm.register_function(None, handler)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "two"}]), settle=0.3)
    finally:
        await fake.close()
    started = [f for f in down if isinstance(f, FunctionCallsStartedFrame)]
    assert [(c.function_name, c.tool_call_id, c.arguments) for c in started[0].function_calls] == [
        ("get_weather", "call_1", {"city": "Oslo"}), ("get_time", "call_2", {"zone": "UTC"})]
    assert sorted(seen) == [("call_1", {"city": "Oslo"}), ("call_2", {"zone": "UTC"})]
    assert len([f for f in down if isinstance(f, FunctionCallResultFrame)]) == 2 and not errors(up)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("error_event", "kind", "status"), [
    ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None},
     ServiceRateLimitError, 429),
    ({"type": "error", "code": "invalid_prompt", "message": "no", "param": None}, ServiceStatusError, 400),
    ({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error",
                                                                             "message": "The model failed"}}},
     ServiceStatusError, 500),
])
async def test_in_stream_errors_are_the_right_flowcat_errors(error_event: dict[str, Any],
                                                             kind: type[ServiceError], status: int) -> None:
    fake = await serve()
    fake.error_event = error_event
    fake.set(Behaviour.STREAM_ERROR, failures=-1)
    try:
        down, up = await run(OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert type(err.exception) is kind and err.exception.status_code == status  # type: ignore[attr-defined]
    assert not err.fatal and fake.api_key not in err.error
    assert text(down) == "Hello" and fake.requests == 1  # output was pushed: never replayed
    assert any(isinstance(f, LLMFullResponseEndFrame) for f in down)


async def test_an_error_before_output_is_retried_when_retryable() -> None:
    fake = await serve()
    fake.script = [event({"type": "error", "code": "server_error", "message": "overloaded", "param": None})]
    try:
        llm = OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key,
                                        retry=Backoff(initial=0.01, max_attempts=2))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert fake.requests == 2 and [type(f.exception) for f in errors(up)] == [ServiceStatusError]


async def test_malformed_event_and_a_stream_cut_before_completed_are_errors() -> None:
    fake = await serve()
    fake.set(Behaviour.MALFORMED, failures=1)
    try:
        llm = OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
        assert text(down) == "Hello" and len(errors(up)) == 1 and "ServiceProtocolError" in errors(up)[0].error
        fake.script = [fake.answer("cut").rsplit(b"event: response.completed", 1)[0]]
        down, up = await run(OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "cut"
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceConnectionError)


async def test_incomplete_response_ends_normally() -> None:
    fake = await serve()
    body = fake.answer("Partial").rsplit(b"event: response.completed", 1)[0]
    fake.script = [body, event({"type": "response.incomplete", "response": {
        "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": USAGE}})]
    try:
        down, up = await run(OpenAIResponsesLLMService(base_url=fake.base_url, api_key=fake.api_key),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "Partial" and not errors(up)


# ----------------------------------------------------------------------------- the adapter


def test_adapter_converts_messages_parts_tool_calls_and_results() -> None:
    adapter = OpenAIResponsesLLMAdapter()
    context = LLMContext([
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA",
                                                                         "detail": "low"}},
                                     {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": {"ok": True}},
        {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
        LLMSpecificMessage("openai_responses", {"type": "item_reference", "id": "msg_9"}),
        LLMSpecificMessage("openai", {"role": "user", "content": "chat-only"}),
    ], tool_choice="required")
    params = adapter.get_llm_invocation_params(context)
    assert params == {"input": [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AA",
                                      "detail": "low"}]},
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
        {"type": "item_reference", "id": "msg_9"},
    ], "tool_choice": "required"}
    with pytest.raises(LLMContextConversionError, match="message 0"):
        adapter.get_llm_invocation_params(LLMContext([{"role": "tool", "content": "x"}]))
    with pytest.raises(LLMContextConversionError, match="message 1"):
        adapter.get_llm_invocation_params(LLMContext([{"role": "user", "content": "a"}, {"role": "function"}]))


async def test_direct_functions_are_sent_flat() -> None:
    async def lookup(params: FunctionCallParams, term: str) -> str:
        """Look a term up.

        Args:
            term: The term.
        """
        return term

    llm = OpenAIResponsesLLMService(api_key="sk-0123456789")
    llm.register_direct_function(lookup)
    body = llm.build_request(LLMContext([{"role": "user", "content": "hi"}], tools=ToolsSchema([WEATHER])))
    assert [t["name"] for t in body["tools"]] == ["get_weather", "lookup"]
    assert body["tools"][1] == {"type": "function", "name": "lookup", "description": "Look a term up.",
                                "parameters": {"type": "object", "properties": {
                                    "term": {"type": "string", "description": "The term."}}, "required": ["term"]}}
