"""Provider faults through the fault-injecting proxy (issue 19, item 4).

Two cascaded agent calls run at once on one loop: Deepgram STT → user aggregator → OpenAI
LLM → Cartesia TTS → the caller's output, every service a fallback of two providers on the
local fakes (:mod:`flowcat.testing.fakes`). Call A's first provider of one leg (STT, LLM or
TTS) goes through a :class:`~flowcat.testing.FaultProxy` armed with one fault; call B's
providers are the same fakes without the proxy. For each fault on each leg:

* call A's caller hears the whole reply (from the first or the second provider), or the
  part already spoken and then the configured fallback line;
* the caller never waits longer than ``SILENCE`` between the end of their speech and the
  reply's first audio, nor between two pieces of the reply (measured on the audio the
  output wrote);
* call B hears its whole reply within the same bound;
* both calls leave no task and no reference cycle (:func:`assert_call_leaves_nothing`).

Real sockets on 127.0.0.1, so real time: every wait is an event or a bounded poll.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _helpers import self_signed_cert
from flowcat.agent import LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    BotStoppedSpeakingFrame,
    InputAudioRawFrame,
    LLMContext,
    StartFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection
from flowcat.services import (
    FallbackLLMService,
    FallbackPolicy,
    FallbackSTTService,
    FallbackTTSService,
    _http,
    close_http_sessions,
)
from flowcat.services.llm import OpenAILLMService
from flowcat.services.stt import DeepgramSTTService
from flowcat.services.tts import CartesiaTTSService
from flowcat.testing import CaptureProcessor, Fault, FaultProxy, assert_call_leaves_nothing
from flowcat.testing.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI, decode_tones, synthesize_tones
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies
from test_transport_support import Harness, RecordingOutput

# Timing-sensitive (the caller never waits over SILENCE, 2 s, with 0.5 s attempt bounds): .ci/run runs it alone,
# after the parallel run.
pytestmark = [pytest.mark.serial, pytest.mark.usefixtures("no_outside_connections")]

RATE = 16000
CHAR_MS = 5
ATTEMPT = 0.5  # a provider's bound to its first output before the request moves on
SILENCE = 2.0  # the longest the caller may wait for the bot (end of speech to reply, or within it)
BOUND = 20.0
LINE = "Sorry, one moment."
AFTER_FIRST_WORDS = 400  # bytes of the LLM's SSE body: its first words, not all of them
REPLY_A, REPLY_B = "Reply from A.", "Reply from B."
HEARD_A, HEARD_B = "hello from a", "hello from b"
CALL_MODULES = tuple(f"flowcat.{m}" for m in ("frames", "runtime", "services", "agent", "transports"))

LEGS = ("stt", "llm", "tts")
FAULTS = (
    Fault.STATUS,
    Fault.RATE_LIMIT,
    Fault.DISCONNECT,
    Fault.RESET,
    Fault.STALL,
    Fault.TRICKLE,
    Fault.GARBAGE,
)


@dataclass
class Fakes:
    dg_a: FakeDeepgram
    dg_b: FakeDeepgram
    oa_a: FakeOpenAI
    oa_b: FakeOpenAI
    ca_a: FakeCartesia
    ca_b: FakeCartesia
    proxies: dict[str, FaultProxy] = field(default_factory=dict)


@dataclass
class Call:
    harness: Harness
    out: RecordingOutput
    probe: CaptureProcessor
    context: LLMContext


def speech(ms: int) -> list[InputAudioRawFrame]:
    pcm = synthesize_tones("a" * (ms // 20), RATE, 20)
    step = RATE * 2 * 20 // 1000
    return [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=RATE) for i in range(0, len(pcm), step)]


def build_call(f: Fakes, *, via_proxy: bool) -> Call:
    def first(leg: str, fake: Any) -> str:
        return f.proxies[leg].url if via_proxy else fake.url

    policy = FallbackPolicy(attempt_timeout_secs=ATTEMPT, cooldown_secs=60)
    stt = FallbackSTTService(
        [
            DeepgramSTTService(
                base_url=first("stt", f.dg_a),
                api_key=f.dg_a.api_key,
                sample_rate=RATE,
                name="stt-a",
                reconnect_timeout_secs=ATTEMPT,
            ),
            DeepgramSTTService(base_url=f.dg_b.url, api_key=f.dg_b.api_key, sample_rate=RATE, name="stt-b"),
        ],
        name="stt",
        audio_passthrough=False,
        policy=policy,
        final_timeout_secs=ATTEMPT,
    )
    llm = FallbackLLMService(
        [
            OpenAILLMService(
                base_url=f"{first('llm', f.oa_a)}/v1", api_key=f.oa_a.api_key, model="m-a", name="llm-a"
            ),
            OpenAILLMService(base_url=f"{f.oa_b.url}/v1", api_key=f.oa_b.api_key, model="m-b", name="llm-b"),
        ],
        name="llm",
        policy=policy,
        request_timeout_secs=SILENCE * 0.75,
        chunk_timeout_secs=ATTEMPT * 2,
        fallback_text=LINE,
    )
    tts = FallbackTTSService(
        [
            CartesiaTTSService(
                base_url=first("tts", f.ca_a),
                api_key=f.ca_a.api_key,
                voice_id="v",
                sample_rate=RATE,
                name="tts-a",
            ),
            CartesiaTTSService(
                base_url=f.ca_b.url, api_key=f.ca_b.api_key, voice_id="v", sample_rate=RATE, name="tts-b"
            ),
        ],
        name="tts",
        policy=policy,
    )
    ctx = LLMContext([{"role": "system", "content": "Be brief."}])
    pair = LLMContextAggregatorPair(
        ctx,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.05)])
        ),
    )
    out = RecordingOutput()
    probe = CaptureProcessor(FrameDirection.DOWNSTREAM, [StartFrame, InputAudioRawFrame], name="probe")
    h = Harness([stt, pair.user(), llm, tts, out, probe, pair.assistant()])
    return Call(h, out, probe, ctx)


async def one_turn(call: Call) -> dict[str, Any]:
    """The caller speaks, then the line carries silence (a phone line never stops sending
    audio) until the bot's reply ends; returns what the caller heard and how long they
    waited at most."""
    h = call.harness
    silence = InputAudioRawFrame(audio=bytes(RATE * 2 * 20 // 1000), sample_rate=RATE)
    async with h:
        await h.task.queue_frame(VADUserStartedSpeakingFrame())
        for fr in speech(400):
            await h.task.queue_frame(fr)
            await asyncio.sleep(0.002)
        await h.task.queue_frame(VADUserStoppedSpeakingFrame())
        spoke = asyncio.get_running_loop().time()
        deadline = time.monotonic() + BOUND
        while not any(isinstance(fr, BotStoppedSpeakingFrame) for fr in call.probe.frames):
            assert time.monotonic() < deadline, "timed out waiting for the end of the reply"
            await h.task.queue_frame(silence)
            await asyncio.sleep(0.02)  # the line's packet clock
        await h.task.stop_when_done()
        await h.finish(BOUND)
    audio = call.out.audio()
    times = [spoke, *(t for t, _ in audio)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {
        "heard": decode_tones(b"".join(p for _, p in audio), RATE, CHAR_MS).strip(),
        "longest_wait": max(gaps) if gaps else float("inf"),
        "said": [m["content"] for m in call.context.messages if m.get("role") == "user"],
    }


async def two_calls(f: Fakes) -> dict[str, Any]:
    a, b = build_call(f, via_proxy=True), build_call(f, via_proxy=False)
    got_a, got_b = await asyncio.gather(one_turn(a), one_turn(b))
    await close_http_sessions()
    return {"a": got_a, "b": got_b}


def arm(proxy: FaultProxy, fault: Fault, leg: str) -> None:
    # mid-stream faults strike after the first piece of the answer went through (for the STT
    # leg: at the provider's first message, the transcript of the caller's speech)
    after = {"stt": 0, "llm": 200, "tts": 600}[leg]
    proxy.arm(fault, count=-1, after_bytes=after, trickle_bytes=64, trickle_secs=0.01, retry_after=1)


def expected(leg: str, fault: Fault) -> set[str]:
    """What call A's caller may hear (tones decode lower case)."""
    reply_b, reply_a, line = REPLY_B.lower(), REPLY_A.lower(), LINE.lower()
    if fault is Fault.TRICKLE:
        return {reply_a}  # slow, but all of it and in time
    if leg == "llm":
        return (
            {reply_b}
            | {reply_a[:n] + line for n in range(len(reply_a))}
            | {reply_a[:n] + " " + line for n in range(len(reply_a))}
        )
    return {reply_a}  # the STT or TTS leg fails over: the same reply, spoken by the second provider


def run_matrix(leg: str, fault: Fault, tls: ssl.SSLContext | None = None) -> tuple[dict[str, Any], int]:
    async def main() -> tuple[dict[str, Any], int]:
        async with (
            FakeDeepgram([HEARD_A]) as dg_a,
            FakeDeepgram([HEARD_B]) as dg_b,
            FakeOpenAI([REPLY_A], api_key="key-a") as oa_a,
            FakeOpenAI([REPLY_B], api_key="key-b") as oa_b,
            FakeCartesia(char_ms=CHAR_MS) as ca_a,
            FakeCartesia(char_ms=CHAR_MS) as ca_b,
        ):
            f = Fakes(dg_a, dg_b, oa_a, oa_b, ca_a, ca_b)
            for leg_name, fake in (("stt", dg_a), ("llm", oa_a), ("tts", ca_a)):
                f.proxies[leg_name] = FaultProxy(fake.url, tls=tls)
                await f.proxies[leg_name].start()
            try:
                arm(f.proxies[leg], fault, leg)
                got = await assert_call_leaves_nothing(lambda: two_calls(f), modules=CALL_MODULES)
                return got, f.proxies[leg].injected[fault]
            finally:
                for p in f.proxies.values():
                    await p.close()

    return asyncio.run(main())


def check_matrix(leg: str, fault: Fault, got: dict[str, Any], injected: int) -> None:
    a, b = got["a"], got["b"]
    print(
        leg,
        fault.value,
        "A heard",
        repr(a["heard"]),
        "waited at most",
        round(a["longest_wait"], 3),
        "| B waited at most",
        round(b["longest_wait"], 3),
    )
    assert injected >= 1
    assert a["said"] in ([HEARD_A], [HEARD_B]), a  # the caller's words reached the LLM
    assert b["said"] == [HEARD_A], b
    assert a["heard"] in expected(leg, fault), a["heard"]
    assert a["longest_wait"] < SILENCE, a
    assert b["heard"] == REPLY_A.lower(), b
    assert b["longest_wait"] < SILENCE, b


@pytest.mark.parametrize("fault", FAULTS, ids=[x.value for x in FAULTS])
@pytest.mark.parametrize("leg", LEGS)
def test_a_provider_fault_is_survived_and_the_other_call_is_unaffected(leg: str, fault: Fault) -> None:
    got, injected = run_matrix(leg, fault)
    check_matrix(leg, fault, got, injected)


@pytest.fixture
def trusted_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1, trusted by the
    services' shared client context (the one :func:`flowcat.services.http_session` uses)."""
    cert_file, key_file = self_signed_cert(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    monkeypatch.setattr(_http, "_ssl_context", ssl.create_default_context(cafile=str(cert_file)))
    return server


@pytest.mark.parametrize("fault", [Fault.DISCONNECT, Fault.RESET], ids=["no-close-notify", "rst"])
@pytest.mark.parametrize("leg", LEGS)
def test_a_tls_connection_dropped_without_close_notify_is_survived(
    leg: str, fault: Fault, trusted_tls: ssl.SSLContext
) -> None:
    got, injected = run_matrix(leg, fault, tls=trusted_tls)
    check_matrix(leg, fault, got, injected)


# ------------------------------------------------------------------ the fallback line


def llm_call(url: str, fallback: str | None, oa: FakeOpenAI, ca: FakeCartesia) -> Call:
    llm = OpenAILLMService(
        base_url=f"{url}/v1",
        api_key=oa.api_key,
        model="m",
        name="llm",
        fallback_text=fallback,
        request_timeout_secs=ATTEMPT,
        chunk_timeout_secs=ATTEMPT,
    )
    tts = CartesiaTTSService(base_url=ca.url, api_key=ca.api_key, voice_id="v", sample_rate=RATE, name="tts")
    ctx = LLMContext([{"role": "system", "content": "Be brief."}])
    pair = LLMContextAggregatorPair(
        ctx,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.05)])
        ),
    )
    out = RecordingOutput()
    probe = CaptureProcessor(FrameDirection.DOWNSTREAM, [StartFrame, InputAudioRawFrame], name="probe")
    return Call(Harness([pair.user(), llm, tts, out, probe, pair.assistant()]), out, probe, ctx)


@pytest.mark.parametrize(
    "fault", [Fault.DISCONNECT, Fault.STALL, Fault.GARBAGE, Fault.STATUS], ids=lambda x: x.value
)
def test_an_llm_that_breaks_after_its_first_words_says_the_fallback_line(fault: Fault) -> None:
    async def turn(call: Call) -> dict[str, Any]:
        h = call.harness
        async with h:
            for fr in (
                VADUserStartedSpeakingFrame(start_secs=0.6),
                TranscriptionFrame(text="Hello.", user_id="u", timestamp=""),
                VADUserStoppedSpeakingFrame(),
            ):
                await h.task.queue_frame(fr)
            spoke = asyncio.get_running_loop().time()
            await h.down.wait_for(BotStoppedSpeakingFrame, BOUND)
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        audio = call.out.audio()
        times = [spoke, *(t for t, _ in audio)]
        return {
            "heard": decode_tones(b"".join(p for _, p in audio), RATE, CHAR_MS).strip(),
            "longest_wait": max(b - a for a, b in zip(times, times[1:], strict=False)),
        }

    async def main() -> dict[str, Any]:
        async with (
            FakeOpenAI(["Reply from A, a long one."], api_key="key-a", inter_token=0.01) as oa,
            FakeCartesia(char_ms=CHAR_MS) as ca,
            FaultProxy(oa.url) as proxy,
        ):
            proxy.arm(fault, count=-1, after_bytes=AFTER_FIRST_WORDS)
            return await assert_call_leaves_nothing(
                lambda: turn(llm_call(proxy.url, LINE, oa, ca)), modules=CALL_MODULES
            )

    got = asyncio.run(main())
    print(fault.value, got)
    reply, line = "reply from a, a long one.", LINE.lower()
    said, _, rest = got["heard"].partition(line)
    assert rest == "" and got["heard"].endswith(line), got
    if fault is Fault.STATUS:  # nothing came: the line alone
        assert said == "", got
    else:  # the words that came, then the line
        assert said and reply.startswith(said.rstrip()) and said.rstrip() != reply, got
    assert got["longest_wait"] < SILENCE, got
