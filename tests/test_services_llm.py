"""LLMService: frame sequences, metrics, retries, ordering of frames behind a response.

Reproduces pipecat's test_llm_service.py behaviours: a context yields
``LLMFullResponseStart, LLMText+, LLMFullResponseEnd``; an interruption stops the
response; settings frames update the service; usage and TTFB metrics are reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowcat.errors import ServiceAuthError, ServiceStatusError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMTokenUsage,
    LLMUpdateSettingsFrame,
    LLMUsageMetricsData,
    MetricsFrame,
    TextFrame,
    TTFBMetricsData,
)
from flowcat.runtime import PipelineParams
from flowcat.services import Backoff, LLMChunk, LLMService, LLMTextDelta, ServiceSettings
from flowcat.testing import SleepFrame, run_test, run_virtual


class ScriptedLLM(LLMService):
    """Answers each context with the next script: a list of chunks or delays (floats) or errors."""

    def __init__(self, scripts: list[list[Any]], **kw: Any) -> None:
        kw.setdefault("retry", Backoff(initial=0.01, max_attempts=3))
        super().__init__(settings=ServiceSettings(model="toy"), **kw)
        self.scripts = list(scripts)
        self.requests = 0
        self.closed = 0

    async def run_inference(self, context: LLMContext) -> AsyncIterator[LLMChunk]:
        self.requests += 1
        script = self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]
        try:
            for item in script:
                if isinstance(item, (int, float)):
                    await asyncio.sleep(item)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.closed += 1


def ctx() -> LLMContextFrame:
    return LLMContextFrame(LLMContext([{"role": "user", "content": "hi"}]))


def texts(frames: list[Frame]) -> list[str]:
    return [f.text for f in frames if isinstance(f, LLMTextFrame)]


async def test_context_yields_start_text_end() -> None:
    llm = ScriptedLLM([[LLMTextDelta("Hello"), LLMTextDelta(" world")]])
    down, _ = await run_test(
        llm,
        frames_to_send=[ctx()],
        expected_down_frames=[LLMFullResponseStartFrame, LLMTextFrame, LLMTextFrame, LLMFullResponseEndFrame],
    )
    assert texts(down) == ["Hello", " world"]


async def test_frames_behind_a_response_wait_for_its_end() -> None:
    # pipecat: the service is busy until the response ends; a frame queued behind
    # the context leaves after LLMFullResponseEndFrame (flowcat holds it, no I/O in process_frame).
    llm = ScriptedLLM([[0.05, LLMTextDelta("a"), 0.05, LLMTextDelta("b")]])
    down, _ = await run_test(
        llm,
        frames_to_send=[ctx(), TextFrame("after")],
        expected_down_frames=[
            LLMFullResponseStartFrame, LLMTextFrame, LLMTextFrame, LLMFullResponseEndFrame, TextFrame,
        ],
    )
    assert [f.text for f in down if type(f) is TextFrame] == ["after"]


async def test_two_contexts_run_one_after_the_other() -> None:
    llm = ScriptedLLM([[0.02, LLMTextDelta("one")], [LLMTextDelta("two")]])
    down, _ = await run_test(llm, frames_to_send=[ctx(), ctx()])
    kinds = [type(f) for f in down if not isinstance(f, MetricsFrame)][:-1]
    assert kinds == [LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame] * 2
    assert texts(down) == ["one", "two"]


def test_interruption_stops_the_response_and_closes_the_stream() -> None:
    async def main() -> None:
        llm = ScriptedLLM([[LLMTextDelta("first"), 10.0, LLMTextDelta("never")]])
        down, _ = await run_test(
            llm, frames_to_send=[ctx(), SleepFrame(0.5), InterruptionFrame(), TextFrame("next")]
        )
        assert texts(down) == ["first"]
        assert not any(isinstance(f, LLMFullResponseEndFrame) for f in down)
        assert llm.closed == 1
        # The frame held behind the response is dropped by the interruption; the one after passes.
        assert [f.text for f in down if type(f) is TextFrame] == ["next"]

    run_virtual(main())


def test_metrics_ttfb_and_usage() -> None:
    async def main() -> None:
        llm = ScriptedLLM([[0.25, LLMTextDelta("x"), LLMTokenUsage(10, 2, 12)]])
        down, _ = await run_test(
            llm, frames_to_send=[ctx()], params=PipelineParams(enable_metrics=True, enable_usage_metrics=True)
        )
        data = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
        ttfb = [d for d in data if isinstance(d, TTFBMetricsData)]
        usage = [d for d in data if isinstance(d, LLMUsageMetricsData)]
        assert len(ttfb) == 1 and ttfb[0].value == pytest.approx(0.25)
        assert ttfb[0].model == "toy"
        assert usage[0].value.total_tokens == 12

    run_virtual(main())


def test_retryable_errors_before_output_are_retried() -> None:
    async def main() -> None:
        llm = ScriptedLLM([
            [ServiceStatusError("busy", 503)],
            [ServiceStatusError("slow down", 429)],
            [LLMTextDelta("ok")],
        ])
        down, up = await run_test(llm, frames_to_send=[ctx()])
        assert texts(down) == ["ok"]
        assert llm.requests == 3
        assert not [f for f in up if isinstance(f, ErrorFrame)]

    run_virtual(main())


def test_auth_error_is_not_retried_and_reported_upstream() -> None:
    async def main() -> None:
        llm = ScriptedLLM([[ServiceAuthError("bad key", 401)]])
        down, up = await run_test(
            llm,
            frames_to_send=[ctx()],
            expected_down_frames=[LLMFullResponseStartFrame, LLMFullResponseEndFrame],
            expected_up_frames=[ErrorFrame],
        )
        assert llm.requests == 1
        assert not up[0].fatal and "bad key" in up[0].error

    run_virtual(main())


def test_error_after_output_is_not_replayed() -> None:
    async def main() -> None:
        llm = ScriptedLLM([[LLMTextDelta("half"), ServiceStatusError("boom", 500)], [LLMTextDelta("again")]])
        down, up = await run_test(llm, frames_to_send=[ctx()])
        assert texts(down) == ["half"]
        assert llm.requests == 1
        assert len([f for f in up if isinstance(f, ErrorFrame)]) == 1

    run_virtual(main())


def test_no_first_chunk_within_the_request_timeout() -> None:
    async def main() -> None:
        llm = ScriptedLLM([[60.0, LLMTextDelta("late")]], request_timeout_secs=2.0)
        down, up = await run_test(llm, frames_to_send=[ctx()])
        assert texts(down) == []
        errs = [f for f in up if isinstance(f, ErrorFrame)]
        assert len(errs) == 1 and "within 2 s" in errs[0].error
        assert llm.closed == 1

    run_virtual(main())


async def test_settings_frame_updates_the_service() -> None:
    llm = ScriptedLLM([[LLMTextDelta("x")]])
    changes: list[dict[str, Any]] = []

    @llm.event_handler("on_settings_updated")
    async def _on(_svc: Any, changed: dict[str, Any]) -> None:
        changes.append(changed)

    await run_test(llm, frames_to_send=[LLMUpdateSettingsFrame(settings={"model": "bigger"}), ctx()])
    assert llm.settings.model == "bigger" and llm.model_name == "bigger"
    assert changes == [{"model": "bigger"}]


async def test_unknown_setting_is_reported_not_fatal() -> None:
    llm = ScriptedLLM([[LLMTextDelta("x")]])
    down, up = await run_test(llm, frames_to_send=[LLMUpdateSettingsFrame(settings={"nope": 1}), ctx()])
    assert texts(down) == ["x"]
    assert any("unknown setting" in f.error for f in up if isinstance(f, ErrorFrame))


def test_interruption_before_the_generation_task_runs_does_not_leave_the_service_paused() -> None:
    async def main() -> None:
        llm = ScriptedLLM([[LLMTextDelta("x")]])
        down, _ = await run_test(llm, frames_to_send=[ctx(), InterruptionFrame(), TextFrame("after"), ctx()],
                                 timeout=10.0)
        assert [f.text for f in down if type(f) is TextFrame] == ["after"]
        assert texts(down) == ["x"] and llm.requests == 1

    run_virtual(main())
