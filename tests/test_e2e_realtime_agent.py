"""End to end: a Twilio media-stream call to an agent configured ``topology: realtime``, with the
provider's turns (server VAD) and with flowcat's (local: energy VAD, commit + response.create).

The real server (``create_app`` on 127.0.0.1) serves the agent built from a configuration file:
the OpenAI Realtime service, a tool (``tools.py:lookup_order``, a direct
function) and ContextRelay (reseed every 2 finished bot turns; the older turns summarized by the
LLM summarizer over Chat Completions to ``SummarizingOpenAI``). The service talks
to ``tests/_fake_openai_realtime.py`` (the OpenAI Realtime GA wire) whose audio is streamed paced,
as a real server streams it (a 100 ms chunk every 50 ms). A scripted Twilio caller streams
μ-law audio at real time (a tone burst for each utterance, silence otherwise) and records each
bot ``media`` message's arrival.

Asserted: the caller hears the answer; the tool runs (its handler's result goes back to the
model, whose next answer is made from it and reaches the reseeded session's digest); talking over
the bot sends Twilio's ``clear`` (and a truncate to what was heard to the model) and no bot audio
after it until the next answer; ContextRelay reseeds twice, each while the caller is hearing a reply, with
no gap over 100 ms in the bot audio the caller receives around the reseed (time the host did not
run the process at all — a loop stall without CPU use, see :class:`LoopWatch` — is not counted); the fake served a
fresh session per reseed, seeded with the digest, the second with a summary from the summarizer.

Not asserted: a ``response.cancel`` at the barge-in (the fake has usually sent the whole answer by
then: nothing is left to cancel on the model's side, only buffered audio to clear).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from _fake_openai_realtime import Connection, FakeOpenAIRealtime
from _helpers import require
from flowcat.agent import ContextRelay, ReseedReport
from flowcat.agent._context_relay import DIGEST_START
from flowcat.audio import tone
from flowcat.config import parse_config
from flowcat.runtime import FrameProcessor
from flowcat.server import CallInfo, ServerConfig, create_app
from flowcat.server._agents import agents_from_config
from flowcat.services import close_http_sessions
from flowcat.testing.fakes import SummarizingOpenAI, decode_tones

# Timing-sensitive (no gap over 100 ms in real-time bot audio): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial

conformance = require("test_serializer_conformance")
TWILIO = next(s for s in conformance.SPECS if s.name == "twilio")
ENCODE, DECODE = conformance.ENCODE, conformance.DECODE

RATE = 8000
FRAME = RATE * 2 // 50  # 20 ms of PCM16
ANSWER = (  # 3 s of tones: a reseed (up to ~0.7 s on a loaded host) falls well inside the reply
    "thanks for calling northwind energy, i can help with that right away, one moment please "
    "while i bring up the account and the latest readings for you"
)
MAX_GAP = 0.100

TOOLS = '''
async def lookup_order(params, order_id: str) -> dict:
    """Look up an order's status.

    Args:
        order_id: The order number.
    """
    return {"order_id": order_id, "status": "shipped", "by": "lookup_order handler"}
'''

CONFIG = """\
agents:
  rt:
    brain:
      kind: llm
      system_prompt: You are the Northwind Energy line. Be brief.
      tools: [{function: "tools.py:lookup_order"}]
    transports: [twilio]
    topology:
      mode: realtime
      provider: openai
      voice: alloy
      turns: TURNS
      options: {url: "URL"}
      context_relay:
        min_turns_between: 1
        trigger_after_turns: 2
        keep_recent_turns: 4
        summarizer: {provider: openai, model: gpt-4.1-mini, options: {base_url: "SUMMARIZER/v1"}}
"""


class Fake(FakeOpenAIRealtime):
    """Answers ``ANSWER``, or, right after a tool result, a sentence made from that result."""

    def answer(self, conn: Connection) -> str:
        events = [e for e in conn.events if e.get("type") != "input_audio_buffer.append"]
        last = events[-2] if len(events) >= 2 else {}
        item = last.get("item") or {}
        if last.get("type") == "conversation.item.create" and item.get("type") == "function_call_output":
            out = json.loads(item["output"])
            return f"your order {out['order_id'].lower()} is {out['status']}, anything else i can do for you today"
        return ANSWER


class Caller:
    """A Twilio media stream: 20 ms μ-law frames at real time, a tone while speaking."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.arrivals: list[float] = []  # one per bot media message
        self.heard = bytearray()
        self.clears: list[float] = []
        self.speech = b""
        self.talking_until = 0.0

    async def read(self) -> None:
        async for msg in self.ws:
            data = msg.data
            if isinstance(data, str) and data == TWILIO.clear:
                self.clears.append(self.loop.time())
                continue
            payload = TWILIO.media_out(data)
            if payload:
                self.arrivals.append(self.loop.time())
                self.heard.extend(DECODE["PCMU"](payload))

    async def send(self) -> None:
        t0 = self.loop.time()
        k = 0
        while True:
            now = self.loop.time()
            if self.speech:
                chunk, self.speech = self.speech[:FRAME], self.speech[FRAME:]
                chunk += bytes(FRAME - len(chunk))
                if not self.speech:
                    self.talking_until = now
            else:
                chunk = bytes(FRAME)
            await self.ws.send_str(TWILIO.media_in(ENCODE["PCMU"](chunk)))
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - self.loop.time()))

    def say(self, secs: float = 0.4) -> None:
        self.talking_until = 0.0
        self.speech = tone(350.0, secs, RATE, 0.3)

    def heard_secs(self) -> float:
        return len(self.heard) / 2 / RATE

    def quiet_for(self, secs: float) -> bool:
        return bool(self.arrivals) and self.loop.time() - self.arrivals[-1] >= secs


class LoopWatch:
    """Event-loop stalls, and how much of each the process spent off the CPU (the host did not run
    it: this 2-core box is shared). A gap in the audio the caller receives is the product's unless
    the process was not running; that part is excluded from the gap."""

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float, float]] = []  # (start, end, seconds off the CPU)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0, c0 = loop.time(), time.process_time()
            await asyncio.sleep(0.005)
            t1, c1 = loop.time(), time.process_time()
            if t1 - t0 > 0.03:
                self.stalls.append((t0, t1, max(0.0, (t1 - t0) - (c1 - c0))))

    def descheduled(self, a: float, b: float) -> float:
        """Seconds of [a, b] the process was stalled off the CPU."""
        out = 0.0
        for s0, s1, off in self.stalls:
            overlap = min(b, s1) - max(a, s0)
            if overlap > 0:
                out += off * overlap / (s1 - s0)
        return out


def sounds_like(pcm: bytes, text: str) -> bool:
    """The caller's audio decodes (tones, one per character) to about ``text`` (μ-law, resampling
    and the transport's framing smear a few characters)."""
    heard = decode_tones(pcm, RATE).replace(" ", "")
    ratio = difflib.SequenceMatcher(None, heard, text.replace(" ", "")).ratio()
    assert ratio > 0.8, (heard, text, ratio)
    return True


async def until(cond: Callable[[], bool], what: str, secs: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + secs
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


LOCAL_TURNS = """\
    vad: {analyzer: energy, start_secs: 0.1, stop_secs: 0.2}
    turns: {user_speech_timeout: 0.1}
"""


@pytest.mark.parametrize("turns", ["server", "local"])
async def test_a_twilio_call_to_a_realtime_agent(
    turns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = Fake()
    fake.pace_secs = 0.05  # a 100 ms chunk every 50 ms: about twice real time, as providers stream
    await fake.start()
    summarizer = SummarizingOpenAI(api_key=fake.api_key)  # the relay's LLM summarizer (Chat Completions)
    await summarizer.start()
    (tmp_path / "tools.py").write_text(TOOLS)
    monkeypatch.setenv("OPENAI_API_KEY", fake.api_key or "")
    text = CONFIG.replace("URL", fake.url + "/v1/realtime").replace("TURNS", turns)
    text = text.replace("SUMMARIZER", summarizer.url)
    loaded = parse_config(text + (LOCAL_TURNS if turns == "local" else ""), "agent.yaml", tmp_path)
    agents = agents_from_config(loaded, capacity=2)
    assert not agents.problems, agents.problems
    agent = agents.get("rt")
    assert agent is not None
    built: list[FrameProcessor] = []
    make = agent.app

    def app(call: CallInfo) -> list[FrameProcessor]:
        procs = make(call)
        built.extend(procs)
        return procs

    agent.app = app
    client = TestClient(
        TestServer(
            create_app(
                ServerConfig(agents=agents, public_url="https://bot.example.test", verify_signatures=False)
            )
        )
    )
    await client.start_server()
    tasks: list[asyncio.Task[None]] = []
    try:
        ws = await client.ws_connect("/telephony/twilio/rt/ws")
        for msg in TWILIO.handshake:
            await ws.send_str(msg)
        caller = Caller(ws)
        watch = LoopWatch()
        tasks = [
            asyncio.create_task(caller.read()),
            asyncio.create_task(caller.send()),
            asyncio.create_task(watch.run()),
        ]
        await until(lambda: bool(fake.connections and fake.events("session.update")), "the session")
        relay = next(p for p in built if isinstance(p, ContextRelay))
        reseeds: list[tuple[float, ReseedReport]] = []
        relay.add_event_handler("on_reseed", lambda _r, rep: reseeds.append((caller.loop.time(), rep)))

        (update,) = fake.events("session.update")
        session = update["session"]
        assert session["instructions"] == "You are the Northwind Energy line. Be brief."
        assert session["audio"]["output"]["voice"] == "alloy"
        vad = (
            {"type": "server_vad"} if turns == "server" else None
        )  # local: flowcat's VAD, commit + response.create
        assert session["audio"]["input"]["turn_detection"] == vad
        assert [t["name"] for t in session["tools"]] == ["lookup_order"]

        async def answered(mark: int, what: str) -> None:
            """Bot audio came after ``mark`` arrivals, then stopped for 0.3 s (the answer was played)."""
            await until(lambda: len(caller.arrivals) > mark, what)
            await until(lambda: caller.quiet_for(0.3), f"the end of {what}")

        async def turn(what: str) -> None:
            mark = len(caller.arrivals)
            caller.say()
            await answered(mark, what)

        # 1. The caller asks; the bot's answer is heard. First let the line's silence reach
        # the model (0.25 s at 16 kHz): the energy VAD of the local-turns variant takes the
        # first audio it hears as its noise floor, so a question that came first (the
        # pipeline still starting) would be heard as the floor and never as speech.
        await until(lambda: fake.audio_bytes_in >= 8000, "the line's silence at the model")
        await turn("the first answer")
        # (A loaded host can stall the stream for 0.3 s mid-answer: wait for all of it.)
        await until(lambda: caller.heard_secs() >= 2.8, "the whole first answer")
        assert sounds_like(bytes(caller.heard), ANSWER)
        assert fake.audio_bytes_in > 0 and not reseeds

        # 2. A tool call: the handler runs, its result goes back, the answer is made from it.
        fake.tool_calls.append(("lookup_order", {"order_id": "A17"}))
        heard = len(caller.heard)
        await turn("the answer after the tool call")
        assert fake.responses == 3
        assert sounds_like(
            bytes(caller.heard[heard:]), "your order a17 is shipped, anything else i can do for you today"
        )
        outputs = [json.loads(out) for _, out in fake.tool_outputs()]
        assert outputs == [{"order_id": "A17", "status": "shipped", "by": "lookup_order handler"}]
        await until(lambda: len(reseeds) == 1, "the first reseed")

        # 3. A barge-in: the caller talks over the answer; Twilio's buffer is cleared.
        mark = len(caller.arrivals)
        caller.say()
        await until(lambda: len(caller.arrivals) >= mark + 5, "100 ms of the third answer")
        heard_before, clears_before, cuts_before = (
            len(caller.arrivals),
            len(caller.clears),
            len(fake.truncates),
        )
        playing = fake.item_ids[-1]
        caller.say(1.0)  # over the local barge-in rule's 0.5 s minimum
        await until(lambda: len(caller.clears) > clears_before, "Twilio's clear")
        cleared = caller.clears[clears_before]
        await until(lambda: 0 < caller.talking_until < caller.loop.time(), "the end of the barge-in")
        late = [t for t in caller.arrivals[heard_before:] if cleared < t < caller.talking_until]
        assert late == [], f"{len(late)} bot media messages after the clear"
        assert len(caller.arrivals) - heard_before < 10  # the answer was cut (it is over 80 messages long)
        truncate = fake.truncates[cuts_before]  # the model's history cut to what was heard
        assert truncate["item_id"] == playing and 0 < truncate["audio_end_ms"] < 1000, truncate
        await answered(len(caller.arrivals), "the answer to the barge-in")
        assert fake.responses == 5

        # 4. One more turn: the second reseed.
        await turn("the last answer")
        assert fake.responses == 6
        await until(
            lambda: len(reseeds) == 2,
            f"the second reseed ({relay.turns_since_reseed} turns since the "
            f"first, {fake.responses} responses, {len(fake.connections)} sessions)",
        )
        await until(lambda: caller.quiet_for(0.3), "the end of the call's audio")

        # Each reseed happened while the caller heard a reply, without a gap in that audio.
        arrivals = caller.arrivals
        for at, report in reseeds:
            start, end = at - report.latency_ms / 1000, at
            window = [t for t in arrivals if start - 0.3 <= t <= end + 0.3]
            assert window and window[0] < start and window[-1] > end, (
                f"the reply did not span the reseed at {start:.3f}-{end:.3f}: {window[:1]} … {window[-1:]}"
            )
            for a, b in zip(window, window[1:], strict=False):
                host = watch.descheduled(a, b)
                assert b - a - host <= MAX_GAP, (
                    f"a {1000 * (b - a):.0f} ms gap in the bot audio at {a:.3f} (reseed {start:.3f}-{end:.3f}, "
                    f"{1000 * host:.0f} ms of it with the process not running)"
                )
        # A fresh session per reseed, seeded with the digest (the tool's answer in it).
        assert len(fake.connections) == 3
        digests = [
            [e for e in c.events if e.get("type") == "session.update"][0]["session"]["instructions"]
            for c in fake.connections[1:]
        ]
        assert all(
            d.startswith("You are the Northwind Energy line. Be brief.\n\n" + DIGEST_START) for d in digests
        )
        assert "assistant: your order a17 is shipped" in digests[0]
        assert digests[1].count(DIGEST_START) == 1  # digests never stack
        # The second reseed folded the older turns through the LLM summarizer (one request).
        assert len(summarizer.summaries) == 1
        assert "Summary of earlier conversation: Agent: your order a17 is shipped" in digests[1]
        assert [r.reason for _, r in reseeds] == ["turns", "turns"]
        await ws.close()
    finally:
        for t in tasks:
            t.cancel()
        await client.close()
        await fake.close()
        await summarizer.close()
        await close_http_sessions()
