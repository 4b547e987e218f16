"""Async tools with interim results and grouped parallel tools (pipecat's ``is_final=False`` and
``group_parallel_tools``), as frame sequences: the service's frames, the assistant half's context
and LLM runs, and the whole loop (the pair around a real ``LLMService``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from flowcat import Pipeline
from flowcat.agent import LLMAssistantAggregator, LLMContext, LLMContextAggregatorPair
from flowcat.agent._tool_calls import ASYNC_TOOL_PLACEHOLDER
from flowcat.frames import (
    Frame,
    FunctionCallFromLLM,
    FunctionCallInProgressFrame,
    FunctionCallInterimResultFrame,
    FunctionCallResultFrame,
    FunctionCallResultProperties,
    FunctionCallsStartedFrame,
    LLMContextFrame,
    LLMMessagesAppendFrame,
)
from flowcat.services import FunctionCallParams, LLMChunk, LLMService, LLMTextDelta, LLMToolCallDelta
from flowcat.testing import SleepFrame, run_test, run_virtual


def run(agg: Any, frames: list, down: list | None = None, up: list | None = None) -> tuple[list, list]:
    return run_virtual(run_test(agg, frames_to_send=frames, expected_down_frames=down, expected_up_frames=up))


def of(frames: list[Frame], *types: type[Frame]) -> list[Any]:
    return [f for f in frames if isinstance(f, types)]


def call(i: int, name: str = "f") -> FunctionCallFromLLM:
    return FunctionCallFromLLM(function_name=name, tool_call_id=f"call_{i}", arguments={})


def started(*ids: int, group: str | None = None) -> FunctionCallsStartedFrame:
    return FunctionCallsStartedFrame(function_calls=[call(i) for i in ids], group_id=group)


def in_progress(i: int, group: str | None = None, *, is_async: bool = False) -> FunctionCallInProgressFrame:
    return FunctionCallInProgressFrame(function_name="f", tool_call_id=f"call_{i}", arguments={},
                                       cancel_on_interruption=not is_async, group_id=group)


def result(i: int, value: Any = "done", **kw: Any) -> FunctionCallResultFrame:
    return FunctionCallResultFrame(function_name="f", tool_call_id=f"call_{i}", arguments={}, result=value, **kw)


def interim(i: int, value: Any = "half way", **kw: Any) -> FunctionCallInterimResultFrame:
    return FunctionCallInterimResultFrame(function_name="f", tool_call_id=f"call_{i}", arguments={}, result=value,
                                          **kw)


# ------------------------------------------------------- the assistant half


def test_interim_results_are_developer_messages_and_each_runs_the_llm() -> None:
    ctx = LLMContext()
    frames = [
        started(1, group="g1"),
        in_progress(1, "g1", is_async=True),
        interim(1, {"progress": 50}),
        SleepFrame(),
        interim(1, {"progress": 90}),
        SleepFrame(),
        result(1, {"rooms": 3}),
    ]
    agg = LLMAssistantAggregator(ctx)
    run(agg, frames, up=[LLMContextFrame] * 3)
    roles = [m["role"] for m in ctx.messages]
    assert roles == ["assistant", "tool", "developer", "developer", "developer"]
    assert ctx.messages[1]["content"] == ASYNC_TOOL_PLACEHOLDER  # the history stays as the model saw it
    partial, final = ctx.messages[2]["content"], ctx.messages[4]["content"]
    assert "call_1" in partial and '{"progress": 50}' in partial and "still running" in partial
    assert "call_1" in final and '{"rooms": 3}' in final and "finished" in final
    assert not agg.has_function_calls_in_progress


def test_interim_result_properties_and_strays() -> None:
    updated: list[str] = []

    async def on_updated() -> None:
        updated.append("interim")

    ctx = LLMContext()
    frames = [
        interim(9),  # no such call: ignored
        started(1, group="g1"),
        interim(1),  # announced, not running yet: ignored
        in_progress(1, "g1", is_async=True),
        interim(1, ""),  # empty: ignored
        interim(1, properties=FunctionCallResultProperties(run_llm=False, on_context_updated=on_updated,
                                                           is_final=False)),
        SleepFrame(),
    ]
    agg = LLMAssistantAggregator(ctx)
    run(agg, frames, up=[])
    assert agg.stray_results == 3
    assert [m["role"] for m in ctx.messages] == ["assistant", "tool", "developer"]
    assert updated == ["interim"]
    assert agg.has_function_calls_in_progress  # an interim result never settles a call


def test_ungrouped_results_each_run_the_llm() -> None:
    # group_parallel_tools=False: no group id, so every result runs the LLM as it arrives.
    frames = [started(1, 2), in_progress(1), in_progress(2), result(1), SleepFrame(), result(2)]
    run(LLMAssistantAggregator(LLMContext()), frames, up=[LLMContextFrame] * 2)


def test_a_group_runs_the_llm_once_even_when_its_calls_run_one_after_the_other() -> None:
    # Sequential execution: the second call is announced but not running when the first settles.
    frames = [started(1, 2, group="g1"), in_progress(1, "g1"), result(1), SleepFrame(),
              in_progress(2, "g1"), result(2)]
    run(LLMAssistantAggregator(LLMContext()), frames, up=[LLMContextFrame])


def test_a_group_does_not_wait_for_another_response_s_async_call() -> None:
    # An async call of an earlier response runs on: the next response's tools are answered at once.
    frames = [
        started(1, group="g1"),
        in_progress(1, "g1", is_async=True),
        started(2, group="g2"),
        in_progress(2, "g2"),
        result(2),
        SleepFrame(),
    ]
    agg = LLMAssistantAggregator(LLMContext())
    run(agg, frames, up=[LLMContextFrame])
    assert agg.has_function_calls_in_progress


def test_a_sync_call_does_not_wait_for_its_async_sibling() -> None:
    frames = [
        started(1, 2, group="g1"),
        in_progress(1, "g1", is_async=True),
        in_progress(2, "g1"),
        result(2, "sync done"),  # the async sibling runs on: the model answers now
        SleepFrame(),
        result(1, "async done"),  # then again when the async call finishes
    ]
    run(LLMAssistantAggregator(LLMContext()), frames, up=[LLMContextFrame] * 2)


def test_an_async_result_waits_for_a_running_sync_sibling() -> None:
    frames = [
        started(1, 2, group="g1"),
        in_progress(1, "g1", is_async=True),
        in_progress(2, "g1"),
        result(1, "async done"),
        SleepFrame(),
        LLMMessagesAppendFrame(messages=[]),  # a marker: nothing ran before it
        result(2, "sync done"),
    ]
    run(LLMAssistantAggregator(LLMContext()), frames, up=[LLMContextFrame])


# -------------------------------------------------------------- the service


class ScriptLLM(LLMService):
    """First response: the scripted tool calls; every later one: a sentence. Records each context."""

    def __init__(self, calls: list[str], tool_runs: int = 1, **kw: Any) -> None:
        super().__init__(**kw)
        self.calls = calls
        self.tool_runs = tool_runs
        self.runs: list[list[Any]] = []

    async def run_inference(self, context: LLMContext) -> AsyncIterator[LLMChunk]:
        self.runs.append([dict(m) for m in context.messages])
        n = len(self.runs)
        if n <= self.tool_runs:
            for i, name in enumerate(self.calls):
                yield LLMToolCallDelta(i, id=f"call_{n}_{i}", name=name, arguments="{}")
        else:
            yield LLMTextDelta("Noted.")


def test_calls_of_one_response_share_a_group_id_and_the_next_response_gets_another() -> None:
    async def main(group: bool) -> list[Frame]:
        llm = ScriptLLM(["f", "f"], tool_runs=2, group_parallel_tools=group)

        async def f(params: FunctionCallParams) -> None:
            await params.result_callback("ok")

        llm.register_function("f", f)
        ctx = LLMContext([{"role": "user", "content": "go"}])
        frames = [LLMContextFrame(ctx), SleepFrame(0.1), LLMContextFrame(ctx), SleepFrame(0.1)]
        down, _ = await run_test(llm, frames_to_send=frames)
        return down

    down = run_virtual(main(True))
    first, second = (f.group_id for f in of(down, FunctionCallsStartedFrame))
    assert first is not None and second is not None and first != second
    assert [f.group_id for f in of(down, FunctionCallInProgressFrame)] == [first, first, second, second]

    down = run_virtual(main(False))
    assert [f.group_id for f in of(down, FunctionCallsStartedFrame)] == [None, None]
    assert {f.group_id for f in of(down, FunctionCallInProgressFrame)} == {None}


def test_an_async_tool_reports_interim_results_then_one_terminal_result() -> None:
    async def main() -> list[Frame]:
        llm = ScriptLLM(["book"])

        async def book(params: FunctionCallParams) -> None:
            await params.result_callback({"step": 1}, properties=FunctionCallResultProperties(is_final=False))
            await asyncio.sleep(1.0)
            await params.result_callback({"step": 2}, properties=FunctionCallResultProperties(is_final=False))
            await asyncio.sleep(1.0)
            await params.result_callback({"booked": True})
            await params.result_callback({"step": 3}, properties=FunctionCallResultProperties(is_final=False))

        llm.register_function("book", book, cancel_on_interruption=False)
        ctx = LLMContext([{"role": "user", "content": "book it"}])
        down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(ctx), SleepFrame(3.0)])
        return down

    down = run_virtual(main())
    tool_frames = of(down, FunctionCallInProgressFrame, FunctionCallInterimResultFrame, FunctionCallResultFrame)
    assert [type(f).__name__ for f in tool_frames] == [
        "FunctionCallInProgressFrame",
        "FunctionCallInterimResultFrame",
        "FunctionCallInterimResultFrame",
        "FunctionCallResultFrame",
    ]
    assert [f.result for f in tool_frames[1:]] == [{"step": 1}, {"step": 2}, {"booked": True}]
    assert not tool_frames[1].interruptible


def test_an_interim_result_from_a_cancellable_call_is_refused() -> None:
    async def main() -> list[Frame]:
        llm = ScriptLLM(["lookup"])

        async def lookup(params: FunctionCallParams) -> None:
            await params.result_callback("partial", properties=FunctionCallResultProperties(is_final=False))
            await params.result_callback("all")

        llm.register_function("lookup", lookup)  # cancel_on_interruption=True: the model waits for it
        ctx = LLMContext([{"role": "user", "content": "look"}])
        down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(ctx), SleepFrame(0.1)])
        return down

    down = run_virtual(main())
    assert of(down, FunctionCallInterimResultFrame) == []
    assert [f.result for f in of(down, FunctionCallResultFrame)] == ["all"]


def test_the_deadline_still_runs_after_an_interim_result() -> None:
    async def main() -> list[Frame]:
        llm = ScriptLLM(["slow"])

        async def slow(params: FunctionCallParams) -> None:
            await asyncio.sleep(1.0)
            await params.result_callback("10%", properties=FunctionCallResultProperties(is_final=False))
            await asyncio.sleep(100)

        llm.register_function("slow", slow, cancel_on_interruption=False, timeout_secs=2.0)
        ctx = LLMContext([{"role": "user", "content": "go"}])
        down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(ctx), SleepFrame(4.0)])
        return down

    down = run_virtual(main())
    assert [f.result for f in of(down, FunctionCallInterimResultFrame)] == ["10%"]
    results = of(down, FunctionCallResultFrame)
    assert len(results) == 1 and "timed out after 2 s" in results[0].result


# ------------------------------------------------------------- the whole loop


def _loop(calls: list[str], handlers: dict[str, Any], **llm_kw: Any) -> tuple[ScriptLLM, LLMContext]:
    ctx = LLMContext([{"role": "user", "content": "go"}])
    pair = LLMContextAggregatorPair(ctx)
    llm = ScriptLLM(calls, **llm_kw)
    for name, (handler, kw) in handlers.items():
        llm.register_function(name, handler, **kw)
    frames = [LLMContextFrame(ctx), SleepFrame(5.0)]
    run_virtual(run_test(Pipeline([pair.user(), llm, pair.assistant()]), frames_to_send=frames))
    return llm, ctx


def _sleeper(secs: float, value: str) -> Any:
    async def handler(params: FunctionCallParams) -> None:
        await asyncio.sleep(secs)
        await params.result_callback(value)

    return handler


def test_parallel_tools_of_one_response_get_one_follow_up_run() -> None:
    handlers = {"a": (_sleeper(0.5, "A"), {}), "b": (_sleeper(1.0, "B"), {})}
    llm, ctx = _loop(["a", "b"], handlers)
    assert len(llm.runs) == 2  # the response asking for both, then one run with both results
    assert [m["content"] for m in llm.runs[1] if m["role"] == "tool"] == ['"A"', '"B"']
    assert ctx.messages[-1] == {"role": "assistant", "content": "Noted."}


def test_ungrouped_parallel_tools_run_the_llm_per_result() -> None:
    handlers = {"a": (_sleeper(0.5, "A"), {}), "b": (_sleeper(1.0, "B"), {})}
    llm, _ = _loop(["a", "b"], handlers, group_parallel_tools=False)
    assert len(llm.runs) == 3
    assert [m["content"] for m in llm.runs[1] if m["role"] == "tool"] == ['"A"', "IN_PROGRESS"]


def test_an_async_tool_s_interim_and_final_results_reach_the_model() -> None:
    async def search(params: FunctionCallParams) -> None:
        await asyncio.sleep(0.5)
        await params.result_callback("2 of 5 airlines searched",
                                     properties=FunctionCallResultProperties(is_final=False))
        await asyncio.sleep(1.0)
        await params.result_callback({"cheapest": "EUR 120"})

    llm, ctx = _loop(["search"], {"search": (search, {"cancel_on_interruption": False})})
    assert len(llm.runs) == 3  # the call, the interim result, the final one
    assert "2 of 5 airlines searched" in llm.runs[1][-1]["content"]
    assert llm.runs[2][-1]["role"] == "developer" and "EUR 120" in llm.runs[2][-1]["content"]
    assert [m["role"] for m in ctx.messages] == [
        "user", "assistant", "tool", "developer", "assistant", "developer", "assistant"
    ]
