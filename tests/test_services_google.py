"""GoogleLLMService (Gemini): the conformance suite against a local streamGenerateContent fake, and the wire.

The wire tests assert the request exactly (path with the model, ``alt=sse``, headers,
JSON body: contents with functionCall/functionResponse parts, systemInstruction, tools,
toolConfig, generationConfig) and how each documented chunk becomes frames: text parts,
whole function calls (ids made up when Gemini sends none, and not sent back), cumulative
usage, thought parts skipped, error objects after HTTP 200, a body without ``finishReason``.
"""

from __future__ import annotations

from typing import Any

import pytest

from _fake_gemini import USAGE, FakeGemini, chunk, sse
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
from flowcat.services.adapters import FunctionSchema, GeminiLLMAdapter, ToolsSchema
from flowcat.services.llm import GeminiLLMService, GoogleLLMService, GoogleLLMSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    assert isinstance(fake, FakeGemini)
    return GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key, request_timeout_secs=0.5,
                            chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"llm:google": ConformanceTarget("llm", FakeGemini, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ----------------------------------------------------------------------------- helpers


async def run(llm: GoogleLLMService, context: LLMContext, settle: float = 0.0) -> tuple[list[Frame], list[Frame]]:
    frames: list[Frame] = [LLMContextFrame(context)]
    if settle:
        frames.append(SleepFrame(settle))  # let tool calls finish before the EndFrame
    try:
        return await run_test(llm, frames_to_send=frames,
                              params=PipelineParams(enable_metrics=True, enable_usage_metrics=True), timeout=10)
    finally:
        await close_http_sessions()


async def serve() -> FakeGemini:
    fake = FakeGemini()
    await fake.start()
    return fake


def text(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def errors(up: list[Frame]) -> list[ErrorFrame]:
    return [f for f in up if isinstance(f, ErrorFrame)]


WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])

CONVERSATION = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "Hi."},
    {"role": "assistant", "content": "Hello! Ask me about the weather."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [{"id": "call_01", "type": "function",
                                          "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_01", "content": '{"sky": "sunny", "temp": 21}'},
]


# ----------------------------------------------------------------------------- request


async def test_request_on_the_wire() -> None:
    fake = await serve()
    try:
        llm = GoogleLLMService(
            base_url=fake.base_url + "/", api_key=fake.api_key,
            settings=GoogleLLMSettings(model="models/gemini-test", temperature=0.5, max_output_tokens=64,
                                       thinking_config={"thinkingBudget": 0},
                                       safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT",
                                                         "threshold": "BLOCK_NONE"}],
                                       extra={"cachedContent": "cachedContents/c1"}),
            headers={"X-Trace": "t1"},
        )
        await run(llm, LLMContext(CONVERSATION, tools=ToolsSchema([WEATHER]), tool_choice="auto"))
    finally:
        await fake.close()
    assert fake.models == ["gemini-test"] and fake.queries == [{"alt": "sse"}]
    assert fake.bodies == [{
        "systemInstruction": {"parts": [{"text": "You are a weather bot."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi."}]},
            {"role": "model", "parts": [{"text": "Hello! Ask me about the weather."}]},
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"},
                                                          "id": "call_01"}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "id": "call_01",
                                                             "response": {"sky": "sunny", "temp": 21}}}]},
        ],
        "tools": [{"functionDeclarations": [{
            "name": "get_weather", "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 64, "thinkingConfig": {"thinkingBudget": 0}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/c1",
    }]
    h = fake.headers[0]
    assert h["x-goog-api-key"] == fake.api_key and "Authorization" not in h
    assert h["Content-Type"] == "application/json" and h["X-Trace"] == "t1"


async def test_direct_functions_join_the_declarations_and_parallel_results_one_turn() -> None:
    async def get_time(params: FunctionCallParams, zone: str) -> str:
        """Current time.

        Args:
            zone: The time zone.
        """
        return "noon"

    fake = await serve()
    try:
        llm = GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key,
                               settings=GoogleLLMSettings(system_instruction="Be terse."))
        llm.register_direct_function(get_time)
        context = LLMContext([
            {"role": "user", "content": "Weather and time?"},
            {"role": "assistant", "tool_calls": [
                {"id": "fc_local_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "fc_local_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "fc_local_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "fc_local_2", "content": "noon"},
        ], tools=ToolsSchema([WEATHER]))
        await run(llm, context)
    finally:
        await fake.close()
    body = fake.bodies[0]
    assert fake.models == ["gemini-2.5-flash"] and "generationConfig" not in body
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    decls = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == ["get_weather", "get_time"] and len(body["tools"]) == 1
    # Locally made-up ids are not sent back; the two responses go in one user turn.
    assert body["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}},
                                    {"functionCall": {"name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"value": "sunny"}}},
                                   {"functionResponse": {"name": "get_time", "response": {"value": "noon"}}}]},
    ]


def test_key_from_either_environment_variable_and_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GOOGLE_API_KEY.*GEMINI_API_KEY"):
        GoogleLLMService()
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-gemini-0123456789")
    llm = GoogleLLMService()
    assert llm._api_key is not None and llm._api_key.reveal() == "AIza-gemini-0123456789"
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-0123456789")
    llm = GeminiLLMService(model="gemini-2.5-pro")
    assert llm._api_key is not None and llm._api_key.reveal() == "AIza-google-0123456789"  # GOOGLE_ wins
    assert llm.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
                       ":streamGenerateContent?alt=sse")
    assert type(llm.adapter) is GeminiLLMAdapter and GeminiLLMService is GoogleLLMService
    with pytest.raises(ConfigError, match="base_url"):
        GoogleLLMService(base_url="generativelanguage.googleapis.com")


# ----------------------------------------------------------------------------- stream shapes


async def test_whole_function_calls_get_ids_when_gemini_sends_none() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, params.tool_call_id, dict(params.arguments)))
        await params.result_callback({"ok": params.function_name})

    fake = await serve()
    fake.script = [
        chunk([{"text": "Checking"}]),
        chunk([{"text": " both.", "thought": False},
               {"functionCall": {"name": "get_weather", "args": {"city": "París"}}}]),
        chunk([{"functionCall": {"name": "get_time", "args": {"zone": "UTC"}, "id": "gem-id-7"}},
               {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}], "STOP", USAGE),
    ]
    try:
        llm = GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key)
        llm.register_function(None, handler)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "calls"}]), settle=0.3)
    finally:
        await fake.close()
    assert text(down) == "Checking both." and not errors(up)
    (started,) = [f for f in down if isinstance(f, FunctionCallsStartedFrame)]
    got = [(c.function_name, c.tool_call_id, c.arguments) for c in started.function_calls]
    assert [(n, a) for n, _, a in got] == [("get_weather", {"city": "París"}), ("get_time", {"zone": "UTC"}),
                                           ("get_weather", {"city": "Rome"})]
    ids = [i for _, i, _ in got]
    assert ids[1] == "gem-id-7"
    assert ids[0].startswith("fc_local_") and ids[2].startswith("fc_local_") and ids[0] != ids[2]
    assert sorted(calls) == sorted(got)
    results = {f.tool_call_id: f.result for f in down if isinstance(f, FunctionCallResultFrame)}
    assert results == {ids[0]: {"ok": "get_weather"}, "gem-id-7": {"ok": "get_time"}, ids[2]: {"ok": "get_weather"}}


async def test_usage_is_the_last_cumulative_one_and_thoughts_are_skipped() -> None:
    fake = await serve()
    fake.script = [
        chunk([{"text": "Let me think about it.", "thought": True}],
              usage={"promptTokenCount": 9, "totalTokenCount": 9}),
        chunk([{"text": "Hi"}], usage={"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10}),
        sse({"candidates": [{"content": {"parts": [{"text": " there"}], "role": "model"}, "finishReason": "STOP",
                             "index": 0}],
             "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 20,
                               "cachedContentTokenCount": 4, "thoughtsTokenCount": 9}}),
    ]
    try:
        down, up = await run(GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key, model="gemini-x"),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "Hi there" and not errors(up)
    usage = [d for f in down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]
    assert len(usage) == 1 and usage[0].model == "gemini-x"
    u = usage[0].value
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cache_read_input_tokens,
            u.reasoning_tokens) == (9, 2, 20, 4, 9)


@pytest.mark.parametrize(("error", "status", "cls", "retryable"), [
    ({"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}, 503, ServiceStatusError, True),
    ({"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}, 429, ServiceRateLimitError, True),
    ({"message": "no code", "status": "RESOURCE_EXHAUSTED"}, 429, ServiceRateLimitError, True),
    ({"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}, 400, ServiceStatusError, False),
    ({"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}, 403, ServiceAuthError, False),
])
async def test_error_object_in_the_stream_before_output(error: dict[str, Any], status: int, cls: type[Exception],
                                                        retryable: bool) -> None:
    fake = await serve()
    fake.script = [sse({"error": error})]
    try:
        llm = GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key,
                               retry=Backoff(initial=0.01, max_attempts=2))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert type(err.exception) is cls and err.exception.status_code == status  # type: ignore[attr-defined]
    assert fake.requests == (2 if retryable else 1)


async def test_error_object_after_output_is_reported_and_not_replayed() -> None:
    fake = await serve()
    fake.set(Behaviour.STREAM_ERROR, failures=1)
    try:
        down, up = await run(GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceStatusError) and err.exception.status_code == 503
    assert text(down) == "Hello" and fake.requests == 1
    assert any(isinstance(f, LLMFullResponseEndFrame) for f in down)


@pytest.mark.parametrize(("status", "cls", "requests"), [
    (503, ServiceStatusError, 2), (429, ServiceRateLimitError, 2), (403, ServiceAuthError, 1),
    (400, ServiceStatusError, 1), (404, ServiceStatusError, 1),
])
async def test_http_error_bodies(status: int, cls: type[Exception], requests: int) -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, failures=-1, status=status)
    try:
        llm = GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key,
                               retry=Backoff(initial=0.01, max_attempts=2))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert type(err.exception) is cls and err.exception.status_code == status  # type: ignore[attr-defined]
    assert fake.requests == requests
    assert "quota: ***" in err.error and str(fake.api_key) not in err.error  # the vendor's message, key masked


async def test_a_bad_key_is_a_400_from_gemini_and_not_retried() -> None:
    fake = await serve()
    try:
        llm = GoogleLLMService(base_url=fake.base_url, api_key="AIza-wrong-key-0123456789", retry=FAST)
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert isinstance(err.exception, ServiceStatusError) and err.exception.status_code == 400
    assert fake.auth_failures == 1 and fake.requests == 0


async def test_a_body_that_closes_before_finish_reason_is_an_error_a_blocked_prompt_is_not() -> None:
    fake = await serve()
    fake.script = [chunk([{"text": "cut"}])]
    try:
        down, up = await run(GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
        assert text(down) == "cut"
        (err,) = errors(up)
        assert isinstance(err.exception, ServiceConnectionError) and "finishReason" in err.error
        fake.script = [sse({"promptFeedback": {"blockReason": "SAFETY"},
                            "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})]
        down, up = await run(GoogleLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST),
                             LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == "" and not errors(up)
    assert any(isinstance(f, LLMFullResponseEndFrame) for f in down)
