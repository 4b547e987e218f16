"""ContextRelay: its triggers (budget with the anti-thrash floor, session age bypassing it, turn
count), the digest format, the summarizer's verbatim fallback, transitions that never stack
digests, the reseed through a realtime service against a fake (fresh instructions, no audio
items replayed, the output goes on), and a short run of the A/B evaluation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from flowcat.agent import ContextRelay, LLMSummarizer, VerbatimSummarizer
from flowcat.agent._context_relay import DIGEST_END, DIGEST_START
from flowcat.bench.context_relay_eval import run_eval
from flowcat.frames import (
    EndFrame,
    InputAudioRawFrame,
    LLMContext,
    LLMTokenUsage,
    LLMUpdateSettingsFrame,
    TTSAudioRawFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, Pipeline, PipelineParams, PipelineTask
from flowcat.services import Backoff, LLMService, LLMTextDelta, close_http_sessions
from flowcat.services._realtime_state import ConversationItem
from flowcat.services.realtime import OpenAIRealtimeLLMService, OpenAIRealtimeSettings
from flowcat.testing import CaptureProcessor
from flowcat.testing.fakes import FakeRealtimeMemory, ScriptedTurn, SummarizingOpenAI, extractive_summary

pytestmark = pytest.mark.usefixtures("no_outside_connections")

BASE = "You are a billing assistant."


class _Stub(OpenAIRealtimeLLMService):
    """A realtime service that is never started: renewals are recorded."""

    def __init__(self) -> None:
        super().__init__(api_key="sk-test", settings=OpenAIRealtimeSettings(instructions=BASE))
        self.renewals: list[tuple[str | None, bool]] = []

    async def renew_session(self, *, instructions: str | None = None, replay: bool = True) -> None:
        self.renewals.append((instructions, replay))


def _usage(prompt: int) -> LLMTokenUsage:
    return LLMTokenUsage(prompt_tokens=prompt, completion_tokens=10, total_tokens=prompt + 10)


async def _turn(svc: _Stub, n: int, prompt: int) -> None:
    svc.conversation.add(ConversationItem("user", f"user line {n}"))
    svc.conversation.add(ConversationItem("assistant", f"bot line {n}"))
    await svc._call_event_handler("on_turn_done", _usage(prompt))


async def test_budget_trigger_waits_for_the_anti_thrash_floor() -> None:
    svc = _Stub()
    relay = ContextRelay(svc, max_context_tokens=100, min_turns_between=2)
    reasons: list[str] = []
    relay.add_event_handler("on_reseed", lambda _r, report: reasons.append(report.reason))
    await _turn(svc, 1, 500)
    assert svc.renewals == []  # over budget, but one turn is under the floor
    await _turn(svc, 2, 500)
    assert len(svc.renewals) == 1 and reasons == ["budget"]
    await _turn(svc, 3, 500)
    assert len(svc.renewals) == 1  # the floor again
    await _turn(svc, 4, 50)
    assert len(svc.renewals) == 1  # under budget
    await _turn(svc, 5, 500)
    assert len(svc.renewals) == 2
    assert relay.reseeds[0].tokens_before == 500 and relay.reseeds[0].tokens_after == 500


async def test_session_age_bypasses_the_floor() -> None:
    now = [0.0]
    svc = _Stub()
    relay = ContextRelay(svc, max_context_tokens=10_000, min_turns_between=5, max_session_secs=60,
                         clock=lambda: now[0])
    await _turn(svc, 1, 100)  # the session's clock starts
    now[0] = 30
    await _turn(svc, 2, 100)
    assert svc.renewals == []
    now[0] = 61
    await _turn(svc, 3, 100)
    assert [r.reason for r in relay.reseeds] == ["age"]  # 1 turn after... well under the floor of 5
    now[0] = 100
    await _turn(svc, 4, 100)
    assert len(relay.reseeds) == 1  # the age clock restarted at the reseed


async def test_turn_count_trigger() -> None:
    svc = _Stub()
    relay = ContextRelay(svc, max_context_tokens=10_000, min_turns_between=1, trigger_after_turns=3)
    for n in range(1, 7):
        await _turn(svc, n, 100)
    assert [r.reason for r in relay.reseeds] == ["turns", "turns"]
    assert len(svc.renewals) == 2


async def test_digest_format_and_reseed_call() -> None:
    svc = _Stub()
    relay = ContextRelay(svc, trigger_after_turns=3, min_turns_between=1, keep_recent_turns=2)
    for n in range(1, 4):
        await _turn(svc, n, 100)
    (instructions, replay), = svc.renewals
    assert replay is False
    assert instructions == "\n".join([
        BASE, "", DIGEST_START,
        "Summary of earlier conversation: user: user line 1\nassistant: bot line 1\nuser: user line 2\n"
        "assistant: bot line 2",
        "user: user line 3", "assistant: bot line 3", DIGEST_END])
    assert relay.reseeds[0].turns_kept == 2 and relay.reseeds[0].turns_summarized == 4
    assert relay.reseeds[0].digest_chars == len(instructions)


class _LLM(LLMService):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.seen: list[Any] = []

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[Any, None]:  # type: ignore[override]
        self.seen.append(context.messages)
        if self.mode == "fail":
            raise RuntimeError("model down")
        if self.mode == "hang":
            await asyncio.sleep(10)
        yield LLMTextDelta("Dana called about account 4472918.")


async def test_llm_summarizer_and_its_verbatim_fallback() -> None:
    turns = [("user", "My account is 4472918."), ("assistant", "Thanks.")]
    ok = LLMSummarizer(_LLM("ok"))
    assert await ok.summarize("", turns) == "Dana called about account 4472918."
    assert "user: My account is 4472918." in ok.llm.seen[0][1]["content"]  # type: ignore[attr-defined]
    verbatim = await VerbatimSummarizer().summarize("earlier", turns)
    assert verbatim == "earlier\nuser: My account is 4472918.\nassistant: Thanks."
    failing = LLMSummarizer(_LLM("fail"))
    assert await failing.summarize("earlier", turns) == verbatim and failing.fallbacks == 1
    hanging = LLMSummarizer(_LLM("hang"), timeout_secs=0.05)
    assert await hanging.summarize("earlier", turns) == verbatim and hanging.fallbacks == 1


async def test_transitions_adopt_the_new_prompt_and_digests_never_stack() -> None:
    svc = _Stub()
    relay = ContextRelay(svc, trigger_after_turns=2, min_turns_between=1, keep_recent_turns=1)
    for n in range(1, 3):
        await _turn(svc, n, 100)
    first = svc.renewals[-1][0]
    assert first is not None and first.count(DIGEST_START) == 1
    # a graph transition sends a new prompt: it becomes the base, the frame carries base + digest
    frame = LLMUpdateSettingsFrame(settings={"instructions": "Node B: take the payment."})
    out = relay._adopt(frame)
    assert out.settings["instructions"].startswith("Node B: take the payment.\n\n" + DIGEST_START)
    assert out.settings["instructions"].count(DIGEST_START) == 1
    # a prompt that already carries a digest (the service's own instructions) loses it
    relay.set_base_prompt(first)
    assert relay.base_prompt == BASE
    relay.set_base_prompt("Node B: take the payment.")
    for n in range(3, 5):
        await _turn(svc, n, 100)
    second = svc.renewals[-1][0]
    assert second is not None and second.startswith("Node B: take the payment.\n\n" + DIGEST_START)
    assert second.count(DIGEST_START) == 1 and BASE not in second


async def test_reseed_through_the_service_against_the_fake() -> None:
    fake = FakeRealtimeMemory()
    await fake.start()
    svc = OpenAIRealtimeLLMService(url=fake.url, api_key=fake.api_key, max_session_secs=None,
                                   reconnect=Backoff(initial=0.02, max_attempts=3),
                                   settings=OpenAIRealtimeSettings(instructions=BASE, server_vad=False))
    relay = ContextRelay(svc, trigger_after_turns=2, min_turns_between=1, keep_recent_turns=4)
    done = asyncio.Event()
    svc.add_event_handler("on_turn_done", lambda _s, _u: done.set())
    down = CaptureProcessor(FrameDirection.DOWNSTREAM)
    task = PipelineTask(Pipeline([relay, svc, down]), params=PipelineParams(audio_in_sample_rate=16000))
    runner = asyncio.get_running_loop().create_task(task.run())
    try:
        for _ in range(500):
            if svc.connected:
                break
            await asyncio.sleep(0.01)
        script = [ScriptedTurn("My account number is 4472918.", 4, "Got it.", 2),
                  ScriptedTurn("And my name is Dana.", 3, "Thanks Dana.", 2),
                  ScriptedTurn("Are you still there?", 2, "Yes, still here.", 2)]
        audio_after: list[int] = []
        for turn in script:
            fake.expect(turn)
            done.clear()
            await task.queue_frame(InputAudioRawFrame(bytes(3200), 16000, 1))
            await task.queue_frame(UserStoppedSpeakingFrame())
            await asyncio.wait_for(done.wait(), 5)
            audio_after.append(sum(isinstance(f, TTSAudioRawFrame) for f in down.frames))
        assert len(fake.sessions) == 2 and len(relay.reseeds) == 1
        fresh = fake.sessions[1]
        sent = fresh.updates[0]["instructions"]
        assert sent.startswith(BASE + "\n\n" + DIGEST_START)
        assert "user: My account number is 4472918." in sent and "assistant: Thanks Dana." in sent
        assert fresh.created_items == []  # nothing replayed: no audio (nor text) items
        # the fresh session saw only the digest and the new turn's audio, and it answered
        assert [i.role for i in fresh.items] == ["user", "assistant"]
        assert audio_after[2] > audio_after[1] > audio_after[0] > 0  # the output went on
        assert fake.billed[2].input_audio_tokens == 20  # only the new turn's audio is billed as audio
        assert relay.reseeds[0].latency_ms > 0 and relay.reseeds[0].tokens_after == fake.billed[2].input_tokens
    finally:
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 5)
        await close_http_sessions()
        await fake.close()


async def test_quick_eval_relative_outcomes() -> None:
    results = {r.arm: r for r in await run_eval(FakeRealtimeMemory, minutes=3, window_tokens=800,
                                                relay_budget=600, make_summary_server=SummarizingOpenAI)}
    none, window, relay = results["none"], results["truncation"], results["relay"]
    assert all(none.recalled.values()) and all(relay.recalled.values())
    assert all(results["relay+summary"].recalled.values())
    assert not any(window.recalled.values()) and window.items_dropped > 0
    end = none.minutes[-1]
    assert relay.tokens_at(end) * 2 < none.tokens_at(end)
    assert relay.reseed_ms and none.cost_usd > relay.cost_usd


async def test_the_issue_acceptance_at_minute_15_with_the_product_summarizer() -> None:
    """ContextRelay with the product's summarizer (LLMSummarizer → OpenAILLMService → HTTP → the
    summarizing fake) keeps every fact at >= 5x fewer input tokens per turn than no compaction by
    minute 15; the sliding window loses the early facts."""
    results = {r.arm: r for r in await run_eval(FakeRealtimeMemory, minutes=15, make_summary_server=SummarizingOpenAI,
                                                arms=("none", "truncation", "relay+summary"))}
    none, window, summary = results["none"], results["truncation"], results["relay+summary"]
    assert all(summary.recalled.values()) and not any(window.recalled.values())
    assert none.tokens_at(15) >= 5 * summary.tokens_at(15), (none.tokens_at(15), summary.tokens_at(15))
    assert summary.summaries == len(summary.reseed_ms) > 0 and summary.summary_fallbacks == 0
    assert summary.summary_tokens_out < summary.summary_tokens_in


def test_the_summarizing_fake_keeps_fact_sentences_within_the_cap() -> None:
    body = {"messages": [
        {"role": "system", "content": "Summarize this phone call in under 12 words, third person."},
        {"role": "user", "content": "Earlier summary: Caller: My name is Dana Whitfield.\n"
                                    "user: The meter looks high. My account number is 4472918.\n"
                                    "assistant: Noted, the visit is on March 14. Anything else?"},
    ]}
    assert extractive_summary(body) == "Caller: My name is Dana Whitfield. Caller: My account number is 4472918."
    body["messages"][0]["content"] = "Summarize in under 100 words."
    assert extractive_summary(body) == ("Caller: My name is Dana Whitfield. Caller: My account number is 4472918. "
                                        "Agent: Noted, the visit is on March 14.")


def test_cli_eval_context_relay_json_and_results(tmp_path: Any, capsys: Any) -> None:
    import json

    from flowcat.cli import main

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    assert main(["eval", "context-relay", "--minutes", "2", "--arms", "none,relay", "--json",
                 "--results", str(results)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [a["arm"] for a in out["arms"]] == ["none", "relay"]
    assert out["arms"][0]["recalled"] == {"account number": True, "my name": True, "appointment": True}
    text = results.read_text()
    assert "## Other\n\nkept" in text and "## ContextRelay A/B" in text and "| relay |" in text
    assert main(["eval", "context-relay", "--arms", "bogus"]) == 2


async def test_renew_session_with_instructions_waits_for_the_running_response() -> None:
    svc = OpenAIRealtimeLLMService(api_key="sk-test", settings=OpenAIRealtimeSettings(instructions=BASE))
    opened: list[tuple[str | None, int]] = []

    async def fake_open(*, renewal: bool) -> None:
        opened.append((svc.s.instructions, len(svc.conversation.items)))

    svc._open = fake_open  # type: ignore[method-assign]
    svc.conversation.add(ConversationItem("user", "hello"))
    svc._response_id = "resp_1"  # a response is running: the reseed waits for its end
    await svc.renew_session(instructions="DIGEST", replay=False)
    assert opened == [] and svc._renew_due
    svc._response_id = None
    turns: list[Any] = []
    svc.add_event_handler("on_turn_done", lambda _s, usage: turns.append(usage))
    await svc.on_response_done("resp_1", "completed", None)
    assert opened == [("DIGEST", 0)]  # the new instructions, nothing replayed
    await svc.on_response_done("resp_2", "cancelled", None)
    assert len(turns) == 1  # only a completed response ends the model's turn
    await svc.renew_session()  # a plain renewal replays and keeps the instructions
    assert opened[-1] == ("DIGEST", 0)
