"""Offline A/B of ContextRelay: one scripted long call, run against a fake realtime server that
bills its context and answers recall questions only from it.

The call: the caller states three facts early (a name, an account number, a date), then
``minutes`` of ordinary turns in compressed time (each turn's audio length is declared, not
played), then asks for the three facts back. Arms:

* ``none``: no compaction (the context grows with every turn's audio);
* ``truncation``: the provider's sliding window (``truncation: retention_ratio`` with a
  ``post_instructions`` token limit, sent in the session);
* ``relay``: :class:`~flowcat.agent.ContextRelay` with the verbatim summarizer;
* ``relay+summary``: ContextRelay with the product's summarizer, :class:`~flowcat.agent.LLMSummarizer`
  over :class:`~flowcat.services.llm.OpenAILLMService` (what a configured ``summarizer: auto`` builds
  for the ``openai`` realtime provider), talking Chat Completions over HTTP to a summarizing fake
  (``flowcat.testing.fakes.SummarizingOpenAI``: an extractive rule it documents, never inventing,
  keeping every sentence with a number, a month or a name within the word cap). The LLM's summary
  quality is not measured: its mechanics, latency in the reseed and the token budget are.

Each arm reports the input tokens of every response against the call's simulated time, the
cost of the call at the fake's rates, the facts recalled and the reseed latencies (wall clock,
local socket). The servers are passed in (``flowcat eval context-relay`` passes
``flowcat.testing.fakes.FakeRealtimeMemory`` and ``SummarizingOpenAI``): this layer does not
import the testing one.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..agent import ContextRelay, LLMSummarizer, Summarizer, VerbatimSummarizer
from ..errors import ConfigError
from ..frames import EndFrame, InputAudioRawFrame, UserStoppedSpeakingFrame
from ..runtime import Pipeline, PipelineParams, PipelineTask
from ..services import Backoff, close_http_sessions
from ..services.llm import OpenAILLMService
from ..services.realtime import OpenAIRealtimeLLMService, OpenAIRealtimeSettings

__all__ = ["ARMS", "ArmResult", "Turn", "build_call", "run_arm", "run_eval"]

ARMS = ("none", "truncation", "relay", "relay+summary")
BASE_PROMPT = "You are the billing assistant of Northwind Energy. Be brief and friendly."
FACTS = {  # question key -> (regex the fake answers with, the value expected)
    "account number": (r"\b\d{7}\b", "4472918"),
    "my name": (r"Dana Whitfield", "Dana Whitfield"),
    "appointment": (r"March \d+", "March 14"),
}
_OPENING = [
    ("Hi, my name is Dana Whitfield and I'm calling about my bill.", "Hello Dana, happy to help with your bill."),
    ("My account number is 4472918.", "Thank you, I have your account open."),
    ("Also the technician appointment is on March 14 in the morning.", "Noted, the visit is on the calendar."),
]
_RECALL = ["What is my account number again?", "Can you remind me what my name is on file?",
           "And when is my appointment?"]
_WORDS = ("the meter reading looks higher than usual this month because we had guests and the heating was on "
          "most evenings so I wonder whether the tariff changed or if there is a fault with the thermostat that "
          "keeps the boiler running at night while nobody is home and whether a paperless discount applies").split()


@dataclass(slots=True)
class Turn:
    """One scripted turn (what the caller says and for how long; the model's answer)."""

    user_text: str
    user_secs: float
    bot_text: str
    bot_secs: float


@dataclass
class ArmResult:
    """One arm's run."""

    arm: str
    minutes: list[float] = field(default_factory=list)
    input_tokens: list[int] = field(default_factory=list)
    input_audio_tokens: list[int] = field(default_factory=list)
    cost_usd: float = 0.0
    cost_cached_usd: float = 0.0
    recalled: dict[str, bool] = field(default_factory=dict)
    reseed_ms: list[float] = field(default_factory=list)
    items_dropped: int = 0
    summaries: int = 0
    """Summaries asked of the summarizing LLM (text tokens in and out at 4 characters a token)."""
    summary_tokens_in: int = 0
    summary_tokens_out: int = 0
    summary_fallbacks: int = 0

    def tokens_at(self, minute: float) -> int:
        """Input tokens of the last response at or before ``minute`` of the call."""
        best = 0
        for m, t in zip(self.minutes, self.input_tokens, strict=True):
            if m <= minute:
                best = t
        return best

    def as_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "minutes": self.minutes, "input_tokens": self.input_tokens,
                "input_audio_tokens": self.input_audio_tokens, "cost_usd": round(self.cost_usd, 5),
                "cost_cached_usd": round(self.cost_cached_usd, 5),
                "recalled": self.recalled, "reseeds": len(self.reseed_ms),
                "reseed_ms": [round(x, 2) for x in self.reseed_ms], "items_dropped": self.items_dropped,
                "summaries": self.summaries, "summary_tokens_in": self.summary_tokens_in,
                "summary_tokens_out": self.summary_tokens_out, "summary_fallbacks": self.summary_fallbacks}


def _say(rng: random.Random, secs: float) -> str:
    n = max(3, round(secs * 2.5))  # 150 words a minute
    start = rng.randrange(len(_WORDS))
    words = [_WORDS[(start + i) % len(_WORDS)] for i in range(n)]
    return " ".join(words).capitalize() + "."


def build_call(minutes: float = 15.0, seed: int = 7) -> list[Turn]:
    """The scripted call: facts, ``minutes`` of filler turns, then the recall questions."""
    rng = random.Random(seed)
    turns = [Turn(u, 4.0, b, 3.0) for u, b in _OPENING]
    elapsed = sum(t.user_secs + t.bot_secs for t in turns)
    while elapsed < minutes * 60:
        us, bs = rng.uniform(5, 10), rng.uniform(6, 12)
        turns.append(Turn(_say(rng, us), us, _say(rng, bs), bs))
        elapsed += us + bs
    turns += [Turn(q, 3.0, "", 3.0) for q in _RECALL]
    return turns


SUMMARY_MODEL = "gpt-4.1-mini"
"""The summarizing model named in the requests (the fake does not care; a live run would)."""


def _summarizer(arm: str, summary_server: Any) -> Summarizer:
    if arm != "relay+summary":
        return VerbatimSummarizer()
    if summary_server is None:
        raise ConfigError("the relay+summary arm needs a summarizing Chat Completions server")
    llm = OpenAILLMService(api_key=summary_server.api_key, base_url=f"{summary_server.url}/v1", model=SUMMARY_MODEL)
    return LLMSummarizer(llm)


async def run_arm(arm: str, turns: list[Turn], server: Any, *, window_tokens: int = 4000,
                  relay_budget: int = 2000, keep_recent_turns: int = 4, summary_server: Any = None) -> ArmResult:
    """Run the call once against ``server`` (a started ``FakeRealtimeMemory``); ``summary_server``
    (a started ``SummarizingOpenAI``) serves the ``relay+summary`` arm's summarizer."""
    extra: dict[str, Any] = {}
    if arm == "truncation":
        extra["truncation"] = {"type": "retention_ratio", "retention_ratio": 0.8,
                               "token_limits": {"post_instructions": window_tokens}}
    settings = OpenAIRealtimeSettings(instructions=BASE_PROMPT, server_vad=False, extra=extra)
    service = OpenAIRealtimeLLMService(url=server.url, api_key=server.api_key, settings=settings,
                                       max_session_secs=None, reconnect=Backoff(initial=0.02, max_attempts=3))
    sim = [0.0]
    relay: ContextRelay | None = None
    if arm.startswith("relay"):
        relay = ContextRelay(service, base_prompt=BASE_PROMPT, max_context_tokens=relay_budget,
                             min_turns_between=2, keep_recent_turns=keep_recent_turns,
                             summarizer=_summarizer(arm, summary_server), clock=lambda: sim[0])
    done = asyncio.Event()
    service.add_event_handler("on_turn_done", lambda _s, _u: done.set())  # after the relay's handler
    procs = [p for p in (relay, service) if p is not None]
    task = PipelineTask(Pipeline(procs), params=PipelineParams(audio_in_sample_rate=16000,
                                                               audio_out_sample_rate=24000))
    started = asyncio.Event()
    task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
    runner = asyncio.get_running_loop().create_task(task.run())
    result = ArmResult(arm)
    first_billed = len(server.billed)
    try:
        await asyncio.wait_for(started.wait(), 10)
        await _until(lambda: service.connected, 10)
        chunk = bytes(3200)  # 100 ms at 16 kHz stands for the turn's audio (its length is declared)
        for turn in turns:
            server.expect(turn)
            done.clear()
            await task.queue_frame(InputAudioRawFrame(chunk, 16000, 1))
            await task.queue_frame(UserStoppedSpeakingFrame())
            await asyncio.wait_for(done.wait(), 10)
            sim[0] += turn.user_secs + turn.bot_secs
            bill = server.billed[-1]
            result.minutes.append(round(sim[0] / 60, 3))
            result.input_tokens.append(bill.input_tokens)
            result.input_audio_tokens.append(bill.input_audio_tokens)
    finally:
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 10)
        await close_http_sessions()
    billed = server.billed[first_billed:]
    result.cost_usd = sum(b.cost_usd for b in billed)
    result.cost_cached_usd = sum(b.cost_cached_usd for b in billed)
    answers = " ".join(b.answer for b in billed[-len(_RECALL):])
    result.recalled = {key: want in answers for key, (_p, want) in FACTS.items()}
    result.reseed_ms = [r.latency_ms for r in relay.reseeds] if relay is not None else []
    result.items_dropped = sum(s.dropped for s in server.sessions)
    if summary_server is not None and arm == "relay+summary":
        done_summaries = summary_server.summaries
        result.summaries = len(done_summaries)
        result.summary_tokens_in = sum(math.ceil(chars / 4) for chars, _s in done_summaries)
        result.summary_tokens_out = sum(math.ceil(len(text) / 4) for _c, text in done_summaries)
        if isinstance(relay.summarizer, LLMSummarizer) if relay is not None else False:
            result.summary_fallbacks = relay.summarizer.fallbacks  # type: ignore[union-attr]
    return result


async def _until(cond: Callable[[], bool], secs: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + secs
    while not cond():
        if loop.time() > end:
            raise TimeoutError("the realtime service did not connect")
        await asyncio.sleep(0.005)


async def run_eval(make_server: Callable[[], Any], *, minutes: float = 15.0, arms: tuple[str, ...] = ARMS,
                   make_summary_server: Callable[[], Any] | None = None, **kwargs: Any) -> list[ArmResult]:
    """Every arm on the same call, each against a fresh server from ``make_server`` (and, for
    ``relay+summary``, a fresh summarizing server from ``make_summary_server``)."""
    turns = build_call(minutes)
    out = []
    for arm in arms:
        server = make_server()
        server.facts = {key: pattern for key, (pattern, _v) in FACTS.items()}
        summary = make_summary_server() if make_summary_server is not None and arm == "relay+summary" else None
        await server.start()
        if summary is not None:
            await summary.start()
        try:
            out.append(await run_arm(arm, turns, server, summary_server=summary, **kwargs))
        finally:
            await server.close()
            if summary is not None:
                await summary.close()
    return out
