"""Context summarization (pipecat's LLMContextSummarizer): when the assistant half asks, what it folds,
how the LLM service answers, and how the summary lands in the context — as frame sequences, and end to
end through the OpenAI provider against the OpenAI-protocol fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineTask
from flowcat.agent import (
    LLMAssistantAggregator,
    LLMAssistantAggregatorParams,
    LLMAutoContextSummarizationConfig,
    LLMContext,
    LLMContextAggregatorPair,
    LLMContextSummaryConfig,
    estimate_context_tokens,
    messages_to_summarize,
)
from flowcat.errors import ConfigError
from flowcat.frames import (
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    FunctionCallInProgressFrame,
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMContextSummaryRequestFrame,
    LLMContextSummaryResultFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMSummarizeContextFrame,
)
from flowcat.services import (
    DEFAULT_SUMMARIZATION_PROMPT,
    LLMChunk,
    LLMService,
    LLMTextDelta,
    close_http_sessions,
)
from flowcat.services.llm.openai import OpenAILLMService
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.testing.fakes import FakeOpenAI

SYSTEM = {"role": "system", "content": "You are a travel agent."}


def talk(n: int) -> list[dict[str, Any]]:
    """``n`` alternating user/assistant messages."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(n)]


def run(agg: Any, frames: list, down: list | None = None, up: list | None = None) -> tuple[list, list]:
    return run_virtual(run_test(agg, frames_to_send=frames, expected_down_frames=down, expected_up_frames=up))


def auto(max_messages: int | None = 6, keep: int = 2, **kw: Any) -> LLMAssistantAggregatorParams:
    return LLMAssistantAggregatorParams(
        enable_auto_context_summarization=True,
        auto_context_summarization_config=LLMAutoContextSummarizationConfig(
            max_context_tokens=kw.pop("max_tokens", None), max_unsummarized_messages=max_messages,
            summary_config=LLMContextSummaryConfig(min_messages_after_summary=keep, **kw),
        ),
    )


# ------------------------------------------------------------------- selection


def test_estimate_counts_text_tool_calls_and_images() -> None:
    ctx = LLMContext([
        {"role": "user", "content": "x" * 40},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "abcd", "arguments": "{}" + "y" * 2}}]},
        {"role": "tool", "tool_call_id": "c", "content": "z" * 8},
        {"role": "user", "content": [{"type": "text", "text": "w" * 12}, {"type": "image_url", "image_url": {}}]},
    ])
    assert estimate_context_tokens(ctx) == (10 + 10) + (10 + 2) + (10 + 2 + 10) + (10 + 3 + 500)


def test_selection_keeps_the_system_prompt_and_the_recent_messages() -> None:
    assert messages_to_summarize(LLMContext([SYSTEM, *talk(6)]), 2) == (1, 4)
    assert messages_to_summarize(LLMContext(talk(6)), 2) == (0, 3)
    assert messages_to_summarize(LLMContext([SYSTEM, *talk(2)]), 2) == (0, -1)


def test_selection_never_separates_a_tool_call_from_its_result() -> None:
    call = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                 "function": {"name": "f", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "c1", "content": '"ok"'}
    msgs = [SYSTEM, *talk(2), call, result, *talk(2)]  # call at 3, result at 4
    assert messages_to_summarize(LLMContext(msgs), 2) == (1, 4)
    assert messages_to_summarize(LLMContext(msgs), 3) == (1, 2)  # the result is kept: so is its call
    assert messages_to_summarize(LLMContext(msgs), 2, running={"c1"}) == (1, 2)  # still running


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        LLMAutoContextSummarizationConfig(max_context_tokens=None, max_unsummarized_messages=None)
    with pytest.raises(ConfigError):
        LLMContextSummaryConfig(summary_message_template="no placeholder")
    cfg = LLMAutoContextSummarizationConfig(max_context_tokens=1000)
    assert cfg.summary_config.target_context_tokens == 800


# -------------------------------------------------------------- the assistant half


class Answerer(FrameProcessor):
    """Stands in for the LLM service: answers each summary request with ``summary``, records it."""

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary
        self.requests: list[LLMContextSummaryRequestFrame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextSummaryRequestFrame):
            self.requests.append(frame)
            self.context_then = list(frame.context.messages)
            await self.push_frame(LLMContextSummaryResultFrame(
                request_id=frame.request_id, summary=self.summary, last_summarized_index=frame.last_summarized_index))
            return
        await self.push_frame(frame, direction)


def test_a_response_past_the_message_bound_asks_the_llm_for_a_summary_and_applies_it() -> None:
    ctx = LLMContext([SYSTEM, *talk(6)])
    agg = LLMAssistantAggregator(ctx, params=auto(max_messages=6, keep=2))
    llm = Answerer("They planned Rome.")
    applied: list[Any] = []

    @agg.event_handler("on_summary_applied")
    async def _applied(_agg: Any, summarizer: Any, event: Any) -> None:
        applied.append((summarizer, event))

    run(Pipeline([llm, agg]), [LLMFullResponseStartFrame(), SleepFrame()])
    (req,) = llm.requests
    assert (req.first_index, req.last_summarized_index) == (1, 4)
    assert [m["content"] for m in req.messages] == [f"message {i}" for i in range(4)]
    assert req.summarization_prompt == DEFAULT_SUMMARIZATION_PROMPT and req.context is ctx
    assert llm.context_then == [SYSTEM, *talk(6)]  # nothing changed before the result
    assert ctx.messages == [SYSTEM, {"role": "user", "content": "Conversation summary: They planned Rome."},
                            *talk(6)[4:]]
    assert len(applied) == 1 and applied[0][0] is agg.summarizer
    event = applied[0][1]
    assert (event.original_message_count, event.new_message_count) == (7, 4)
    assert (event.summarized_message_count, event.preserved_message_count) == (4, 3)


def test_the_next_summary_folds_the_previous_one_and_counts_from_it() -> None:
    ctx = LLMContext([SYSTEM, *talk(6)])
    agg = LLMAssistantAggregator(ctx, params=auto(max_messages=4, keep=2))
    llm = Answerer("S")
    frames: list[Any] = [LLMFullResponseStartFrame(), SleepFrame()]  # -> [system, S, m4, m5]
    for i in range(6, 9):  # m6: 3 since the summary; m7: 4, summarized again (S, m4, m5); m8: 3
        frames += [LLMMessagesAppendFrame(messages=[{"role": "user", "content": f"message {i}"}]),
                   LLMFullResponseStartFrame(), SleepFrame()]
    run(Pipeline([llm, agg]), frames)
    assert len(llm.requests) == 2
    assert llm.requests[1].messages[0] == {"role": "user", "content": "Conversation summary: S"}
    assert llm.requests[1].last_summarized_index == 3
    assert ctx.messages == [SYSTEM, {"role": "user", "content": "Conversation summary: S"},
                            *({"role": "user", "content": f"message {i}"} for i in range(6, 9))]


def test_below_the_bounds_or_with_auto_off_nothing_is_asked() -> None:
    run(LLMAssistantAggregator(LLMContext([SYSTEM, *talk(5)]), params=auto(max_messages=6)),
        [LLMFullResponseStartFrame()], up=[])
    run(LLMAssistantAggregator(LLMContext([SYSTEM, *talk(20)])), [LLMFullResponseStartFrame()], up=[])


def test_the_token_bound_triggers_too() -> None:
    ctx = LLMContext([SYSTEM, *({"role": "user", "content": "x" * 400} for _ in range(5))])
    assert estimate_context_tokens(ctx) >= 500
    run(LLMAssistantAggregator(ctx, params=auto(max_messages=None, max_tokens=500)),
        [LLMFullResponseStartFrame()], up=[LLMContextSummaryRequestFrame])


def test_one_summary_at_a_time_and_an_interruption_allows_another() -> None:
    agg = LLMAssistantAggregator(LLMContext([SYSTEM, *talk(8)]), params=auto(max_messages=6))
    _, up = run(agg, [LLMFullResponseStartFrame(), LLMFullResponseStartFrame(), LLMSummarizeContextFrame(),
                      InterruptionFrame(), LLMFullResponseStartFrame()],
                up=[LLMContextSummaryRequestFrame] * 2)
    first, second = up
    # The first request's result no longer counts: the second one is awaited.
    run(agg, [LLMContextSummaryResultFrame(request_id=first.request_id, summary="old", last_summarized_index=6)])
    assert agg.summarizer.summaries == 0
    run(agg, [LLMContextSummaryResultFrame(request_id=second.request_id, summary="new", last_summarized_index=6)])
    assert agg.summarizer.summaries == 1


def test_the_last_summary_alone_is_not_summarized_again() -> None:
    ctx = LLMContext([SYSTEM, *talk(4)])
    agg = LLMAssistantAggregator(ctx, params=auto(max_messages=2, keep=2))
    llm = Answerer("S")
    # The first response folds m0, m1; after it two messages follow the summary (the bound), but
    # with two kept only the summary itself could be folded: no second request.
    run(Pipeline([llm, agg]), [LLMFullResponseStartFrame(), SleepFrame(), LLMFullResponseStartFrame(), SleepFrame()])
    assert len(llm.requests) == 1
    assert ctx.messages == [SYSTEM, {"role": "user", "content": "Conversation summary: S"}, *talk(4)[2:]]


def test_a_manual_request_works_with_auto_off_and_takes_its_own_config() -> None:
    ctx = LLMContext([SYSTEM, *talk(4)])
    agg = LLMAssistantAggregator(ctx)
    cfg = LLMContextSummaryConfig(min_messages_after_summary=1, summary_message_template="<summary>{summary}</summary>",
                                  summarization_prompt="Be terse.")
    _, up = run(agg, [LLMSummarizeContextFrame(config=cfg)], up=[LLMContextSummaryRequestFrame])
    assert up[0].last_summarized_index == 3 and up[0].summarization_prompt == "Be terse."
    run(agg, [LLMContextSummaryResultFrame(request_id=up[0].request_id, summary="S", last_summarized_index=3)])
    assert ctx.messages == [SYSTEM, {"role": "user", "content": "<summary>S</summary>"}, talk(4)[3]]


def test_errors_stale_ids_and_a_rewritten_history_leave_the_context_alone() -> None:
    ctx = LLMContext([SYSTEM, *talk(8)])
    agg = LLMAssistantAggregator(ctx, params=auto(max_messages=6))
    before = list(ctx.messages)
    _, up = run(agg, [LLMFullResponseStartFrame()], up=[LLMContextSummaryRequestFrame])
    run(agg, [LLMContextSummaryResultFrame(request_id="nope", summary="x", last_summarized_index=6),
              LLMContextSummaryResultFrame(request_id=up[0].request_id, summary="", last_summarized_index=-1,
                                           error="timed out")])
    assert ctx.messages == before and agg.summarizer.summaries == 0

    _, up = run(agg, [LLMFullResponseStartFrame()], up=[LLMContextSummaryRequestFrame])
    ctx.set_messages([SYSTEM, *talk(9)])  # the history was replaced meanwhile (new message objects)
    run(agg, [LLMContextSummaryResultFrame(request_id=up[0].request_id, summary="x", last_summarized_index=6)])
    assert ctx.messages == [SYSTEM, *talk(9)] and agg.summarizer.summaries == 0


def test_a_running_tool_call_is_not_folded() -> None:
    ctx = LLMContext([SYSTEM, *talk(2)])
    agg = LLMAssistantAggregator(ctx, params=auto(max_messages=6, keep=1))
    fc = FunctionCallFromLLM("search", "c1", {}, ctx)
    frames = [
        FunctionCallsStartedFrame(function_calls=[fc], group_id="g"),
        FunctionCallInProgressFrame(function_name="search", tool_call_id="c1", arguments={},
                                    cancel_on_interruption=False, group_id="g"),
        SleepFrame(),
    ]
    run(agg, frames)
    ctx.add_messages(talk(3))  # the conversation goes on while the async call runs
    _, up = run(agg, [LLMFullResponseStartFrame()], up=[LLMContextSummaryRequestFrame])
    assert up[0].last_summarized_index == 2  # up to the call, not past it


# ----------------------------------------------------------------- the services


class SummaryLLM(LLMService):
    def __init__(self, answer: str | Exception) -> None:
        super().__init__()
        self.answer = answer
        self.contexts: list[LLMContext] = []

    async def run_inference(self, context: LLMContext) -> AsyncIterator[LLMChunk]:
        self.contexts.append(context)
        if isinstance(self.answer, Exception):
            raise self.answer
        for word in self.answer.split(" "):
            yield LLMTextDelta(word + " ")


def _request(**kw: Any) -> LLMContextSummaryRequestFrame:
    fields: dict[str, Any] = dict(
        request_id="r1", context=None, messages=talk(3), first_index=1, last_summarized_index=3,
        target_context_tokens=200, summarization_prompt="Summarize.", summarization_timeout=5.0,
    )
    fields.update(kw)
    return LLMContextSummaryRequestFrame(**fields)


def test_the_llm_service_answers_a_request_both_ways_and_keeps_it() -> None:
    llm = SummaryLLM("They want Rome in May.")
    down, up = run(llm, [_request(), SleepFrame(0.1)])
    for frames in (down, up):
        results = [f for f in frames if isinstance(f, LLMContextSummaryResultFrame)]
        assert len(results) == 1 and results[0].summary == "They want Rome in May."
        assert results[0].request_id == "r1" and results[0].last_summarized_index == 3 and results[0].error is None
        assert not [f for f in frames if isinstance(f, LLMContextSummaryRequestFrame)]
    system, user = llm.contexts[0].messages
    assert system["role"] == "system" and system["content"].startswith("Summarize.") and "200 tokens" in system["content"]
    assert user["content"].endswith("USER: message 0\n\nASSISTANT: message 1\n\nUSER: message 2")


def test_a_failed_summary_still_answers_with_an_error() -> None:
    from flowcat.errors import ServiceError

    down, _ = run(SummaryLLM(ServiceError("boom")), [_request(), SleepFrame(0.1)])
    (result,) = [f for f in down if isinstance(f, LLMContextSummaryResultFrame)]
    assert result.error == "boom" and result.last_summarized_index == -1
    down, _ = run(SummaryLLM(""), [_request(), SleepFrame(0.1)])
    (result,) = [f for f in down if isinstance(f, LLMContextSummaryResultFrame)]
    assert "empty" in (result.error or "")


def test_a_dedicated_summarizer_llm_is_called_directly() -> None:
    ctx = LLMContext([SYSTEM, *talk(6)])
    dedicated = SummaryLLM("Dedicated summary.")
    agg = LLMAssistantAggregator(ctx, params=auto(max_messages=6, llm=dedicated))
    run(agg, [LLMFullResponseStartFrame(), SleepFrame(0.1)], up=[])  # nothing goes to the pipeline's LLM
    assert ctx.messages[1] == {"role": "user", "content": "Conversation summary: Dedicated summary."}
    assert len(ctx.messages) == 4 and len(dedicated.contexts) == 1


# ------------------------------------------------------------------ end to end


async def test_a_conversation_past_the_bound_is_summarized_by_the_pipeline_llm_over_the_wire() -> None:
    def responder(body: dict[str, Any]) -> str:
        first = body["messages"][0]
        if first["role"] == "system" and first["content"].startswith(DEFAULT_SUMMARIZATION_PROMPT):
            return "The user is planning a trip to Rome in May."
        return "Sure."

    fake = FakeOpenAI(responder=responder)
    await fake.start()
    try:
        ctx = LLMContext([SYSTEM, *talk(7)])
        pair = LLMContextAggregatorPair(ctx, assistant_params=auto(max_messages=6, keep=2))
        llm = OpenAILLMService(base_url=fake.url + "/v1", api_key=fake.api_key, request_timeout_secs=5.0)
        assistant = pair.assistant()
        task = PipelineTask(Pipeline([pair.user(), llm, assistant]))
        runner = asyncio.get_running_loop().create_task(task.run())
        await task.queue_frame(LLMContextFrame(ctx))
        for _ in range(1000):  # bounded: 10 s
            if assistant.summarizer.summaries and ctx.messages[-1]["role"] == "assistant":
                break
            await asyncio.sleep(0.01)
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 5)
    finally:
        await close_http_sessions()
        await fake.close()
    assert len(fake.bodies) == 2  # the reply, and the summary asked for at its start
    summary_body = fake.bodies[1]
    assert "USER: message 0" in summary_body["messages"][1]["content"]
    assert "message 5" not in summary_body["messages"][1]["content"]  # the recent ones are kept
    assert ctx.messages == [
        SYSTEM,
        {"role": "user", "content": "Conversation summary: The user is planning a trip to Rome in May."},
        *talk(7)[5:],
        {"role": "assistant", "content": "Sure."},
    ]
