"""Function calling in LLMService: terminal states, parallel/sequential, timeouts,
cancellation on interruption, generation binding, direct functions.

Reproduces pipecat's test_llm_service.py / test_direct_functions.py behaviours and the
fixes for pipecat #4300 (missing handler leaves no result), #5779 (calls stuck
IN_PROGRESS) and #4997 (tools of a discarded generation still run).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest

from flowcat.errors import ConfigError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    FunctionCallResultProperties,
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from flowcat.services import (
    FunctionCallParams,
    LLMChunk,
    LLMService,
    LLMTextDelta,
    LLMToolCallDelta,
    function_schema,
)
from flowcat.testing import SleepFrame, run_test, run_virtual


class ToolLLM(LLMService):
    def __init__(self, scripts: list[list[Any]], **kw: Any) -> None:
        super().__init__(**kw)
        self.scripts = scripts

    async def run_inference(self, context: LLMContext) -> AsyncIterator[LLMChunk]:
        for item in self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]:
            if isinstance(item, float):
                await asyncio.sleep(item)
            else:
                yield item


def call(index: int, name: str, args: str = "{}", cid: str | None = None) -> list[LLMToolCallDelta]:
    # Split like OpenAI: id and name first, arguments in two fragments.
    half = len(args) // 2
    return [
        LLMToolCallDelta(index, id=cid or f"call_{index}", name=name),
        LLMToolCallDelta(index, arguments=args[:half]),
        LLMToolCallDelta(index, arguments=args[half:]),
    ]


def ctx() -> LLMContextFrame:
    return LLMContextFrame(LLMContext([{"role": "user", "content": "weather?"}]))


def of(frames: list[Frame], *types: type[Frame]) -> list[Frame]:
    return [f for f in frames if isinstance(f, types)]


TERMINAL = (FunctionCallResultFrame, FunctionCallCancelFrame)


def terminal_ids(frames: list[Frame]) -> list[str]:
    return [f.tool_call_id for f in of(frames, *TERMINAL)]  # type: ignore[attr-defined]


async def test_tool_call_sequence_and_result_both_ways() -> None:
    llm = ToolLLM([call(0, "get_weather", '{"city": "Paris"}')])
    seen: list[FunctionCallParams] = []

    async def get_weather(params: FunctionCallParams) -> None:
        seen.append(params)
        await params.result_callback({"temp": 21})

    llm.register_function("get_weather", get_weather)
    down, up = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert [type(f) for f in down][:-1] == [
        LLMFullResponseStartFrame,
        FunctionCallsStartedFrame,
        LLMFullResponseEndFrame,
        FunctionCallInProgressFrame,
        FunctionCallResultFrame,
    ]
    assert [type(f) for f in up] == [FunctionCallsStartedFrame, FunctionCallInProgressFrame,
                                     FunctionCallResultFrame]
    res = of(down, FunctionCallResultFrame)[0]
    assert res.result == {"temp": 21} and res.tool_call_id == "call_0"
    assert seen[0].arguments == {"city": "Paris"} and seen[0].llm is llm
    assert seen[0].context is not None and seen[0].context.messages[0]["content"] == "weather?"


async def test_missing_handler_gets_an_error_result() -> None:
    llm = ToolLLM([call(0, "nope")])
    down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    res = of(down, FunctionCallResultFrame)
    assert len(res) == 1 and "not currently available" in res[0].result


async def test_catch_all_handler() -> None:
    llm = ToolLLM([call(0, "anything")])

    async def fallback(params: FunctionCallParams) -> None:
        await params.result_callback(f"handled {params.function_name}")

    llm.register_function(None, fallback)
    down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert of(down, FunctionCallResultFrame)[0].result == "handled anything"


async def test_malformed_arguments_get_an_error_result_without_running() -> None:
    llm = ToolLLM([call(0, "f", '{"city": "Par')])
    ran = []

    async def f(params: FunctionCallParams) -> None:
        ran.append(1)

    llm.register_function("f", f)
    down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert not ran
    assert "not valid JSON" in of(down, FunctionCallResultFrame)[0].result
    assert llm.bad_messages == 1


async def test_handler_exception_gets_error_result_and_error_frame() -> None:
    llm = ToolLLM([call(0, "f")])

    async def f(params: FunctionCallParams) -> None:
        raise RuntimeError("db down")

    llm.register_function("f", f)
    down, up = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert "failed" in of(down, FunctionCallResultFrame)[0].result
    assert any("db down" in e.error for e in of(up, ErrorFrame))


def test_timeout_gets_a_terminal_result_and_a_late_result_is_ignored() -> None:
    async def main() -> None:
        llm = ToolLLM([call(0, "slow")])
        late: list[bool] = []

        async def slow(params: FunctionCallParams) -> None:
            try:
                await asyncio.sleep(100)
            finally:
                # A handler that still reports after its deadline is ignored.
                await params.result_callback("too late")
                late.append(True)

        llm.register_function("slow", slow, timeout_secs=2.0)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(5.0)])
        res = of(down, FunctionCallResultFrame)
        assert len(res) == 1 and "timed out after 2 s" in res[0].result
        assert res[0].run_llm is True
        assert late == [True]

    run_virtual(main())


def test_global_timeout_applies_to_deferred_results() -> None:
    async def main() -> None:
        llm = ToolLLM([call(0, "deferred")], function_call_timeout_secs=1.0)

        async def deferred(params: FunctionCallParams) -> None:
            return None  # keeps the callback and never reports

        llm.register_function("deferred", deferred)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(3.0)])
        assert "timed out" in of(down, FunctionCallResultFrame)[0].result

    run_virtual(main())


def test_parallel_calls_overlap_sequential_do_not() -> None:
    async def run(parallel: bool) -> tuple[list[str], list[str]]:
        llm = ToolLLM([call(0, "f", '{"n": 1}') + call(1, "f", '{"n": 2}')], run_in_parallel=parallel)
        log: list[str] = []

        async def f(params: FunctionCallParams) -> None:
            n = params.arguments["n"]
            log.append(f"start{n}")
            await asyncio.sleep(1.0)
            log.append(f"end{n}")
            await params.result_callback(n)

        llm.register_function("f", f)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(3.0)])
        return log, terminal_ids(down)

    par, par_ids = run_virtual(run(True))
    seq, seq_ids = run_virtual(run(False))
    assert par[:2] == ["start1", "start2"]
    assert seq == ["start1", "end1", "start2", "end2"]
    assert sorted(par_ids) == ["call_0", "call_1"] and seq_ids == ["call_0", "call_1"]


def test_interruption_cancels_cancellable_calls_and_keeps_async_ones() -> None:
    async def main() -> None:
        llm = ToolLLM([call(0, "sync_tool") + call(1, "async_tool")])
        finished: list[str] = []

        async def sync_tool(params: FunctionCallParams) -> None:
            await asyncio.sleep(10)
            finished.append("sync")

        async def async_tool(params: FunctionCallParams) -> None:
            await asyncio.sleep(10)
            finished.append("async")
            await params.result_callback("done")

        llm.register_function("sync_tool", sync_tool)
        llm.register_function("async_tool", async_tool, cancel_on_interruption=False)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(1.0), InterruptionFrame(),
                                                      SleepFrame(20.0)])
        cancels = of(down, FunctionCallCancelFrame)
        results = of(down, FunctionCallResultFrame)
        assert [c.tool_call_id for c in cancels] == ["call_0"]
        assert [r.tool_call_id for r in results] == ["call_1"]
        assert finished == ["async"]
        assert llm.function_calls_in_progress == []

    run_virtual(main())


def test_interruption_before_calls_start_means_they_never_run() -> None:
    # pipecat #4997: the response was interrupted right as it asked for a tool; the
    # tool (an end_call, say) must not run later.
    async def main() -> None:
        llm = ToolLLM([[LLMTextDelta("Goodbye"), *call(0, "end_call"), 1.0]])
        ran: list[str] = []

        async def end_call(params: FunctionCallParams) -> None:
            ran.append("end_call")
            await params.result_callback("ok")

        llm.register_function("end_call", end_call)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.5), InterruptionFrame(),
                                                      SleepFrame(2.0)])
        assert ran == []
        assert not of(down, FunctionCallsStartedFrame, FunctionCallInProgressFrame, *TERMINAL)

    run_virtual(main())


def test_queued_sequential_calls_of_an_interrupted_generation_never_start() -> None:
    async def main() -> None:
        llm = ToolLLM([call(0, "a") + call(1, "b", cid="call_b")], run_in_parallel=False)
        ran: list[str] = []

        async def a(params: FunctionCallParams) -> None:
            ran.append("a")
            await asyncio.sleep(5)
            await params.result_callback("a")

        async def b(params: FunctionCallParams) -> None:
            ran.append("b")
            await params.result_callback("b")

        llm.register_function("a", a, cancel_on_interruption=False)
        llm.register_function("b", b)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(1.0), InterruptionFrame(),
                                                      SleepFrame(10.0)])
        # a is async (not cancelled) and finishes; b was queued in the discarded
        # generation: it never runs but still gets its terminal frame.
        assert ran == ["a"]
        assert [(type(f).__name__, f.tool_call_id) for f in of(down, *TERMINAL)] == [
            ("FunctionCallResultFrame", "call_0"), ("FunctionCallCancelFrame", "call_b"),
        ]

    run_virtual(main())


def test_discarded_generation_never_runs_its_tools() -> None:
    async def main() -> None:
        llm = ToolLLM([[1.0, *call(0, "f")]])
        ran: list[str] = []

        async def f(params: FunctionCallParams) -> None:
            ran.append("f")

        llm.register_function("f", f)

        async def discard_soon() -> None:
            await asyncio.sleep(0.5)
            llm.discard_generation()

        asyncio.get_running_loop().create_task(discard_soon())
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(2.0)])
        assert ran == [] and not of(down, FunctionCallsStartedFrame)

    run_virtual(main())


def test_every_announced_call_reaches_a_terminal_state_when_the_pipeline_is_cancelled() -> None:
    async def main() -> None:
        llm = ToolLLM([call(0, "hang")])

        async def hang(params: FunctionCallParams) -> None:
            await asyncio.sleep(100)

        llm.register_function("hang", hang, cancel_on_interruption=False)
        await run_test(llm, frames_to_send=[ctx(), SleepFrame(1.0)], send_end_frame=False)
        assert llm.function_calls_in_progress == []

    run_virtual(main())


# ------------------------------------------------------------ direct functions


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


async def get_forecast(
    params: FunctionCallParams, city: str, days: int = 1, unit: Unit = Unit.C,
    mode: Literal["brief", "full"] = "brief", tags: list[str] | None = None,
) -> dict[str, Any]:
    """Get the weather forecast for a city.

    Looks it up in the forecast service.

    Args:
        city: The city name,
            for example "Paris".
        days (int): How many days ahead.
        unit: Temperature unit.
        mode: How much detail.
        tags: Free-form tags.

    Returns:
        The forecast.
    """
    return {"city": city, "days": days}


def test_schema_from_signature_and_docstring() -> None:
    s = function_schema(get_forecast)
    assert s.name == "get_forecast"
    assert s.description == "Get the weather forecast for a city. Looks it up in the forecast service."
    assert s.required == ["city"]
    assert s.properties == {
        "city": {"type": "string", "description": 'The city name, for example "Paris".'},
        "days": {"type": "integer", "description": "How many days ahead."},
        "unit": {"enum": ["celsius", "fahrenheit"], "description": "Temperature unit."},
        "mode": {"type": "string", "enum": ["brief", "full"], "description": "How much detail."},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Free-form tags."},
    }
    assert s.to_openai()["function"]["parameters"]["required"] == ["city"]


def test_schema_rejects_functions_without_params() -> None:
    async def bad() -> None: ...

    async def star(params: FunctionCallParams, *args: Any) -> None: ...

    with pytest.raises(ConfigError):
        function_schema(bad)
    with pytest.raises(ConfigError):
        function_schema(star)


async def test_direct_function_returns_its_result_and_is_offered_as_a_tool() -> None:
    llm = ToolLLM([call(0, "get_forecast", '{"city": "Oslo", "days": 2}')])
    llm.register_direct_function(get_forecast)
    tools = llm.tools_for(LLMContext())
    assert tools is not None and tools[0]["function"]["name"] == "get_forecast"
    down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert of(down, FunctionCallResultFrame)[0].result == {"city": "Oslo", "days": 2}


async def test_result_properties_run_llm_is_carried() -> None:
    llm = ToolLLM([call(0, "f")])

    async def f(params: FunctionCallParams) -> None:
        await params.result_callback("x", properties=FunctionCallResultProperties(run_llm=False))

    llm.register_function("f", f)
    down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert of(down, FunctionCallResultFrame)[0].run_llm is False


def test_end_of_pipeline_settles_calls_in_flight_before_the_end_frame() -> None:
    async def main() -> None:
        llm = ToolLLM([call(0, "hang")])

        async def hang(params: FunctionCallParams) -> None:
            await asyncio.sleep(100)

        llm.register_function("hang", hang, cancel_on_interruption=False)
        down, _ = await run_test(llm, frames_to_send=[ctx(), SleepFrame(1.0)])
        kinds = [type(f).__name__ for f in down]
        assert kinds[-2:] == ["FunctionCallCancelFrame", "EndFrame"]
        assert llm.function_calls_in_progress == []

    run_virtual(main())


async def test_events_for_started_and_cancelled_calls() -> None:
    llm = ToolLLM([call(0, "f")])
    started: list[list[str]] = []

    @llm.event_handler("on_function_calls_started")
    async def _started(_llm: Any, calls: list[Any]) -> None:
        started.append([c.function_name for c in calls])

    async def f(params: FunctionCallParams) -> None:
        await params.result_callback(1)

    llm.register_function("f", f)
    await run_test(llm, frames_to_send=[ctx(), SleepFrame(0.05)])
    assert started == [["f"]]


async def test_cleanup_callbacks_run_once_each_at_the_end_and_a_failing_one_does_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm = ToolLLM([[]])
    ran: list[str] = []

    async def bad() -> None:
        ran.append("bad")
        raise RuntimeError("cleanup failed")

    async def good() -> None:
        ran.append("good")

    llm.add_cleanup(bad)
    llm.add_cleanup(good)
    llm.add_cleanup(good)  # added once
    await run_test(llm, frames_to_send=[])
    assert ran == ["bad", "good"]
    assert any("cleanup callback failed" in r.getMessage() for r in caplog.records)
