"""Issue 13's acceptance test: a cascaded agent on the vendor fakes holds a 4-turn conversation.

    capture-up → DeepgramSTTService → user aggregator → OpenAILLMService (+ a local tool and MCP
    tools over stdio) → CartesiaTTSService → output transport → assistant aggregator → capture-down

against :class:`FakeDeepgram`, :class:`FakeOpenAI` and :class:`FakeCartesia` on 127.0.0.1 and
the MCP SDK server ``tests/fixtures/mcp_server.py``. The user's speech is injected as VAD frames
around a few loud audio frames (the Deepgram fake answers the Finalize sent at the end of speech
with the next scripted transcript), so the test is deterministic without a VAD model.

Turn 1: a plain question, spoken reply. Turn 2: a local tool call, its result, a spoken answer.
Turn 3: an MCP tool call (``weather``), a spoken answer the user barges into after some of it
was played. Turn 4: a last question and reply. Asserted: the key frame sequence, the final
context (the barged reply cut to what was played), what the fakes received (the tool results in
the LLM requests; a cancel of the barged Cartesia context), what the output played (decoded from
its tones: nothing of the barged reply after the barge-in), no outside connection, nothing left.
A variant barges in while an MCP tool call is in flight: it is cancelled on the server and its
result never reaches the context, nor runs the LLM later.

Real sockets, so real time: every wait is an event or a bounded poll (``BOUND``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _helpers import require
from flowcat import FrameDirection
from flowcat.agent import LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    StartFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.services import FunctionCallParams, close_http_sessions
from flowcat.services.llm import OpenAILLMService
from flowcat.services.stt import DeepgramSTTService
from flowcat.services.tts import CartesiaTTSService
from flowcat.testing import CaptureProcessor, assert_call_leaves_nothing
from flowcat.testing.fakes import (
    FakeCartesia,
    FakeDeepgram,
    FakeOpenAI,
    Reply,
    ToolCall,
    decode_tones,
    synthesize_tones,
)
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies
from test_transport_support import Harness, RecordingOutput

mcp = require("mcp")
from flowcat.services.mcp import MCPClient  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_outside_connections")

RATE = 16000
CHAR_MS = 20
BOUND = 15.0
SERVER = Path(__file__).parent / "fixtures" / "mcp_server.py"
# What the call is made of (the fakes and the test's capture, on the far side, are not counted).
CALL_MODULES = tuple(f"flowcat.{m}" for m in ("frames", "runtime", "audio", "turns", "transports", "services",
                                              "agent"))
SYSTEM = {"role": "system", "content": "You are a helpful voice agent."}
KEY_FRAMES = (
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    LLMFullResponseEndFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    FunctionCallCancelFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds, bounded by ``BOUND``."""
    deadline = time.monotonic() + BOUND
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def speech(ms: int) -> list[InputAudioRawFrame]:
    """``ms`` of loud audio (a 300 Hz tone) in 20 ms frames: the Deepgram fake hears speech."""
    pcm = synthesize_tones("a" * (ms // 20), RATE, 20)
    step = RATE * 2 * 20 // 1000
    return [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=RATE) for i in range(0, len(pcm), step)]


class Fakes:
    """The three vendor fakes (test infrastructure: started outside the measured call)."""

    def __init__(self, utterances: list[str], replies: list[Reply | str]) -> None:
        self.deepgram = FakeDeepgram(utterances, cycle=False)
        self.openai = FakeOpenAI(replies)
        # 40 ms of audio every 30 ms: ahead of playback, yet still generating when the user barges in.
        self.cartesia = FakeCartesia(char_ms=CHAR_MS, chunk_ms=40, chunk_interval=0.03)

    async def __aenter__(self) -> Fakes:
        for fake in (self.deepgram, self.openai, self.cartesia):
            await fake.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for fake in (self.deepgram, self.openai, self.cartesia):
            await fake.close()


class Agent:
    """The MCP client and a running cascaded pipeline on the fakes, with the user's side."""

    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes
        self.ran: list[str] = []

    async def start(self) -> None:
        f = self.fakes
        self.mcp = MCPClient(mcp.StdioServerParameters(command=sys.executable, args=[str(SERVER), "stdio"]),
                             tools_filter=["weather", "slow", "stats"])
        self.llm = OpenAILLMService(base_url=f"{f.openai.url}/v1", api_key=f.openai.api_key, model="gpt-4o")
        ran = self.ran

        async def get_time(params: FunctionCallParams) -> None:
            ran.append("get_time")
            await params.result_callback({"time": "noon"})

        self.llm.register_function("get_time", get_time)
        tools = await self.mcp.register_tools(self.llm)
        self.context = LLMContext([dict(SYSTEM)], tools=tools)
        self.pair = LLMContextAggregatorPair(
            self.context,
            user_params=LLMUserAggregatorParams(
                user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.1)])
            ),
        )
        self.stt = DeepgramSTTService(base_url=f.deepgram.url, api_key=f.deepgram.api_key, sample_rate=RATE)
        self.tts = CartesiaTTSService(base_url=f.cartesia.url, api_key=f.cartesia.api_key,
                                      voice_id="voice-1", sample_rate=RATE)
        self.out = RecordingOutput()
        # What reaches the assistant half (it consumes the LLM/TTS/tool frames it writes down).
        self.probe = CaptureProcessor(FrameDirection.DOWNSTREAM, [StartFrame, InputAudioRawFrame], name="probe")
        self.h = Harness([self.stt, self.pair.user(), self.llm, self.tts, self.out, self.probe,
                          self.pair.assistant()])
        await self.h.__aenter__()

    async def stop(self) -> None:
        await self.h.task.queue_frame(EndFrame())
        await self.h.finish(BOUND)
        await self.h.__aexit__()
        await self.mcp.close()

    # ----------------------------------------------------------------- the user

    async def say(self) -> None:
        """One utterance: VAD start, 200 ms of speech, VAD stop (the STT then sends Finalize).

        The VAD start says it took 0.6 s of speech to confirm it (``start_secs``), so speech
        over the bot qualifies as a barge-in at once (``InterruptionParams.min_duration``).
        """
        await self.h.task.queue_frame(VADUserStartedSpeakingFrame(start_secs=0.6))
        for f in speech(200):
            await self.h.task.queue_frame(f)
        await self.h.task.queue_frame(VADUserStoppedSpeakingFrame())

    def count(self, kind: type[Frame]) -> int:
        return sum(isinstance(f, kind) for f in self.probe.frames)

    async def turn_done(self, n: int) -> None:
        """The bot finished speaking its ``n``-th reply."""
        await until(lambda: self.count(BotStoppedSpeakingFrame) >= n, f"the end of reply {n}")

    def played(self) -> bytes:
        return b"".join(p for _, p in self.out.audio())

    def key_frames(self) -> list[str]:
        return [type(f).__name__ for f in self.probe.frames if isinstance(f, KEY_FRAMES)]


BARGED = "Sunny and twenty one degrees in Paris today, a perfect afternoon for a long walk by the river."
SCRIPT = [
    "I am fine, thanks.",
    Reply(tool_calls=[ToolCall("get_time", {}, id="call_1")]),
    "It is noon.",
    Reply(tool_calls=[ToolCall("weather", {"city": "Paris"}, id="call_2")]),
    BARGED,
    "Goodbye!",
]


def test_four_turns_with_a_tool_call_an_mcp_call_and_a_barge_in() -> None:
    async def conversation(fakes: Fakes) -> dict[str, Any]:
        agent = Agent(fakes)
        await agent.start()
        try:
            for n in (1, 2):
                await agent.say()
                await agent.turn_done(n)
            base = len(agent.played())
            await agent.say()
            # Barge in once part of the MCP answer was played (0.3 s: 15 characters).
            await until(lambda: len(agent.played()) >= base + int(2 * RATE * 0.3), "part of reply 3 played")
            at_barge = len(agent.played())
            await agent.say()
            await agent.turn_done(4)
        finally:
            await agent.stop()
            # The per-process HTTP pool keeps the OpenAI connection alive for the next call, by
            # design; close it so that the fake's handler of that connection ends too.
            await close_http_sessions()
        got = {
            "keys": agent.key_frames(),
            "messages": [dict(m) for m in agent.context.messages],
            "heard": decode_tones(agent.played(), RATE, CHAR_MS),
            "at_barge": at_barge,
            "played": agent.played(),
            "ran": list(agent.ran),
        }
        agent.__dict__.clear()  # the test's own references, before the leftovers are counted
        return got

    async def main() -> tuple[dict[str, Any], Fakes]:
        async with Fakes(["how are you", "what time is it", "weather in paris", "thanks bye"], SCRIPT) as fakes:
            # The call's objects (the fakes, on the far side of the wire, are not counted).
            got = await assert_call_leaves_nothing(lambda: conversation(fakes), modules=CALL_MODULES)
        return got, fakes

    got, fakes = asyncio.run(main())

    turn = ["UserStartedSpeakingFrame", "InterruptionFrame", "UserStoppedSpeakingFrame"]
    spoken = ["LLMFullResponseStartFrame", "TTSStartedFrame", "TTSStoppedFrame", "LLMFullResponseEndFrame"]
    tool = ["LLMFullResponseStartFrame", "LLMFullResponseEndFrame", "FunctionCallInProgressFrame",
            "FunctionCallResultFrame"]
    assert got["keys"] == [
        *turn, *spoken,  # 1: a plain reply
        *turn, *tool, *spoken,  # 2: the local tool, then the answer
        *turn, *tool, "LLMFullResponseStartFrame", "TTSStartedFrame",  # 3: MCP tool, answer cut...
        *turn, *spoken,  # 4: ...by the user's turn; the last reply
    ]

    # What was played, decoded from the tones: reply 3 stops where the user barged in, and
    # nothing of it comes after (no stale audio, not even the chunks in flight at the cancel).
    first, second, last = "i am fine, thanks.", "it is noon.", "goodbye!"
    heard = got["heard"]
    assert heard.startswith(first + second) and heard.endswith(last), heard
    cut = heard[len(first + second) : -len(last)]
    barged_at = got["at_barge"] // (2 * RATE * CHAR_MS // 1000) - len(first + second)  # characters
    assert BARGED.lower().startswith(cut), cut
    assert 15 <= barged_at <= len(cut) <= barged_at + 25 < len(BARGED), (cut, barged_at)

    # The context: every turn, both tool calls with their results, reply 3 as far as it was heard.
    heard_words = [w for i, w in enumerate(BARGED.split(" ")) if len(" ".join(BARGED.split(" ")[:i])) < len(cut)]
    assert got["messages"] == [
        SYSTEM,
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "I am fine, thanks."},
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "content": '{"time": "noon"}', "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is noon."},
        {"role": "user", "content": "weather in paris"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": '"Sunny, 21 degrees in Paris"', "tool_call_id": "call_2"},
        {"role": "assistant", "content": " ".join(heard_words)},
        {"role": "user", "content": "thanks bye"},
        {"role": "assistant", "content": "Goodbye!"},
    ]
    assert got["ran"] == ["get_time"]

    # What the fakes received. OpenAI: one request per LLM run, each a prefix of the final
    # context (the tool results included), the MCP tools and the local one offered.
    bodies = fakes.openai.bodies
    assert len(bodies) == 6
    assert [b["messages"] for b in bodies] == [got["messages"][:n] for n in (2, 4, 6, 8, 10, 12)]
    assert {t["function"]["name"] for t in bodies[0]["tools"]} >= {"weather", "slow", "stats"}
    # Cartesia: one context per reply, the barged one cancelled (and only that one).
    contexts = list(fakes.cartesia.transcripts)
    assert list(fakes.cartesia.transcripts.values()) == ["I am fine, thanks.", "It is noon.", BARGED, "Goodbye!"]
    assert fakes.cartesia.cancelled == [contexts[2]]
    # Deepgram: one socket, a Finalize at the end of each utterance, every utterance transcribed.
    assert len(fakes.deepgram.received) == 1
    dg = fakes.deepgram.received[0]
    assert dg.of_type("Finalize") == [{"type": "Finalize"}] * 4
    assert [m["channel"]["alternatives"][0]["transcript"] for m in dg.sent if m.get("type") == "Results"] == [
        "how are you", "what time is it", "weather in paris", "thanks bye"]


def test_a_barge_in_during_an_mcp_tool_call_cancels_it_for_good() -> None:
    """The user speaks while the MCP ``slow`` tool runs: the call is cancelled on the server,
    no result reaches the context, the LLM is not run for it, and the user's turn is answered."""

    async def conversation(fakes: Fakes) -> dict[str, Any]:
        agent = Agent(fakes)
        await agent.start()
        try:
            await agent.say()
            await until(lambda: agent.count(FunctionCallInProgressFrame) == 1, "the slow tool call")
            deadline = time.monotonic() + BOUND
            while (await stats(agent.mcp))["slow_started"] != 1:
                assert time.monotonic() < deadline, "the slow tool never started on the server"
                await asyncio.sleep(0.02)
            await agent.say()
            await agent.turn_done(1)
            deadline = time.monotonic() + BOUND
            while (s := await stats(agent.mcp))["slow_cancelled"] != 1:
                assert time.monotonic() < deadline, f"the server never cancelled the slow tool: {s}"
                await asyncio.sleep(0.02)
        finally:
            await agent.stop()
            await close_http_sessions()
        got = {
            "keys": agent.key_frames(),
            "messages": [dict(m) for m in agent.context.messages],
            "heard": decode_tones(agent.played(), RATE, CHAR_MS),
            "stats": s,
        }
        agent.__dict__.clear()
        return got

    async def main() -> tuple[dict[str, Any], Fakes]:
        script = [Reply(tool_calls=[ToolCall("slow", {"seconds": 30}, id="call_1")]), "Sure, what else?"]
        async with Fakes(["check my order", "never mind"], script) as fakes:
            got = await assert_call_leaves_nothing(lambda: conversation(fakes), modules=CALL_MODULES)
        return got, fakes

    got, fakes = asyncio.run(main())
    assert got["keys"] == [
        "UserStartedSpeakingFrame", "InterruptionFrame", "UserStoppedSpeakingFrame",
        "LLMFullResponseStartFrame", "LLMFullResponseEndFrame", "FunctionCallInProgressFrame",
        # the barge-in: the call gets its terminal frame, a cancel, never a result
        "UserStartedSpeakingFrame", "InterruptionFrame", "FunctionCallCancelFrame", "UserStoppedSpeakingFrame",
        "LLMFullResponseStartFrame", "TTSStartedFrame", "TTSStoppedFrame", "LLMFullResponseEndFrame",
    ]
    # Cancelled on the server (notifications/cancelled), never finished.
    assert {k: got["stats"][k] for k in ("slow_started", "slow_cancelled", "slow_finished")} == {
        "slow_started": 1, "slow_cancelled": 1, "slow_finished": 0}
    assert got["messages"] == [
        SYSTEM,
        {"role": "user", "content": "check my order"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "slow", "arguments": '{"seconds": 30}'}}]},
        {"role": "tool", "content": "CANCELLED", "tool_call_id": "call_1"},
        {"role": "user", "content": "never mind"},
        {"role": "assistant", "content": "Sure, what else?"},
    ]
    # The LLM ran for the user's turns only (the cancelled call never ran it), and only the
    # answer to the barge-in was spoken.
    assert [b["messages"] for b in fakes.openai.bodies] == [got["messages"][:2], got["messages"][:5]]
    assert got["heard"] == "sure, what else?"


async def stats(client: MCPClient) -> dict[str, Any]:
    """The MCP fixture server's counters."""
    value = await client.call_tool("stats")
    assert isinstance(value, str), value
    return dict(json.loads(value))
