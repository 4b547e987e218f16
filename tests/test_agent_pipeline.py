"""The pair around a scripted LLM, through frames only: a user turn, a tool call, the rerun, the reply."""

from __future__ import annotations

from typing import Any

from flowcat import FrameDirection, FrameProcessor, Pipeline
from flowcat.agent import FunctionSchema, LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    Frame,
    FunctionCallFromLLM,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies


class ScriptedLLM(FrameProcessor):
    """Answers a user message with a weather tool call, and a tool result with a sentence."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[list[dict[str, Any]]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        self.runs.append([dict(m) for m in frame.context.messages])
        last = frame.context.messages[-1]
        if last["role"] == "user":
            call = FunctionCallFromLLM("get_weather", "call_1", {"city": "Paris"}, frame.context)
            await self.broadcast_frame(FunctionCallsStartedFrame, function_calls=[call])
            await self.broadcast_frame(
                FunctionCallInProgressFrame,
                function_name="get_weather",
                tool_call_id="call_1",
                arguments={"city": "Paris"},
            )
            await self.broadcast_frame(
                FunctionCallResultFrame,
                function_name="get_weather",
                tool_call_id="call_1",
                arguments={"city": "Paris"},
                result={"temp": 21},
            )
        else:
            await self.push_frame(LLMFullResponseStartFrame())
            for token in ("It is ", "21 degrees ", "in Paris."):
                await self.push_frame(LLMTextFrame(text=token))
            await self.push_frame(LLMFullResponseEndFrame())


def test_user_turn_tool_call_and_reply_build_the_context() -> None:
    ctx = LLMContext(
        [{"role": "system", "content": "You are a weather bot."}],
        tools=[FunctionSchema("get_weather", "Weather", {"city": {"type": "string"}}, ["city"])],
    )
    pair = LLMContextAggregatorPair(
        ctx,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.2)])
        ),
    )
    llm = ScriptedLLM()
    frames = [
        VADUserStartedSpeakingFrame(),
        TranscriptionFrame(text="Weather in Paris?", user_id="u", timestamp=""),
        VADUserStoppedSpeakingFrame(),
        SleepFrame(0.5),
    ]
    run_virtual(run_test(Pipeline([pair.user(), llm, pair.assistant()]), frames_to_send=frames))
    assert len(llm.runs) == 2  # the turn, then the rerun after the tool result
    assert ctx.messages == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is 21 degrees in Paris."},
    ]
    assert llm.runs[1][-1] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"}


def _turn_with_a_result(words: list[str]) -> tuple[LLMContext, list, list]:
    ctx = LLMContext()
    pair = LLMContextAggregatorPair(
        ctx,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.2)])
        ),
    )
    call = FunctionCallFromLLM("get_weather", "call_1", {}, ctx)
    frames: list = [
        FunctionCallsStartedFrame(function_calls=[call]),
        FunctionCallInProgressFrame(function_name="get_weather", tool_call_id="call_1", arguments={}),
        VADUserStartedSpeakingFrame(),
        FunctionCallResultFrame(
            function_name="get_weather", tool_call_id="call_1", arguments={}, result={"t": 1}
        ),
        *(TranscriptionFrame(text=w, user_id="u", timestamp="") for w in words),
        VADUserStoppedSpeakingFrame(),
        SleepFrame(5.5),  # an empty turn ends at the 5 s stop timeout (it waits for a transcript)
    ]
    down, up = run_virtual(run_test(Pipeline([pair.user(), pair.assistant()]), frames_to_send=frames))
    return ctx, down, up


def test_result_during_a_user_turn_is_answered_by_that_turn() -> None:
    ctx, down, up = _turn_with_a_result(["And tomorrow?"])
    assert sum(isinstance(f, LLMContextFrame) for f in down) == 1  # the user's turn runs the LLM
    assert not any(isinstance(f, LLMContextFrame) for f in up)  # no second run for the result
    assert ctx.messages[-1] == {"role": "user", "content": "And tomorrow?"}


def test_result_during_an_empty_user_turn_runs_the_llm_when_it_ends() -> None:
    ctx, down, up = _turn_with_a_result([])
    assert not any(isinstance(f, LLMContextFrame) for f in down)
    assert sum(isinstance(f, LLMContextFrame) for f in up) == 1
    assert ctx.messages[-1] == {"role": "tool", "content": '{"t": 1}', "tool_call_id": "call_1"}
