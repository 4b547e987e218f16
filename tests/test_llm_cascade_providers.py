"""One cascaded conversation with a tool call, unchanged on every LLM provider's fake.

The same pipeline code (user aggregator → LLM service → text collector → assistant
aggregator, with a registered ``get_weather`` handler) runs two user turns: the first
asks for the weather (the model calls the tool, the handler answers, the model replies),
the second thanks the bot. Each provider's fake gives the same three answers in its own
wire format. Asserted: the final ``LLMContext`` is the same for every provider, the
spoken text is the same, and each fake received its provider-specific request shapes
(the tool call and its result in the vendor's format on the second request).

To add a provider, add a :class:`Provider` entry to ``PROVIDERS``: a fake factory (which
loads :data:`ANSWERS` in the vendor's format), a service factory and the request-shape
assertion.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import _fake_anthropic
import _fake_bedrock
import _fake_gemini
import _fake_openai
import _fake_openai_responses
from flowcat.agent import FunctionSchema, LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services import Backoff, FunctionCallParams, LLMService, close_http_sessions
from flowcat.services.llm import (
    AnthropicLLMService,
    AWSBedrockLLMService,
    GoogleLLMService,
    OpenAILLMService,
    OpenAIResponsesLLMService,
)
from flowcat.testing.conformance import FakeProvider
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies

pytestmark = pytest.mark.usefixtures("no_outside_connections")

SYSTEM = "You are a weather bot."
CALL_ID = "call_w1"
ARGS = {"city": "Paris"}
RESULT = {"sky": "sunny", "temp": 21}
# The model's three answers: a tool call, the reply after its result, the reply to the second turn.
ANSWERS: list[tuple[str, list[tuple[str, str, dict[str, Any]]]]] = [
    ("", [(CALL_ID, "get_weather", ARGS)]),
    ("It is sunny and 21 degrees in Paris.", []),
    ("You're welcome, enjoy Paris!", []),
]
WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])
FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=2)

EXPECTED_CONTEXT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [{"id": CALL_ID, "type": "function",
                                          "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": '{"sky": "sunny", "temp": 21}', "tool_call_id": CALL_ID},
    {"role": "assistant", "content": "It is sunny and 21 degrees in Paris."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You're welcome, enjoy Paris!"},
]


@dataclass(frozen=True)
class Provider:
    """How one provider runs the conversation: its fake, its service, what its fake must have received."""

    make_fake: Callable[[], FakeProvider]
    make_service: Callable[[Any], LLMService]
    check_requests: Callable[[Any], None]


# ----------------------------------------------------------------------------- OpenAI


def openai_fake() -> FakeProvider:
    fake = _fake_openai.FakeOpenAI()
    fake.scripts = [_fake_openai.reply(text, calls) for text, calls in ANSWERS]
    return fake


def openai_requests(fake: _fake_openai.FakeOpenAI) -> None:
    assert len(fake.bodies) == 3
    first, second, third = (b["messages"] for b in fake.bodies)
    assert first == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Weather in Paris?"}]
    assert second[2:] == [
        {"role": "assistant", "tool_calls": [{"id": CALL_ID, "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": '{"sky": "sunny", "temp": 21}', "tool_call_id": CALL_ID},
    ]
    assert third == EXPECTED_CONTEXT[:-1]
    assert all(b["tools"] == [WEATHER.to_openai()] for b in fake.bodies)
    assert all(h["Authorization"] == f"Bearer {fake.api_key}" for h in fake.headers)


# ----------------------------------------------------------------------------- Anthropic


def anthropic_fake() -> FakeProvider:
    fake = _fake_anthropic.FakeAnthropic()
    fake.scripts = [_fake_anthropic.reply(text, calls) for text, calls in ANSWERS]
    return fake


def anthropic_requests(fake: _fake_anthropic.FakeAnthropic) -> None:
    assert len(fake.bodies) == 3
    assert all(b["system"] == SYSTEM for b in fake.bodies)
    assert fake.bodies[0]["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    tool_turns = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": CALL_ID, "name": "get_weather", "input": ARGS}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": CALL_ID,
                                      "content": '{"sky": "sunny", "temp": 21}'}]},
    ]
    assert fake.bodies[1]["messages"][1:] == tool_turns
    # The second user turn follows the tool result's user turn after the assistant's reply.
    assert fake.bodies[2]["messages"][1:] == tool_turns + [
        {"role": "assistant", "content": "It is sunny and 21 degrees in Paris."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert all(b["tools"] == [{"name": "get_weather", "description": "Weather in a city.",
                               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                                "required": ["city"]}}] for b in fake.bodies)
    assert all(h["x-api-key"] == fake.api_key for h in fake.headers)


# ----------------------------------------------------------------------------- Gemini


def gemini_fake() -> FakeProvider:
    fake = _fake_gemini.FakeGemini()
    fake.scripts = [_fake_gemini.reply(text, [(name, args, call_id) for call_id, name, args in calls])
                    for text, calls in ANSWERS]
    return fake


def gemini_requests(fake: _fake_gemini.FakeGemini) -> None:
    assert len(fake.bodies) == 3
    assert all(b["systemInstruction"] == {"parts": [{"text": SYSTEM}]} for b in fake.bodies)
    assert fake.bodies[0]["contents"] == [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]
    tool_turns = [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": ARGS, "id": CALL_ID}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "id": CALL_ID, "response": RESULT}}]},
    ]
    assert fake.bodies[1]["contents"][1:] == tool_turns
    assert fake.bodies[2]["contents"][1:] == tool_turns + [
        {"role": "model", "parts": [{"text": "It is sunny and 21 degrees in Paris."}]},
        {"role": "user", "parts": [{"text": "Thanks!"}]},
    ]
    assert all(b["tools"][0]["functionDeclarations"][0]["name"] == "get_weather" for b in fake.bodies)
    assert fake.models == ["gemini-test"] * 3
    assert all(h["x-goog-api-key"] == fake.api_key for h in fake.headers)


# ----------------------------------------------------------------------------- OpenAI Responses


def responses_fake() -> FakeProvider:
    return _fake_openai_responses.FakeOpenAIResponses(replies=[
        [(call_id, name, json.dumps(args)) for call_id, name, args in calls] if calls else text
        for text, calls in ANSWERS])


def responses_requests(fake: _fake_openai_responses.FakeOpenAIResponses) -> None:
    assert len(fake.bodies) == 3
    first, second, third = (b["input"] for b in fake.bodies)
    assert first == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Weather in Paris?"}]
    tool_items = [
        {"type": "function_call", "call_id": CALL_ID, "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": CALL_ID, "output": '{"sky": "sunny", "temp": 21}'},
    ]
    assert second[2:] == tool_items
    assert third[2:] == tool_items + [{"role": "assistant", "content": "It is sunny and 21 degrees in Paris."},
                                      {"role": "user", "content": "Thanks!"}]
    assert all(b["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather in a city.",
                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                              "required": ["city"]}}] for b in fake.bodies)
    assert all(b["store"] is False and b["model"] == "gpt-test" for b in fake.bodies)
    assert all(h["Authorization"] == f"Bearer {fake.api_key}" for h in fake.headers)


# ----------------------------------------------------------------------------- AWS Bedrock


BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


def bedrock_fake() -> FakeProvider:
    return _fake_bedrock.FakeBedrock([
        _fake_bedrock.Reply(text, [_fake_bedrock.ToolUse(name, args, call_id) for call_id, name, args in calls],
                            input_chunk=4)
        for text, calls in ANSWERS])


def bedrock_service(fake: _fake_bedrock.FakeBedrock) -> LLMService:
    return AWSBedrockLLMService(base_url=fake.url, aws_access_key=_fake_bedrock.AKID, aws_secret_key=fake.api_key,
                                aws_region="us-east-1", model=BEDROCK_MODEL, retry=FAST)


def bedrock_requests(fake: _fake_bedrock.FakeBedrock) -> None:
    assert len(fake.bodies) == 3
    assert all(b["system"] == [{"text": SYSTEM}] for b in fake.bodies)
    assert fake.bodies[0]["messages"] == [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
    tool_turns = [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": CALL_ID, "name": "get_weather", "input": ARGS}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": CALL_ID, "content": [{"json": RESULT}]}}]},
    ]
    assert fake.bodies[1]["messages"][1:] == tool_turns
    assert fake.bodies[2]["messages"][1:] == tool_turns + [
        {"role": "assistant", "content": [{"text": "It is sunny and 21 degrees in Paris."}]},
        {"role": "user", "content": [{"text": "Thanks!"}]},
    ]
    assert all(b["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather in a city.",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}}}]} for b in fake.bodies)
    assert fake.models == [BEDROCK_MODEL] * 3
    assert fake.paths == ["/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"] * 3
    # Every request was SigV4-signed; the fake recomputed each signature (auth_failures == 0 is checked too).
    assert all(h["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={_fake_bedrock.AKID}/") for h in fake.headers)

PROVIDERS: dict[str, Provider] = {
    "openai": Provider(
        openai_fake,
        lambda f: OpenAILLMService(base_url=f.base_url, api_key=f.api_key, model="gpt-test", retry=FAST),
        openai_requests,
    ),
    "anthropic": Provider(
        anthropic_fake,
        lambda f: AnthropicLLMService(base_url=f.base_url, api_key=f.api_key, model="claude-test", retry=FAST),
        anthropic_requests,
    ),
    "google": Provider(
        gemini_fake,
        lambda f: GoogleLLMService(base_url=f.base_url, api_key=f.api_key, model="gemini-test", retry=FAST),
        gemini_requests,
    ),
    "openai_responses": Provider(
        responses_fake,
        lambda f: OpenAIResponsesLLMService(base_url=f.base_url, api_key=f.api_key, model="gpt-test", retry=FAST),
        responses_requests,
    ),
    "bedrock": Provider(bedrock_fake, bedrock_service, bedrock_requests),
}


# ----------------------------------------------------------------------------- the pipeline


class TextCollector(FrameProcessor):
    """Records each response's text (between the response start and end) and the errors going up."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[str] = []
        self._text: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            self._text.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            self.responses.append("".join(self._text))
            self._text = []
        await self.push_frame(frame, direction)


class ErrorWatch(FrameProcessor):
    """First in the pipeline: sees every ErrorFrame that goes up."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame):
            self.errors.append(frame.error)
        await self.push_frame(frame, direction)


async def until(cond: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def user_says(text: str) -> list[Frame]:
    return [VADUserStartedSpeakingFrame(), TranscriptionFrame(text=text, user_id="u", timestamp=""),
            VADUserStoppedSpeakingFrame()]


async def converse(llm: LLMService) -> tuple[LLMContext, list[str], list[str], list[tuple[str, dict[str, Any]]]]:
    """The pipeline code every provider runs, unchanged. Returns (context, responses, errors, tool calls)."""
    context = LLMContext([{"role": "system", "content": SYSTEM}], tools=[WEATHER])
    pair = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.3)])))
    calls: list[tuple[str, dict[str, Any]]] = []

    async def get_weather(params: FunctionCallParams) -> None:
        calls.append((params.tool_call_id, dict(params.arguments)))
        await params.result_callback(RESULT)

    llm.register_function("get_weather", get_weather)
    watch, collector = ErrorWatch(), TextCollector()
    task = PipelineTask(Pipeline([watch, pair.user(), llm, collector, pair.assistant()]),
                        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
    started = asyncio.Event()
    task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
    runner = asyncio.get_running_loop().create_task(task.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        for f in user_says("Weather in Paris?"):
            await task.queue_frame(f)
        await until(lambda: len(context.messages) == 5, "the reply after the tool call")
        for f in user_says("Thanks!"):
            await task.queue_frame(f)
        await until(lambda: len(context.messages) == 7, "the reply to the second turn")
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 10)
    finally:
        if not runner.done():
            await task.cancel()
            await asyncio.wait({runner}, timeout=5)
        await close_http_sessions()
    return context, collector.responses, watch.errors, calls


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_the_same_conversation_runs_unchanged_on_every_provider(name: str) -> None:
    provider = PROVIDERS[name]
    fake = provider.make_fake()
    await fake.start()
    try:
        context, responses, errors, calls = await converse(provider.make_service(fake))
    finally:
        await fake.close()
    assert errors == []
    assert calls == [(CALL_ID, ARGS)]
    assert context.messages == EXPECTED_CONTEXT, "\n".join(map(str, context.messages))
    assert responses == ["", "It is sunny and 21 degrees in Paris.", "You're welcome, enjoy Paris!"]
    assert fake.auth_failures == 0
    provider.check_requests(fake)
