"""OpenAIRealtimeLLMService (and its Azure and Grok configurations): the realtime conformance
suite against a local fake of the GA protocol, and the wire.

Wire tests: the URL (``model`` query), the auth header (Bearer; ``api-key`` for Azure), the GA
``session.update`` (``type: realtime``, PCM 24 kHz both ways, server VAD or ``null``), the beta
flag (``OpenAI-Beta: realtime=v1``, flat session, ``response.audio.delta`` names), local turns
(``UserStoppedSpeakingFrame`` -> ``input_audio_buffer.commit`` + ``response.create``), the
first context seeding the conversation, resampling at the edges, the playback clock that sets
``audio_end_ms``, and usage with audio and text tokens apart.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from _fake_openai_realtime import FakeOpenAIRealtime
from _helpers import conformance_params
from _realtime_run import FAST, RealtimeRun
from flowcat.frames import (
    EndFrame,
    Frame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    RealtimeServiceMetadataFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services import close_http_sessions
from flowcat.services._realtime_state import ConversationLog, PlaybackTracker
from flowcat.services.realtime import (
    AzureRealtimeLLMService,
    GrokRealtimeLLMService,
    OpenAIRealtimeLLMService,
    OpenAIRealtimeSettings,
)
from flowcat.services.realtime.openai import _usage
from flowcat.testing import CaptureProcessor
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.conformance._realtime import realtime_inputs
from flowcat.testing.fakes._tones import decode_tones

pytestmark = pytest.mark.usefixtures("no_outside_connections")


def _url(fake: FakeProvider) -> str:
    return fake.url + "/v1/realtime"


def make_openai(fake: FakeProvider) -> FrameProcessor:
    return OpenAIRealtimeLLMService(url=_url(fake), api_key=fake.api_key, reconnect=FAST,
                                    connect_timeout_secs=3.0)


def make_azure(fake: FakeProvider) -> FrameProcessor:
    return AzureRealtimeLLMService(url=_url(fake), api_key=fake.api_key, reconnect=FAST,
                                   settings=OpenAIRealtimeSettings(model="my-deployment"))


def make_grok(fake: FakeProvider) -> FrameProcessor:
    return GrokRealtimeLLMService(url=_url(fake), api_key=fake.api_key, reconnect=FAST)


CONFORMANCE = {
    "realtime:openai": ConformanceTarget("realtime", FakeOpenAIRealtime, make_openai),
    "realtime:azure": ConformanceTarget("realtime", lambda: FakeOpenAIRealtime(auth="api-key"), make_azure),
    "realtime:grok": ConformanceTarget("realtime", FakeOpenAIRealtime, make_grok),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ------------------------------------------------------------------ wire


async def test_ga_handshake_and_session() -> None:
    fake = FakeOpenAIRealtime()
    await fake.start()
    try:
        svc = make_openai(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: fake.connections and fake.connections[0].events, "session.update")
            conn = fake.connections[0]
            assert conn.query == {"model": "gpt-realtime"}
            assert conn.headers["Authorization"] == f"Bearer {fake.api_key}"
            assert "OpenAI-Beta" not in conn.headers
            session = conn.events[0]["session"]
            assert conn.events[0]["type"] == "session.update"
            assert session["type"] == "realtime"
            assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
            assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
            assert session["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
            assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
            meta = [f for f in run.down.frames if isinstance(f, RealtimeServiceMetadataFrame)]
            assert meta and meta[0].server_turns
    finally:
        await fake.close()


async def test_beta_flag_speaks_the_beta_protocol() -> None:
    fake = FakeOpenAIRealtime(beta=True)
    await fake.start()
    try:
        svc = OpenAIRealtimeLLMService(url=_url(fake), api_key=fake.api_key, beta=True, reconnect=FAST)
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            conn = fake.connections[0]
            assert conn.headers["OpenAI-Beta"] == "realtime=v1"
            session = conn.events[0]["session"]
            assert "type" not in session and session["input_audio_format"] == "pcm16"
            assert session["turn_detection"] == {"type": "server_vad"}
            pcm = b"".join(f.audio for f in run.down.frames if isinstance(f, TTSAudioRawFrame))
            assert decode_tones(pcm, 24000).strip() == fake.expected_text  # from response.audio.delta
    finally:
        await fake.close()


async def test_local_turns_commit_and_ask_for_a_response() -> None:
    fake = FakeOpenAIRealtime()
    await fake.start()
    try:
        svc = OpenAIRealtimeLLMService(url=_url(fake), api_key=fake.api_key, reconnect=FAST,
                                       settings=OpenAIRealtimeSettings(server_vad=False))
        async with RealtimeRun(svc) as run:
            await run.task.queue_frame(UserStartedSpeakingFrame())
            await run.speak()
            await run.task.queue_frame(UserStoppedSpeakingFrame())
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            types = fake.connections[0].types()
            assert fake.connections[0].events[0]["session"]["audio"]["input"]["turn_detection"] is None
            i = types.index("input_audio_buffer.commit")
            assert types[i + 1] == "response.create", types
            assert "input_audio_buffer.speech_started" not in types
            # 600 ms at 16 kHz in, 24 kHz up: resampled at the edge (the resampler holds a few ms)
            assert abs(fake.audio_bytes_in - 24000 * 2 * 6 // 10) < 24000 * 2 // 10
    finally:
        await fake.close()


async def test_first_context_seeds_the_conversation_and_asks_for_a_greeting() -> None:
    fake = FakeOpenAIRealtime()
    await fake.start()
    try:
        svc = make_openai(fake)
        ctx = LLMContext([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet me."}])
        async with RealtimeRun(svc, out_rate=16000) as run:
            await run.task.queue_frame(LLMContextFrame(ctx))
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the greeting")
            conn = fake.connections[0]
            creates = [e for e in conn.events if e["type"] == "conversation.item.create"]
            assert creates == [{"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Greet me."}]}}]
            assert conn.types()[-1] == "response.create"
            assert any(e["type"] == "session.update" and e["session"].get("instructions") == "Be brief."
                       for e in conn.events)
            out = [f for f in run.down.frames if isinstance(f, TTSAudioRawFrame)]
            assert {f.sample_rate for f in out} == {16000}  # resampled to the pipeline's output rate
            # A later context (the aggregators writing back) sends nothing more.
            n = len(conn.events)
            await run.task.queue_frame(LLMContextFrame(ctx))
            await asyncio.sleep(0.05)
            assert len(conn.events) == n
    finally:
        await fake.close()


def test_playback_tracker_counts_from_the_transports_start() -> None:
    now = [10.0]
    p = PlaybackTracker(24000, lambda: now[0])
    p.audio("item_1", 48000)  # 1 s pushed at t=10
    now[0] = 10.3
    assert p.played_ms() == 300  # no transport signal yet: counted from the first push
    p.playback_started()  # the transport started playing at t=10.3
    now[0] = 10.5
    assert p.played_ms() == 200
    now[0] = 13.0
    assert p.played_ms() == 1000  # never more than was pushed
    assert p.take() == ("item_1", 1000) and p.take() is None
    p.audio("item_2", 4800)
    p.done = True
    p.playback_stopped()  # all of it was heard: nothing to truncate
    assert p.take() is None


def test_usage_keeps_audio_and_text_tokens_apart() -> None:
    u = _usage({"total_tokens": 150, "input_tokens": 100, "output_tokens": 50,
                "input_token_details": {"text_tokens": 40, "audio_tokens": 60, "cached_tokens": 8},
                "output_token_details": {"text_tokens": 10, "audio_tokens": 40}})
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 50, 150)
    assert (u.input_audio_tokens, u.input_text_tokens, u.cache_read_input_tokens) == (60, 40, 8)
    assert (u.output_audio_tokens, u.output_text_tokens) == (40, 10)
    assert _usage(None) is None


def test_conversation_log_from_context_messages() -> None:
    log = ConversationLog(max_items=3)
    log.add_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"ok": True})},
    ])
    assert [(i.role, i.text, i.call_id) for i in log.items] == [
        ("user", "Hi", ""), ("function_call", "{}", "c1"), ("function_call_output", '{"ok": true}', "c1")]


async def test_with_the_pair_in_realtime_mode_the_context_follows_the_transcripts() -> None:
    from flowcat.agent import LLMContextAggregatorPair, LLMUserAggregatorParams, RealtimeServiceModeConfig
    from flowcat.turns import ExternalUserTurnStrategies

    fake = FakeOpenAIRealtime()
    await fake.start()
    try:
        ctx = LLMContext()
        pair = LLMContextAggregatorPair(ctx, realtime_service_mode=RealtimeServiceModeConfig(),
                                        user_params=LLMUserAggregatorParams(
                                            user_turn_strategies=ExternalUserTurnStrategies()))
        svc = make_openai(fake)
        up, down = CaptureProcessor(FrameDirection.UPSTREAM), CaptureProcessor(FrameDirection.DOWNSTREAM)
        task = PipelineTask(Pipeline([up, pair.user(), svc, pair.assistant(), down]),
                            params=PipelineParams(audio_in_sample_rate=16000))
        runner = asyncio.get_running_loop().create_task(task.run())
        for f in realtime_inputs(16000):
            await task.queue_frame(f)
        for _ in range(1000):
            if any(isinstance(f, LLMFullResponseEndFrame) for f in down.frames):
                break
            await asyncio.sleep(0.005)
        assert ctx.messages == [{"role": "user", "content": fake.user_text}]  # the reply is held (trailing)
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 5)
        assert ctx.messages == [{"role": "user", "content": fake.user_text},
                                {"role": "assistant", "content": fake.expected_text}]
    finally:
        await close_http_sessions()
        await fake.close()


class _Transport(FrameProcessor):
    """Stands in for the output transport: playback starts (BotStartedSpeakingFrame upstream)
    ``delay`` s after the first bot audio arrives."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.started_at: float | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and self.started_at is None:
            self.started_at = -1.0
            self.create_task(self._start_later(), "playback")
        await self.push_frame(frame, direction)

    async def _start_later(self) -> None:
        from flowcat.frames import BotStartedSpeakingFrame

        await asyncio.sleep(self.delay)
        self.started_at = asyncio.get_running_loop().time()
        await self.push_frame(BotStartedSpeakingFrame(), FrameDirection.UPSTREAM)


async def test_local_barge_in_truncates_at_what_the_transport_played() -> None:
    from flowcat.testing.conformance import Behaviour

    fake = FakeOpenAIRealtime()
    fake.barge_in_event = False
    fake.set(Behaviour.SLOW, failures=1)
    await fake.start()
    try:
        svc = OpenAIRealtimeLLMService(url=_url(fake), api_key=fake.api_key, reconnect=FAST,
                                       settings=OpenAIRealtimeSettings(server_vad=False))
        transport = _Transport(delay=0.15)
        up, down = CaptureProcessor(FrameDirection.UPSTREAM), CaptureProcessor(FrameDirection.DOWNSTREAM)
        task = PipelineTask(Pipeline([up, svc, transport, down]), params=PipelineParams(audio_in_sample_rate=16000))
        runner = asyncio.get_running_loop().create_task(task.run())
        await task.queue_frame(UserStartedSpeakingFrame())
        for f in realtime_inputs(16000):
            await task.queue_frame(f)
        await task.queue_frame(UserStoppedSpeakingFrame())
        for _ in range(1000):
            if transport.started_at not in (None, -1.0):
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        await task.queue_frame(UserStartedSpeakingFrame())  # the local turn processor's barge-in
        for _ in range(1000):
            if fake.truncates:
                break
            await asyncio.sleep(0.005)
        assert transport.started_at is not None
        played_ms = (loop.time() - transport.started_at) * 1000
        truncate = fake.truncates[-1]
        assert truncate["item_id"] == fake.item_ids[-1]
        # counted from the transport's start (~50 ms), not from the first audio (~200 ms)
        assert 30 <= truncate["audio_end_ms"] <= played_ms + 5, (truncate, played_ms)
        await asyncio.wait_for(fake.aborted.wait(), 5)  # response.cancel
        assert "response.cancel" in fake.connections[0].types()
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 5)
    finally:
        await close_http_sessions()
        await fake.close()


async def test_a_realtime_call_leaves_nothing_behind() -> None:
    from flowcat.agent import LLMContextAggregatorPair, LLMUserAggregatorParams, RealtimeServiceModeConfig
    from flowcat.testing import assert_call_leaves_nothing
    from flowcat.turns import ExternalUserTurnStrategies

    fake = FakeOpenAIRealtime()
    fake.tool_calls.append(("get_weather", {"city": "Paris"}))
    await fake.start()

    async def call() -> list[str]:
        ctx = LLMContext()
        pair = LLMContextAggregatorPair(ctx, realtime_service_mode=RealtimeServiceModeConfig(),
                                        user_params=LLMUserAggregatorParams(
                                            user_turn_strategies=ExternalUserTurnStrategies()))
        svc = make_openai(fake)

        async def get_weather(params: Any) -> None:
            await params.result_callback({"temp": 21})

        svc.register_function("get_weather", get_weather)  # type: ignore[attr-defined]
        down = CaptureProcessor(FrameDirection.DOWNSTREAM)
        task = PipelineTask(Pipeline([pair.user(), svc, pair.assistant(), down]),
                            params=PipelineParams(audio_in_sample_rate=16000))
        runner = asyncio.get_running_loop().create_task(task.run())
        for f in realtime_inputs(16000):
            await task.queue_frame(f)
        for _ in range(1000):
            if sum(isinstance(f, LLMFullResponseEndFrame) for f in down.frames) >= 2:
                break
            await asyncio.sleep(0.005)
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, 5)
        await close_http_sessions()
        return [str(m.get("role")) for m in ctx.messages]

    try:
        roles = await assert_call_leaves_nothing(
            call, modules=tuple(f"flowcat.{m}" for m in ("frames", "runtime", "audio", "turns", "services", "agent")))
        assert roles == ["user", "assistant", "tool", "assistant"], roles
    finally:
        await fake.close()


async def test_server_barge_in_cancels_a_running_tool_call() -> None:
    from flowcat.frames import FunctionCallCancelFrame, FunctionCallInProgressFrame

    fake = FakeOpenAIRealtime()
    fake.tool_calls.append(("slow_lookup", {}))
    await fake.start()
    try:
        svc = make_openai(fake)
        started = asyncio.Event()

        async def slow_lookup(params: Any) -> None:
            started.set()
            await asyncio.sleep(30)

        svc.register_function("slow_lookup", slow_lookup)  # type: ignore[attr-defined]
        async with RealtimeRun(svc) as run:
            await run.speak()
            await asyncio.wait_for(started.wait(), 5)
            assert run.count(FunctionCallInProgressFrame) == 1
            for f in realtime_inputs(16000)[:5]:  # the caller speaks again: the server's speech_started
                await run.task.queue_frame(f)
            await run.until(lambda: run.count(FunctionCallCancelFrame) == 1, "the tool call cancelled")
            assert not fake.events("conversation.item.create"), "a cancelled call sent a result"
    finally:
        await fake.close()


async def test_an_interim_tool_result_is_dropped_with_an_error_and_only_the_final_one_is_sent() -> None:
    from flowcat.frames import (
        FunctionCallInterimResultFrame,
        FunctionCallResultFrame,
        FunctionCallResultProperties,
    )

    fake = FakeOpenAIRealtime()
    fake.tool_calls.append(("search", {}))
    await fake.start()
    try:
        svc = make_openai(fake)

        async def search(params: Any) -> None:
            await params.result_callback("half", properties=FunctionCallResultProperties(is_final=False))
            await params.result_callback({"found": 3})

        svc.register_function("search", search, cancel_on_interruption=False)  # type: ignore[attr-defined]
        def outputs() -> list[Any]:
            return [e["item"]["output"] for e in fake.events("conversation.item.create")
                    if e["item"].get("type") == "function_call_output"]

        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: run.count(FunctionCallResultFrame) == 1 and outputs(), "the final result sent")
            assert run.count(FunctionCallInterimResultFrame) == 0
            assert any("interim result of search dropped" in e.error for e in run.errors())
            assert outputs() == ['{"found": 3}']
    finally:
        await fake.close()


async def test_a_first_context_after_the_conversation_began_is_not_replayed() -> None:
    fake = FakeOpenAIRealtime()
    await fake.start()
    try:
        svc = make_openai(fake)
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            # a cascade-style user half pushes its context at the turn's end: the server VAD already answered
            await run.task.queue_frame(LLMContextFrame(LLMContext([{"role": "user", "content": fake.user_text}])))
            await asyncio.sleep(0.1)
            types = fake.connections[0].types()
            assert "conversation.item.create" not in types and "response.create" not in types, types
            assert fake.responses == 1
    finally:
        await fake.close()


async def test_renew_session_on_demand_replays_the_conversation_as_text() -> None:
    fake = FakeOpenAIRealtime()
    await fake.start()
    try:
        svc = OpenAIRealtimeLLMService(url=_url(fake), api_key=fake.api_key, reconnect=FAST, max_session_secs=None)
        renewed: list[int] = []
        svc.add_event_handler("on_session_renewed", lambda s: renewed.append(s.sessions))
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            await svc.renew_session()
            assert len(fake.connections) == 2 and renewed == [2]
            fresh = fake.connections[1]
            await run.until(lambda: len(fresh.events) >= 3, "the replay")
            items = [e["item"] for e in fresh.events if e["type"] == "conversation.item.create"]
            assert items == [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": fake.user_text}]},
                {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": fake.expected_text}]},
            ]
    finally:
        await fake.close()
