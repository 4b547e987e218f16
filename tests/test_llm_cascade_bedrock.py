"""A two-turn cascaded conversation with a tool call, through the context aggregator pair, on Bedrock.

user half → AWSBedrockLLMService (against the SigV4-verifying ConverseStream fake) → assistant
half, in real time. Asserted: the final provider-neutral context, and the Bedrock-specific
requests: the second one carries the assistant's ``toolUse`` and the user's ``toolResult``.
(Written for Bedrock alone while tests/test_llm_cascade_providers.py does not exist yet; it is
meant to become that module's ``bedrock`` entry.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from _fake_bedrock import AKID, FakeBedrock, Reply, ToolUse
from flowcat.agent import LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    EndFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.services import Backoff, FunctionCallParams, close_http_sessions
from flowcat.services.adapters import FunctionSchema, ToolsSchema
from flowcat.services.llm import AWSBedrockLLMService
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies
from test_transport_support import Harness

pytestmark = pytest.mark.usefixtures("no_outside_connections")

WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])


def user_says(text: str) -> list[Any]:
    return [VADUserStartedSpeakingFrame(), TranscriptionFrame(text=text, user_id="u", timestamp=""),
            VADUserStoppedSpeakingFrame()]


async def test_two_turns_with_a_tool_call() -> None:
    fake = FakeBedrock([Reply(tools=[ToolUse("get_weather", {"city": "Paris"}, "tooluse_w1")], input_chunk=4),
                        "It is sunny.", "Rain tomorrow."])
    await fake.start()
    ctx = LLMContext([{"role": "system", "content": "You are a weather bot."}], tools=ToolsSchema([WEATHER]))
    pair = LLMContextAggregatorPair(ctx, user_params=LLMUserAggregatorParams(
        user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.1)])))
    llm = AWSBedrockLLMService(base_url=fake.url, aws_access_key=AKID, aws_secret_key=fake.api_key,
                               aws_region="us-east-1", model="anthropic.claude-3-5-haiku-20241022-v1:0",
                               retry=Backoff(initial=0.02, max_attempts=2), request_timeout_secs=5)
    seen: list[dict[str, Any]] = []

    async def get_weather(params: FunctionCallParams) -> None:
        seen.append(dict(params.arguments))
        await params.result_callback({"sky": "sunny", "c": 24})

    llm.register_function("get_weather", get_weather)
    turns: asyncio.Queue[str] = asyncio.Queue()
    assistant = pair.assistant()

    @assistant.event_handler("on_assistant_turn_stopped")
    async def on_turn(_aggregator: Any, message: Any) -> None:
        await turns.put(message.content)

    async def next_turn_with_text() -> str:
        while True:  # a tool-call turn ends with no text: the answer after the rerun does
            content = await asyncio.wait_for(turns.get(), 10)
            if content:
                return str(content)

    try:
        async with Harness([pair.user(), llm, assistant]) as h:
            for f in user_says("Weather in Paris?"):
                await h.task.queue_frame(f)
            assert await next_turn_with_text() == "It is sunny."
            for f in user_says("And tomorrow?"):
                await h.task.queue_frame(f)
            assert await next_turn_with_text() == "Rain tomorrow."
            await h.task.queue_frame(EndFrame())
            await h.finish()
    finally:
        await close_http_sessions()
        await fake.close()
    assert seen == [{"city": "Paris"}]
    assert fake.auth_failures == 0 and len(fake.bodies) == 3
    msgs = [{k: v for k, v in m.items() if k in ("role", "content", "tool_call_id")} for m in ctx.messages]
    assert msgs == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant"},  # the tool call
        {"role": "tool", "content": '{"sky": "sunny", "c": 24}', "tool_call_id": "tooluse_w1"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Rain tomorrow."},
    ]
    call = ctx.messages[2]["tool_calls"][0]
    assert (call["id"], call["function"]["name"]) == ("tooluse_w1", "get_weather")
    system = [{"text": "You are a weather bot."}]
    tool_config = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city.", "inputSchema": {
        "json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}]}
    assert fake.bodies[0] == {"system": system, "toolConfig": tool_config,
                              "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]}
    tool_turns = [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_w1", "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_w1", "content": [{"json": {"sky": "sunny", "c": 24}}]}}]},
    ]
    assert fake.bodies[1] == {"system": system, "toolConfig": tool_config, "messages": tool_turns}
    assert fake.bodies[2]["messages"] == [
        *tool_turns,
        {"role": "assistant", "content": [{"text": "It is sunny."}]},
        {"role": "user", "content": [{"text": "And tomorrow?"}]}]
    assert fake.models == ["anthropic.claude-3-5-haiku-20241022-v1:0"] * 3
