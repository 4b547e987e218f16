"""Fallback and hedging services against the local vendor fakes (real sockets, so real time:
every wait is an event or a bounded poll).

The acceptance of issue 14 item 4: in a cascaded pipeline (user aggregator → FallbackLLM →
TTS on a fake → output), the first LLM's fake returns 503 from turn 2, the second answers
that turn with the whole context, the caller hears the answer within the deadline, and the
first is used again only after its cool-down. Hedging: a slow first provider is raced by a
second request, which wins; the first's stream is closed (the fake sees the abort) and both
usages are reported. TTS and STT fallbacks, the policy for 400/401, and every provider
failing (one ErrorFrame; the next turn works).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from flowcat.agent import LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    BotStoppedSpeakingFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMUpdateSettingsFrame,
    LLMUsageMetricsData,
    MetricsFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, PipelineParams
from flowcat.services import (
    FallbackLLMService,
    FallbackPolicy,
    FallbackSTTService,
    FallbackTTSService,
    close_http_sessions,
)
from flowcat.services.llm import OpenAILLMService
from flowcat.services.stt import DeepgramSTTService, OpenAISTTService
from flowcat.services.tts import CartesiaTTSService
from flowcat.testing import CaptureProcessor, assert_call_leaves_nothing
from flowcat.testing.fakes import (
    Behaviour,
    FakeCartesia,
    FakeDeepgram,
    FakeOpenAI,
    decode_tones,
    synthesize_tones,
)
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies
from test_transport_support import Harness, RecordingOutput

pytestmark = pytest.mark.usefixtures("no_outside_connections")

RATE = 16000
CHAR_MS = 5
BOUND = 15.0
DEADLINE = 1.5  # the fallback's bound from the context to the first chunk, all providers together
COOL = 1.0
METRICS = PipelineParams(audio_out_sample_rate=RATE, audio_in_sample_rate=RATE, enable_metrics=True,
                         enable_usage_metrics=True)
CALL_MODULES = tuple(f"flowcat.{m}" for m in ("frames", "runtime", "services", "agent", "transports"))


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def openai(fake: FakeOpenAI, name: str, **kw: Any) -> OpenAILLMService:
    return OpenAILLMService(base_url=f"{fake.url}/v1", api_key=fake.api_key, model=f"model-{name}", name=name, **kw)


class Stamp(FrameProcessor):
    """Records when each LLMContextFrame passes (the start of the bot's turn)."""

    def __init__(self) -> None:
        super().__init__(name="stamp")
        self.contexts: list[float] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self.contexts.append(asyncio.get_running_loop().time())
        await self.push_frame(frame, direction)


def user_says(text: str) -> list[Frame]:
    return [VADUserStartedSpeakingFrame(start_secs=0.6), TranscriptionFrame(text=text, user_id="u", timestamp=""),
            VADUserStoppedSpeakingFrame()]


def usage(frames: list[Frame]) -> list[tuple[str, str | None, int, int]]:
    return [(d.processor, d.model, d.value.prompt_tokens, d.value.completion_tokens)
            for f in frames if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]


def errors(h: Harness) -> list[ErrorFrame]:
    return [f for f in h.up.frames if isinstance(f, ErrorFrame)]


# ------------------------------------------------------------------ the acceptance


def test_503_mid_conversation_is_answered_by_the_second_llm_within_the_deadline() -> None:
    async def conversation(a: FakeOpenAI, b: FakeOpenAI, cartesia: FakeCartesia) -> dict[str, Any]:
        llm = FallbackLLMService([openai(a, "llm-a"), openai(b, "llm-b")], name="llm",
                                 policy=FallbackPolicy(cooldown_secs=COOL), request_timeout_secs=DEADLINE)
        switched: list[tuple[str, str, str]] = []

        @llm.event_handler("on_service_switched")
        async def on_switched(_svc: Any, old: Any, new: Any, err: Exception) -> None:
            switched.append((old.name, new.name, type(err).__name__))

        ctx = LLMContext([{"role": "system", "content": "Be brief."}])
        pair = LLMContextAggregatorPair(ctx, user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.05)])))
        tts = CartesiaTTSService(base_url=cartesia.url, api_key=cartesia.api_key, voice_id="v", sample_rate=RATE)
        stamp, out = Stamp(), RecordingOutput()
        probe = CaptureProcessor(FrameDirection.DOWNSTREAM, [StartFrame, InputAudioRawFrame], name="probe")
        h = Harness([pair.user(), stamp, llm, tts, out, probe, pair.assistant()], params=METRICS)
        latencies: list[float] = []
        served: list[tuple[int, int]] = []

        async def turn(n: int, text: str) -> None:
            for f in user_says(text):
                await h.task.queue_frame(f)
            await until(lambda: sum(isinstance(f, BotStoppedSpeakingFrame) for f in probe.frames) >= n,
                        f"the end of reply {n}")
            started = stamp.contexts[n - 1]
            latencies.append(min(t for t, _ in out.audio() if t >= started) - started)
            served.append((a.completed, b.completed))

        async with h:
            await turn(1, "Hello.")
            a.set(Behaviour.STATUS, failures=-1, status=503)
            await turn(2, "Tell me more.")
            a.set(Behaviour.NORMAL, failures=0)  # healthy again, but cooling down
            await turn(3, "And then?")
            cooled = stamp.contexts[1] + COOL
            await asyncio.sleep(max(0.0, cooled - asyncio.get_running_loop().time()) + 0.05)
            await turn(4, "Thanks.")
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        return {"latencies": latencies, "served": served, "switched": switched, "errors": len(errors(h)),
                "usage": usage(probe.frames), "heard": decode_tones(b"".join(p for _, p in out.audio()), RATE,
                                                                     CHAR_MS)}

    async def main() -> tuple[dict[str, Any], list[Any], list[Any]]:
        async with FakeOpenAI(["Hi, I am A.", "A is back."], api_key="key-a") as a, \
                FakeOpenAI(["B here.", "B again."], api_key="key-b") as b, \
                FakeCartesia(char_ms=CHAR_MS) as cartesia:
            got = await assert_call_leaves_nothing(lambda: conversation(a, b, cartesia), modules=CALL_MODULES)
            return got, list(a.bodies), list(b.bodies)

    got, a_bodies, b_bodies = asyncio.run(main())
    # turn 1: A; turn 2: A refused (once, no retry on it), B; turn 3: B (A cooling down); turn 4: A
    assert got["served"] == [(1, 0), (1, 1), (1, 2), (2, 2)]
    assert len(a_bodies) == 3 and len(b_bodies) == 2
    assert got["switched"] == [("llm-a", "llm-b", "ServiceStatusError")]
    assert got["errors"] == 0
    # B answered turn 2 with the whole conversation so far, turn 1 included
    assert b_bodies[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi, I am A."},
        {"role": "user", "content": "Tell me more."},
    ]
    assert b_bodies[0]["model"] == "model-llm-b"
    assert all(lat < DEADLINE for lat in got["latencies"]), got["latencies"]
    print("context to first audio per turn (s):", [round(x, 3) for x in got["latencies"]])
    assert got["heard"].replace(" ", "") == "hi,iama.bhere.bagain.aisback."  # tones decode lower case
    # usage is labelled with the provider that used the tokens
    assert [(p, m) for p, m, _, _ in got["usage"]] == [("llm-a", "model-llm-a"), ("llm-b", "model-llm-b"),
                                                      ("llm-b", "model-llm-b"), ("llm-a", "model-llm-a")]


# ------------------------------------------------------------------ hedging


def test_hedge_starts_a_second_request_which_wins_and_the_first_is_aborted() -> None:
    async def call(a: FakeOpenAI, b: FakeOpenAI) -> dict[str, Any]:
        llm = FallbackLLMService([openai(a, "slow"), openai(b, "fast")], hedge_after_secs=0.3, name="llm")
        hedged: list[float] = []

        @llm.event_handler("on_hedge_started")
        async def on_hedge(_svc: Any, first: Any, second: Any) -> None:
            assert (first.name, second.name) == ("slow", "fast")
            hedged.append(asyncio.get_running_loop().time())

        h = Harness([llm], params=METRICS)
        async with h:
            t0 = asyncio.get_running_loop().time()
            await h.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": "Quick!"}])))
            await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
            first_text = asyncio.get_running_loop().time() - t0
            await asyncio.wait_for(a.aborted.wait(), BOUND)
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        return {"hedge_at": hedged[0] - t0, "first_text": first_text, "hedges": (llm.hedges, llm.hedges_won),
                "text": "".join(f.text for f in h.down.frames if isinstance(f, LLMTextFrame)),
                "usage": usage(h.down.frames), "errors": len(errors(h))}

    async def main() -> tuple[dict[str, Any], int]:
        async with FakeOpenAI(["Too late."], api_key="key-a", ttft=2.0) as a, \
                FakeOpenAI(["Fast answer."], api_key="key-b") as b:
            got = await assert_call_leaves_nothing(lambda: call(a, b), modules=CALL_MODULES)
            return got, a.completed

    got, a_completed = asyncio.run(main())
    assert got["text"] == "Fast answer."
    assert 0.3 <= got["hedge_at"] < 1.0
    assert got["first_text"] < 2.0  # well before the slow provider's first token
    assert got["hedges"] == (1, 1)
    assert a_completed == 0  # the slow stream never finished: it was closed (a.aborted is set)
    assert got["errors"] == 0
    (win_p, win_m, prompt, completion), (lose_p, lose_m, lose_prompt, lose_completion) = got["usage"]
    assert (win_p, win_m) == ("fast", "model-fast") and prompt > 0 and completion > 0
    assert (lose_p, lose_m, lose_prompt, lose_completion) == ("slow", "model-slow", prompt, 0)


def test_hedge_with_one_provider_races_it_against_itself() -> None:
    async def main() -> tuple[str, int, int]:
        async with FakeOpenAI(["Same one."], api_key="key-a") as a:
            a.ttft = 0.6
            llm = FallbackLLMService([openai(a, "only")], hedge_after_secs=0.2)
            h = Harness([llm])
            async with h:
                await h.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": "Hi"}])))
                await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
                await h.task.stop_when_done()
                await h.finish(BOUND)
            await close_http_sessions()
            text = "".join(f.text for f in h.down.frames if isinstance(f, LLMTextFrame))
            return text, a.requests, llm.hedges

    text, requests, hedges = asyncio.run(main())
    assert (text, requests, hedges) == ("Same one.", 2, 1)


# ------------------------------------------------------------------ policy, all failing


async def _one_turn(llm: FallbackLLMService, content: str = "Hi") -> Harness:
    h = Harness([llm])
    async with h:
        await h.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": content}])))
        await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
        await h.task.stop_when_done()
        await h.finish(BOUND)
    return h


def _texts(h: Harness) -> str:
    return "".join(f.text for f in h.down.frames if isinstance(f, LLMTextFrame))


@pytest.mark.parametrize(("policy", "b_requests", "text", "n_errors"), [
    (FallbackPolicy(), 0, "", 1),
    (FallbackPolicy(fail_over_on_client_error=True), 1, "From B.", 0),
], ids=["reported", "failed-over-by-policy"])
async def test_a_400_is_not_failed_over_unless_the_policy_says_so(
    policy: FallbackPolicy, b_requests: int, text: str, n_errors: int
) -> None:
    async with FakeOpenAI(["From A."], api_key="key-a") as a, FakeOpenAI(["From B."], api_key="key-b") as b:
        a.set(Behaviour.STATUS, failures=-1, status=400)
        h = await _one_turn(FallbackLLMService([openai(a, "a"), openai(b, "b")], policy=policy))
        await close_http_sessions()
        assert (b.requests, _texts(h), len(errors(h))) == (b_requests, text, n_errors)
        if n_errors:
            assert "status 400" in errors(h)[0].error


@pytest.mark.parametrize(("on_auth", "text"), [(True, "From B."), (False, "")])
async def test_a_wrong_key_fails_over_by_default(on_auth: bool, text: str) -> None:
    async with FakeOpenAI(["From A."], api_key="key-a") as a, FakeOpenAI(["From B."], api_key="key-b") as b:
        wrong = OpenAILLMService(base_url=f"{a.url}/v1", api_key="not-the-key", name="a")
        llm = FallbackLLMService([wrong, openai(b, "b")], policy=FallbackPolicy(fail_over_on_auth=on_auth))
        h = await _one_turn(llm)
        await close_http_sessions()
        assert _texts(h) == text
        assert a.auth_failures == 1
        assert not any("not-the-key" in e.error for e in errors(h))


async def test_every_provider_failing_is_one_error_and_the_next_turn_works() -> None:
    async with FakeOpenAI(["From A."], api_key="key-a") as a, FakeOpenAI(["From B."], api_key="key-b") as b:
        a.set(Behaviour.STATUS, failures=1, status=503)
        b.set(Behaviour.STATUS, failures=1, status=502)
        llm = FallbackLLMService([openai(a, "a"), openai(b, "b")], policy=FallbackPolicy(cooldown_secs=60))
        h = Harness([llm])
        async with h:
            await h.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": "One"}])))
            await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
            assert [type(f) for f in h.down.frames] == [LLMFullResponseStartFrame, LLMFullResponseEndFrame]
            assert len(errors(h)) == 1 and "status 502" in errors(h)[0].error
            # both cooling down: still tried, in cool-down order (A first), rather than silence
            await h.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": "Two"}])))
            await until(lambda: sum(isinstance(f, LLMFullResponseEndFrame) for f in h.down.frames) == 2, "turn 2")
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        assert _texts(h) == "From A."
        assert (a.requests, b.requests, len(errors(h))) == (2, 1, 1)


# ------------------------------------------------------------------ TTS


def test_tts_fallback_speaks_the_same_text_on_the_second_provider() -> None:
    async def call(a: FakeCartesia, b: FakeCartesia) -> dict[str, Any]:
        tts = FallbackTTSService([
            CartesiaTTSService(base_url=a.url, api_key=a.api_key, voice_id="v", sample_rate=RATE, name="tts-a"),
            CartesiaTTSService(base_url=b.url, api_key=b.api_key, voice_id="v", sample_rate=RATE, name="tts-b"),
        ], name="tts")
        switched: list[str] = []

        @tts.event_handler("on_service_switched")
        async def on_switched(_svc: Any, old: Any, new: Any, err: Exception) -> None:
            switched.append(f"{old.name}->{new.name}")

        h = Harness([tts])
        async with h:
            await h.task.queue_frame(TTSSpeakFrame("Hello there."))
            await h.down.wait_for(TTSStoppedFrame, BOUND)
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        frames = [f for f in h.down.frames if not isinstance(f, MetricsFrame)]
        kinds = [type(f).__name__ for f in frames if not isinstance(f, EndFrame)]
        audio = b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))
        return {"kinds": kinds, "audio": audio, "switched": switched, "errors": len(errors(h)),
                "ctx": {f.context_id for f in frames if isinstance(f, (TTSStartedFrame, TTSAudioRawFrame,
                                                                      TTSTextFrame, TTSStoppedFrame))}}

    async def main() -> tuple[dict[str, Any], int, dict[str, str]]:
        async with FakeCartesia(char_ms=CHAR_MS) as a, FakeCartesia(char_ms=CHAR_MS) as b:
            a.set(Behaviour.STATUS, failures=-1, status=503)
            got = await assert_call_leaves_nothing(lambda: call(a, b), modules=CALL_MODULES)
            return got, a.requests, dict(b.transcripts)

    got, a_requests, b_transcripts = asyncio.run(main())
    assert a_requests == 1 and got["switched"] == ["tts-a->tts-b"] and got["errors"] == 0
    kinds = got["kinds"]
    assert kinds[:2] == ["AggregatedTextFrame", "TTSStartedFrame"] and kinds[-1] == "TTSStoppedFrame"
    middle = set(kinds[2:-1])
    assert middle <= {"TTSAudioRawFrame", "TTSTextFrame"} and "TTSAudioRawFrame" in middle
    assert kinds.count("TTSStartedFrame") == 1 and kinds.count("TTSStoppedFrame") == 1
    assert len(got["ctx"]) == 1
    assert decode_tones(got["audio"], RATE, CHAR_MS) == "hello there."  # B spoke it all (tones: lower case)
    assert "Hello there." in "".join(b_transcripts.values())


def test_tts_failure_mid_sentence_is_not_replayed_and_the_next_sentence_moves_on() -> None:
    async def call(a: FakeCartesia, b: FakeCartesia) -> dict[str, Any]:
        tts = FallbackTTSService([
            CartesiaTTSService(base_url=a.url, api_key=a.api_key, voice_id="v", sample_rate=RATE, name="tts-a"),
            CartesiaTTSService(base_url=b.url, api_key=b.api_key, voice_id="v", sample_rate=RATE, name="tts-b"),
        ], name="tts")
        switched: list[str] = []

        @tts.event_handler("on_service_switched")
        async def on_switched(_svc: Any, old: Any, new: Any, err: Exception) -> None:
            switched.append(f"{old.name}->{new.name}")

        h = Harness([tts])
        async with h:
            for f in (LLMFullResponseStartFrame(), LLMTextFrame("First sentence here. "),
                      LLMTextFrame("Second one."), LLMFullResponseEndFrame()):
                await h.task.queue_frame(f)
            await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        frames = h.down.frames
        return {"started": sum(isinstance(f, TTSStartedFrame) for f in frames),
                "stopped": sum(isinstance(f, TTSStoppedFrame) for f in frames),
                "audio": b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)),
                "errors": [e.error for e in errors(h)], "switched": switched}

    async def main() -> dict[str, Any]:
        async with FakeCartesia(char_ms=CHAR_MS, chunk_ms=20) as a, FakeCartesia(char_ms=CHAR_MS) as b:
            a.set(Behaviour.DISCONNECT, failures=1)  # the first context: one chunk, then the socket drops
            # (the error frame carries the exception without its traceback: no cycle through it)
            return await assert_call_leaves_nothing(lambda: call(a, b), modules=CALL_MODULES)

    got = asyncio.run(main())
    heard = decode_tones(got["audio"], RATE, CHAR_MS)
    first, second = heard.split("second")  # what A spoke of sentence 1 ("firs"), then B's sentence 2
    assert 0 < len(first) < len("first sentence here.") and "first sentence here.".startswith(first)
    assert second == " one."  # sentence 1 was not replayed
    assert (got["started"], got["stopped"]) == (1, 1)
    assert len(got["errors"]) == 1 and "synthesis failed" in got["errors"][0]
    assert got["switched"] == ["tts-a->tts-b"]


@pytest.mark.serial  # timing-sensitive (failover within 2 s): .ci/run runs it alone, after the parallel run
async def test_a_hung_provider_fails_over_after_the_attempt_timeout() -> None:
    async with FakeOpenAI(["From A."], api_key="key-a") as a, FakeOpenAI(["From B."], api_key="key-b") as b:
        a.set(Behaviour.HANG, failures=-1)
        llm = FallbackLLMService([openai(a, "a"), openai(b, "b")], request_timeout_secs=5.0,
                                 policy=FallbackPolicy(attempt_timeout_secs=0.3))
        t0 = asyncio.get_running_loop().time()
        h = await _one_turn(llm)
        took = asyncio.get_running_loop().time() - t0
        await asyncio.wait_for(a.aborted.wait(), BOUND)  # its request was closed
        await close_http_sessions()
        assert (_texts(h), len(errors(h)), llm.switches) == ("From B.", 0, 1)
        assert 0.3 <= took < 2.0


# ------------------------------------------------------------------ STT


def speech(ms: int) -> list[InputAudioRawFrame]:
    pcm = synthesize_tones("a" * (ms // 20), RATE, 20)
    step = RATE * 2 * 20 // 1000
    return [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=RATE) for i in range(0, len(pcm), step)]


def test_stt_fallback_moves_the_stream_to_the_second_provider_when_the_first_drops() -> None:
    async def call(a: FakeDeepgram, b: FakeDeepgram) -> dict[str, Any]:
        stt = FallbackSTTService([
            DeepgramSTTService(base_url=a.url, api_key=a.api_key, sample_rate=RATE, name="stt-a"),
            DeepgramSTTService(base_url=b.url, api_key=b.api_key, sample_rate=RATE, name="stt-b"),
        ], name="stt", audio_passthrough=False)
        switched: list[str] = []

        @stt.event_handler("on_service_switched")
        async def on_switched(_svc: Any, old: Any, new: Any, err: Exception) -> None:
            switched.append(f"{old.name}->{new.name}")

        h = Harness([stt])
        async with h:
            for n in (1, 2):
                await h.task.queue_frame(VADUserStartedSpeakingFrame())
                for f in speech(300):
                    await h.task.queue_frame(f)
                    await asyncio.sleep(0.002)
                await h.task.queue_frame(VADUserStoppedSpeakingFrame())
                if n == 1:  # the first provider drops: the switch happens with the next audio
                    await until(lambda: a.received[0].closed_by is not None, "the drop")
            await until(lambda: sum(isinstance(f, TranscriptionFrame) for f in h.down.frames) >= 2, "transcripts")
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        return {"texts": [f.text for f in h.down.frames if isinstance(f, TranscriptionFrame)],
                "switched": switched, "errors": len(errors(h))}

    async def main() -> tuple[dict[str, Any], int, int]:
        async with FakeDeepgram(["lost words"]) as a, FakeDeepgram(["second provider heard this"]) as b:
            a.set(Behaviour.STREAM_ERROR, failures=1)  # the first result: a 1011 close instead
            got = await assert_call_leaves_nothing(lambda: call(a, b), modules=CALL_MODULES)
            return got, sum(r.audio_bytes for r in b.received), 2 * RATE * 300 // 1000

    got, b_audio, one_utterance = asyncio.run(main())
    assert got["switched"] == ["stt-a->stt-b"]
    # the first result went out before the drop; the second utterance was heard by B
    assert got["texts"] == ["lost words", "second provider heard this"]
    assert b_audio >= one_utterance  # the second utterance (and what arrived during the switch) went to B
    assert got["errors"] == 0


def test_fallback_config_errors() -> None:
    from flowcat.errors import ConfigError

    with pytest.raises(ConfigError):
        FallbackLLMService([])
    with pytest.raises(ConfigError):
        FallbackPolicy(failure_threshold=0)
    a = OpenAILLMService(base_url="http://127.0.0.1:1/v1", api_key="k")
    with pytest.raises(ConfigError):
        FallbackLLMService([a, a])
    with pytest.raises(ConfigError):
        FallbackLLMService([a], retry=None)
    with pytest.raises(ConfigError, match="segmented"):
        FallbackSTTService([OpenAISTTService(api_key="k", base_url="http://127.0.0.1:1/v1")])





async def test_settings_reach_every_provider_or_the_one_named() -> None:
    async with FakeOpenAI(["From A."], api_key="key-a") as a, FakeOpenAI(["From B."], api_key="key-b") as b:
        la, lb = openai(a, "a"), openai(b, "b")
        llm = FallbackLLMService([la, lb])
        h = Harness([llm])
        async with h:
            await h.task.queue_frame(LLMUpdateSettingsFrame(settings={"temperature": 0.2}))
            await h.task.queue_frame(LLMUpdateSettingsFrame(settings={"seed": 7}, service=lb))
            await h.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": "Hi"}])))
            await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        assert a.bodies[0]["temperature"] == 0.2 and "seed" not in a.bodies[0]
        assert (getattr(lb.settings, "temperature", None), getattr(lb.settings, "seed", None)) == (0.2, 7)
        assert not any(isinstance(f, LLMUpdateSettingsFrame) for f in h.down.frames)


def test_a_provider_error_frame_keeps_no_call_alive() -> None:
    """A socket drop mid-sentence ends in an ErrorFrame whose exception has no traceback: the
    traceback's frames held the service, and the exception sat in a local of one of them."""

    async def call(a: FakeCartesia) -> list[str]:
        tts = CartesiaTTSService(base_url=a.url, api_key=a.api_key, voice_id="v", sample_rate=RATE, name="tts-a")
        h = Harness([tts])
        async with h:
            for f in (LLMFullResponseStartFrame(), LLMTextFrame("First sentence here."), LLMFullResponseEndFrame()):
                await h.task.queue_frame(f)
            await h.down.wait_for(LLMFullResponseEndFrame, BOUND)
            await h.task.stop_when_done()
            await h.finish(BOUND)
        await close_http_sessions()
        errs = errors(h)
        assert all(e.exception is None or e.exception.__traceback__ is None for e in errs)
        return [e.error for e in errs]

    async def main() -> list[str]:
        async with FakeCartesia(char_ms=CHAR_MS, chunk_ms=20) as a:
            a.set(Behaviour.DISCONNECT, failures=1)
            return await assert_call_leaves_nothing(lambda: call(a), modules=CALL_MODULES)

    got = asyncio.run(main())
    assert len(got) == 1 and "synthesis failed" in got[0]
