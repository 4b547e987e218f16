"""GeminiLiveLLMService: the realtime conformance suite against a local fake of the
``BidiGenerateContent`` WebSocket, and the wire.

Wire tests: the URL (``?key=``; the ``x-goog-api-key`` header by choice), the ``setup`` message
(model, modalities, voice, system instruction, function declarations, activity detection,
transcription, resumption) and nothing sent before ``setupComplete``; the caller's audio as
``realtimeInput.audio`` at 16 kHz; local turns (``activityStart`` / ``activityEnd``); the
``toolResponse`` shape; ``interrupted`` dropping the rest of the turn; ``goAway`` reconnecting
with the last resumption handle and no replay; usage by modality.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from _fake_gemini_live import FakeGeminiLive
from _helpers import conformance_params
from _realtime_run import FAST, WEATHER, RealtimeRun
from flowcat.frames import (
    ErrorFrame,
    FunctionCallCancelFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.services.realtime import GeminiLiveLLMService, GeminiLiveLLMSettings
from flowcat.services.realtime._gemini_wire import _usage
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.conformance._realtime import realtime_output

pytestmark = pytest.mark.usefixtures("no_outside_connections")

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def make_gemini(fake: FakeProvider, **kw: Any) -> GeminiLiveLLMService:
    return GeminiLiveLLMService(url=fake.url + PATH, api_key=fake.api_key, reconnect=FAST,
                                connect_timeout_secs=3.0, **kw)


CONFORMANCE = {
    "realtime:gemini": ConformanceTarget("realtime", FakeGeminiLive, make_gemini),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ------------------------------------------------------------------ wire


async def _fake(**kw: Any) -> FakeGeminiLive:
    fake = FakeGeminiLive(**kw)
    await fake.start()
    return fake


async def test_setup_message_and_key_in_query() -> None:
    fake = await _fake()
    try:
        svc = make_gemini(fake, settings=GeminiLiveLLMSettings(instructions="Be brief.", voice="Kore"))
        async with RealtimeRun(svc) as run:
            await run.until(lambda: fake.connections and fake.connections[0].events, "setup")
            conn = fake.connections[0]
            assert conn.query == {"key": fake.api_key}
            assert "x-goog-api-key" not in conn.headers
            setup = conn.setup
            assert conn.types()[0] == "setup"
            assert setup["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
            assert setup["generationConfig"] == {
                "responseModalities": ["AUDIO"],
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}}
            assert setup["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
            assert "tools" not in setup
            assert setup["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": False}}
            assert setup["inputAudioTranscription"] == {} and setup["outputAudioTranscription"] == {}
            assert setup["sessionResumption"] == {}
            assert "contextWindowCompression" not in setup
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            assert realtime_output(run.down.frames) == fake.expected_text
    finally:
        await fake.close()


async def test_a_rejected_setup_is_reported_and_not_retried() -> None:
    fake = await _fake()
    try:
        svc = make_gemini(fake, settings=GeminiLiveLLMSettings(model="no-such-model"))
        async with RealtimeRun(svc) as run:
            await run.until(lambda: any(isinstance(f, ErrorFrame) for f in run.up.frames), "the error")
            errors = [f for f in run.up.frames if isinstance(f, ErrorFrame)]
            assert "code 1007: models/no-such-model is not found" in errors[0].error, errors[0].error
            assert fake.api_key not in errors[0].error
            assert len(fake.connections) == 1  # 1007 (invalid argument): not retried
            assert not svc.connected
    finally:
        await fake.close()


async def test_key_in_header_and_nothing_before_setup_complete() -> None:
    fake = await _fake(auth="header")
    try:
        svc = make_gemini(fake, auth="header")
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            conn = fake.connections[0]
            assert conn.headers["x-goog-api-key"] == fake.api_key
            assert "key" not in conn.query
            assert fake.auth_failures == 0
            # the setup was the first message and the service waited for setupComplete
            assert conn.types() == ["setup"]
    finally:
        await fake.close()


async def test_audio_goes_up_at_16k_as_realtime_input() -> None:
    fake = await _fake()
    try:
        svc = make_gemini(fake)
        async with RealtimeRun(svc, in_rate=48000) as run:
            await run.until(lambda: svc.connected, "connected")
            for _ in range(10):  # 1 s at 48 kHz
                await run.task.queue_frame(InputAudioRawFrame(b"\x00\x00" * 4800, 48000))
            await run.until(lambda: fake.audio_bytes_in >= 30000, "1 s of audio at 16 kHz")
            await asyncio.sleep(0.05)
            assert fake.connections[0].audio_mime == {"audio/pcm;rate=16000"}
            assert svc.audio_message("QUJD") == \
                '{"realtimeInput":{"audio":{"data":"QUJD","mimeType":"audio/pcm;rate=16000"}}}'
            assert json.loads(svc.audio_message("QUJD"))["realtimeInput"]["audio"]["data"] == "QUJD"
            assert fake.audio_bytes_in <= 32000  # 1 s at 16 kHz, PCM16 (less the resampler's latency)
    finally:
        await fake.close()


async def test_local_turns_send_activity_start_and_end() -> None:
    fake = await _fake()
    try:
        svc = make_gemini(fake, settings=GeminiLiveLLMSettings(server_vad=False))
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            assert fake.connections[0].setup["realtimeInputConfig"] == {
                "automaticActivityDetection": {"disabled": True}}
            await run.task.queue_frame(UserStartedSpeakingFrame())
            await run.speak()
            await run.task.queue_frame(UserStoppedSpeakingFrame())
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            types = [t for t in fake.connections[0].types() if t != "realtimeInput"] + []
            inputs = [next(iter(e["realtimeInput"])) for e in fake.connections[0].events if "realtimeInput" in e]
            assert inputs[0] == "activityStart" and inputs[-1] == "activityEnd", inputs
            assert "audio" in inputs[1:-1]
            assert types == ["setup"]
            assert realtime_output(run.down.frames) == fake.expected_text
            heard = [f.text for f in run.up.frames if isinstance(f, TranscriptionFrame)]
            assert heard == [fake.user_text]
    finally:
        await fake.close()


async def test_tool_response_shape_and_no_second_request() -> None:
    fake = await _fake()
    fake.tool_calls.append(("get_weather", {"city": "Paris"}))
    try:
        svc = make_gemini(fake)
        seen: list[Any] = []

        async def get_weather(params: Any) -> None:
            seen.append(params.arguments)
            await params.result_callback("sunny")

        svc.register_function("get_weather", get_weather)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await run.until(lambda: realtime_output(run.down.frames) == fake.expected_text, "the answer")
            assert seen == [{"city": "Paris"}]
            responses = [e for e in fake.connections[0].events if "toolResponse" in e]
            assert responses == [{"toolResponse": {"functionResponses": [
                {"id": "call_1", "name": "get_weather", "response": {"result": "sunny"}}]}}]
            assert "clientContent" not in fake.connections[0].types()  # the model goes on by itself
    finally:
        await fake.close()


async def test_tool_call_cancellation_cancels_the_running_call() -> None:
    fake = await _fake()
    fake.tool_calls.append(("slow_lookup", {"q": "x"}))
    try:
        svc = make_gemini(fake)
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def slow_lookup(params: Any) -> None:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            await params.result_callback("late")

        svc.register_function("slow_lookup", slow_lookup)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await asyncio.wait_for(started.wait(), 5)
            assert svc.function_calls_in_progress == ["call_1"]
            await fake.cancel_tool_calls(["call_1"])
            await asyncio.wait_for(cancelled.wait(), 5)
            await run.until(lambda: not svc.function_calls_in_progress, "the call settled")
            cancels = [f for f in run.up.frames + run.down.frames if isinstance(f, FunctionCallCancelFrame)]
            assert cancels and cancels[0].tool_call_id == "call_1"
            assert "toolResponse" not in fake.connections[0].types()
    finally:
        await fake.close()


async def test_interrupted_drops_the_rest_of_the_turn() -> None:
    from flowcat.testing.conformance import Behaviour

    fake = await _fake()
    fake.set(Behaviour.SLOW, failures=1)
    try:
        svc = make_gemini(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await run.until(lambda: run.count(InterruptionFrame) >= 1, "the interruption")
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the end of the cut response")
            await asyncio.sleep(0.1)
            idx = max(i for i, f in enumerate(run.down.frames) if isinstance(f, InterruptionFrame))
            assert not [f for f in run.down.frames[idx:] if isinstance(f, TTSAudioRawFrame)]
            audio = sum(len(f.audio) for f in run.down.frames if isinstance(f, TTSAudioRawFrame))
            assert audio == fake.slow_chunks * 4800  # the late chunk was dropped
            assert run.count(UserStartedSpeakingFrame) >= 1
            said = [i.text for i in svc.conversation.items if i.role == "assistant"]
            assert said == ["hello there"], said  # what came before the cut
            # nothing was sent for the cut (Gemini has no truncate/cancel message)
            assert set(fake.connections[0].types()) == {"setup", "realtimeInput"}
            await run.speak()
            n = run.count(LLMFullResponseEndFrame)
            await run.until(lambda: run.count(LLMFullResponseEndFrame) > n, "the next answer")
            assert realtime_output(run.down.frames[idx:]) == fake.expected_text
    finally:
        await fake.close()


async def test_go_away_resumes_with_the_last_handle() -> None:
    fake = await _fake()
    fake.resumable = True
    try:
        svc = make_gemini(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            await run.until(lambda: svc.resumption_handle == "handle_1_1", "the handle after the turn")
            await fake.go_away("5s")
            await run.until(lambda: svc.sessions == 2 and svc.connected, "a reconnection")
            fresh = fake.connections[1]
            assert fresh.setup["sessionResumption"] == {"handle": "handle_1_1"}
            await run.speak()
            n = run.count(LLMFullResponseEndFrame)
            await run.until(lambda: run.count(LLMFullResponseEndFrame) > n, "an answer from the resumed session")
            assert "clientContent" not in fresh.types()  # resumed: nothing replayed
            assert len(fake.connections) == 2
    finally:
        await fake.close()


@pytest.mark.serial  # timing-sensitive (renewal within 1.2 s): .ci/run runs it alone, after the parallel run
async def test_go_away_during_a_turn_renews_before_the_deadline() -> None:
    from flowcat.testing.conformance import Behaviour

    fake = await _fake()
    fake.resumable = True
    fake.set(Behaviour.HANG, failures=1)
    try:
        svc = make_gemini(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await run.until(lambda: run.count(TTSAudioRawFrame) >= 1, "the turn running")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await fake.go_away("1.2s")
            await run.until(lambda: svc.sessions == 2 and svc.connected, "a renewal before the deadline")
            assert loop.time() - t0 < 1.2
            assert fake.connections[1].setup["sessionResumption"] == {"handle": "handle_1_0"}
            assert run.count(LLMFullResponseEndFrame) == 1  # the cut turn was closed
    finally:
        await fake.close()


async def test_reseed_without_replay_does_not_resume() -> None:
    fake = await _fake()
    fake.resumable = True
    try:
        svc = make_gemini(fake)
        turns: list[Any] = []
        svc.add_event_handler("on_turn_done", lambda _s, usage: turns.append(usage))
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await run.until(lambda: bool(turns), "on_turn_done")
            assert turns[0] is not None and turns[0].prompt_tokens == 100  # the turn's usageMetadata
            assert svc.resumption_handle == "handle_1_1"
            await svc.renew_session(instructions="Digest: the caller asked what is up.", replay=False)
            fresh = fake.connections[1]
            assert fresh.setup["sessionResumption"] == {}  # fresh: no audio history
            assert fresh.setup["systemInstruction"] == {"parts": [{"text": "Digest: the caller asked what is up."}]}
            assert "clientContent" not in fresh.types()
    finally:
        await fake.close()


async def test_reconnect_without_handle_replays_text() -> None:
    fake = await _fake(binary=False)
    try:
        svc = make_gemini(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            await svc.renew_session()
            fresh = fake.connections[1]
            await run.until(lambda: "clientContent" in fresh.types(), "the replay")
            assert "sessionResumption" in fresh.setup and fresh.setup["sessionResumption"] == {}
            replay = [e for e in fresh.events if "clientContent" in e][0]["clientContent"]
            assert replay == {"turns": [{"role": "user", "parts": [{"text": fake.user_text}]},
                                        {"role": "model", "parts": [{"text": fake.expected_text}]}],
                              "turnComplete": False}
    finally:
        await fake.close()


async def test_first_context_reconnects_with_instructions_and_asks_for_a_greeting() -> None:
    fake = await _fake()
    try:
        svc = make_gemini(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            ctx = LLMContext([{"role": "system", "content": "Be a pirate."},
                              {"role": "user", "content": "Say hello."}], tools=[WEATHER])
            await run.task.queue_frame(LLMContextFrame(ctx))
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the greeting")
            fresh = fake.connections[-1]
            assert len(fake.connections) == 2  # the setup is fixed for a connection: a new one
            assert fresh.setup["systemInstruction"] == {"parts": [{"text": "Be a pirate."}]}
            assert fresh.setup["tools"] == [{"functionDeclarations": [{
                "name": "get_weather", "description": "The weather.", "parameters": WEATHER["function"]["parameters"]}]}]
            contents = [e["clientContent"] for e in fresh.events if "clientContent" in e]
            assert contents == [{"turns": [{"role": "user", "parts": [{"text": "Say hello."}]}],
                                 "turnComplete": False},
                                {"turnComplete": True}], contents
    finally:
        await fake.close()


def test_usage_by_modality() -> None:
    u = _usage({"promptTokenCount": 100, "candidatesTokenCount": 50, "totalTokenCount": 150,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 40},
                                        {"modality": "AUDIO", "tokenCount": 60}],
                "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 50}]})
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 50, 150)
    assert (u.input_text_tokens, u.input_audio_tokens, u.output_audio_tokens, u.output_text_tokens) == \
        (40, 60, 50, None)
    assert _usage("nope") is None


def test_key_from_gemini_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "gem-key")
    svc = GeminiLiveLLMService()
    assert svc.socket_url().endswith("?key=gem-key")
    monkeypatch.setenv("GOOGLE_API_KEY", "goog-key")
    assert GeminiLiveLLMService().socket_url().endswith("?key=goog-key")
