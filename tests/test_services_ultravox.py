"""UltravoxRealtimeLLMService: the realtime conformance suite against
:class:`flowcat.testing.fakes.FakeUltravox` (the call API and the ``joinUrl`` socket), and the wire.

Wire tests: the call's creation (``X-API-Key``, ``medium.serverWebSocket`` rates and buffer,
``maxDuration``, ``firstSpeakerSettings``, ``systemPrompt``), the caller's audio as binary PCM
resampled to the input rate, the first context re-creating the call with its instructions, client
tools and history (nothing sent twice), the history of a renewed call (tool call and result with
their ``invocationId``), the turn frames from ``state``, cumulative ``text`` transcripts, the
agent's greeting and a mid-call settings change re-creating the call, a refused creation, and
settings refused at construction.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from _helpers import conformance_params
from _realtime_run import FAST, WEATHER, RealtimeRun
from flowcat.errors import ConfigError
from flowcat.frames import (
    ErrorFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    RealtimeServiceMetadataFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.services.realtime import UltravoxRealtimeLLMService, UltravoxRealtimeSettings
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.conformance._realtime import realtime_output
from flowcat.testing.fakes import FakeUltravox

pytestmark = pytest.mark.usefixtures("no_outside_connections")


def make_ultravox(fake: FakeProvider, **kw: Any) -> UltravoxRealtimeLLMService:
    kw.setdefault("settings", UltravoxRealtimeSettings(first_speaker="user"))
    return UltravoxRealtimeLLMService(url=fake.url, api_key=fake.api_key, reconnect=FAST,
                                      connect_timeout_secs=3.0, **kw)


CONFORMANCE = {
    "realtime:ultravox": ConformanceTarget("realtime", FakeUltravox, make_ultravox),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ------------------------------------------------------------------ wire


async def _fake() -> FakeUltravox:
    fake = FakeUltravox()
    await fake.start()
    return fake


async def test_the_call_is_created_with_the_websocket_medium_and_audio_goes_up_binary() -> None:
    fake = await _fake()
    try:
        svc = make_ultravox(fake, settings=UltravoxRealtimeSettings(instructions="Be brief.", voice="Mark",
                                                                    first_speaker="user"))
        async with RealtimeRun(svc) as run:
            await run.until(lambda: fake.connections and fake.connections[0].joined, "the call joined")
            call = fake.connections[0]
            assert call.headers["X-API-Key"] == fake.api_key
            body = call.body
            assert body["medium"] == {"serverWebSocket": {"inputSampleRate": 24000, "outputSampleRate": 24000,
                                                          "clientBufferSizeMs": 30000}}
            assert body["systemPrompt"] == "Be brief." and body["voice"] == "Mark"
            assert body["model"] == "ultravox-v0.7" and body["maxDuration"] == "3600s"
            assert body["firstSpeakerSettings"] == {"user": {}}
            assert "initialMessages" not in body and "selectedTools" not in body
            meta = [f for f in run.down.frames if isinstance(f, RealtimeServiceMetadataFrame)]
            assert meta and meta[0].server_turns
            await run.speak(16000)
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            assert realtime_output(run.down.frames) == fake.expected_text
            assert svc.call_id == "call-1"
            # 600 ms at 16 kHz in, 24 kHz up as binary PCM (the resampler holds a few ms)
            assert abs(fake.audio_bytes_in - 24000 * 2 * 6 // 10) < 24000 * 2 // 10
            assert call.types() == ["create_call"]  # no data message: the audio went as binary
            # The turn frames come when the server starts thinking, in order.
            turn = [type(f) for f in run.down.frames if isinstance(f, (UserStartedSpeakingFrame,
                                                                       UserStoppedSpeakingFrame))]
            assert turn == [UserStartedSpeakingFrame, UserStoppedSpeakingFrame]
    finally:
        await fake.close()


async def test_the_first_context_re_creates_the_call_with_its_prompt_tools_and_history() -> None:
    fake = await _fake()
    try:
        svc = make_ultravox(fake)
        ctx = LLMContext([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there."}],
                         tools=[WEATHER])
        async with RealtimeRun(svc) as run:
            await run.until(lambda: fake.connections and fake.connections[0].joined, "the first call")
            await run.task.queue_frame(LLMContextFrame(ctx))
            await run.until(lambda: len(fake.connections) == 2 and fake.connections[1].joined, "a second call")
            body = fake.connections[1].body
            assert body["systemPrompt"] == "Be brief."
            assert body["selectedTools"] == [{"temporaryTool": {
                "modelToolName": "get_weather", "description": "The weather.",
                "dynamicParameters": [{"name": "city", "location": "PARAMETER_LOCATION_BODY",
                                       "schema": {"type": "string"}, "required": True}],
                "client": {}}}]
            assert body["initialMessages"] == [{"role": "MESSAGE_ROLE_USER", "text": "Hi there."}]
            assert body["firstSpeakerSettings"] == {"user": {}}
            await asyncio.sleep(0.05)
            # The user's message went with the call, not again as a data message.
            assert fake.connections[1].types() == ["create_call"]
            assert svc.sessions == 2
            # The same context again changes nothing.
            await run.task.queue_frame(LLMContextFrame(ctx))
            await asyncio.sleep(0.05)
            assert len(fake.connections) == 2
    finally:
        await fake.close()


async def test_a_renewed_call_carries_the_tool_call_and_its_result() -> None:
    fake = await _fake()
    fake.tool_calls.append(("get_weather", {"city": "Paris"}))
    try:
        svc = make_ultravox(fake)

        async def get_weather(params: Any) -> None:
            await params.result_callback({"temp": 21})

        svc.register_function("get_weather", get_weather)
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: realtime_output(run.down.frames) == fake.expected_text, "the answer")
            assert fake.tool_outputs() == [("call_1", '{"temp": 21}')]
            await svc.renew_session()
            await run.until(lambda: len(fake.connections) == 2, "a fresh call")
            assert fake.connections[1].body["initialMessages"] == [
                {"role": "MESSAGE_ROLE_USER", "text": fake.user_text},
                {"role": "MESSAGE_ROLE_TOOL_CALL", "text": '{"city": "Paris"}', "invocationId": "call_1",
                 "toolName": "get_weather"},
                {"role": "MESSAGE_ROLE_TOOL_RESULT", "text": '{"temp": 21}', "invocationId": "call_1",
                 "toolName": "get_weather"},
                {"role": "MESSAGE_ROLE_AGENT", "text": fake.expected_text},
            ]
    finally:
        await fake.close()


async def test_a_refused_call_is_an_auth_error_without_the_key() -> None:
    fake = await _fake()
    try:
        svc = UltravoxRealtimeLLMService(url=fake.url, api_key="wrong-key-0123456789", reconnect=FAST)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: any(isinstance(f, ErrorFrame) for f in run.up.frames), "the error")
            err = next(f for f in run.up.frames if isinstance(f, ErrorFrame))
            assert "create call" in err.error and "403" in err.error
            assert "wrong-key-0123456789" not in err.error
            assert not fake.calls and fake.auth_failures == 1  # an auth error is not retried
    finally:
        await fake.close()


def test_settings_ultravox_cannot_honour_are_refused() -> None:
    with pytest.raises(ConfigError, match="server_vad"):
        UltravoxRealtimeLLMService(api_key="k", settings=UltravoxRealtimeSettings(server_vad=False))
    with pytest.raises(ConfigError, match="first_speaker"):
        UltravoxRealtimeLLMService(api_key="k", settings=UltravoxRealtimeSettings(first_speaker="nobody"))
    with pytest.raises(ConfigError, match="http"):
        UltravoxRealtimeLLMService(api_key="k", url="ftp://example.com")


async def test_cumulative_agent_transcripts_are_pushed_once_and_kept_whole() -> None:
    fake = await _fake()
    fake.cumulative = True
    try:
        svc = make_ultravox(fake)
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            spoken = "".join(f.text for f in run.down.frames if isinstance(f, TTSTextFrame))
            assert spoken == fake.expected_text
            assert [(i.role, i.text) for i in svc.conversation.items] == [
                ("user", fake.user_text), ("assistant", fake.expected_text)]
    finally:
        await fake.close()


async def test_the_agent_greets_first_when_asked_and_a_re_created_call_waits_for_the_user() -> None:
    fake = await _fake()
    try:
        svc = make_ultravox(fake, settings=UltravoxRealtimeSettings(first_speaker="agent"))
        async with RealtimeRun(svc) as run:
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the greeting")
            assert fake.calls[0].body["firstSpeakerSettings"] == {"agent": {}}
            assert realtime_output(run.down.frames) == fake.expected_text  # no one spoke: a greeting
            # A new prompt after the conversation began: the call is re-created, waiting for the user.
            await svc.update_settings({"instructions": "Be terse."})
            await run.until(lambda: len(fake.connections) == 2, "a re-created call")
            body = fake.calls[1].body
            assert body["firstSpeakerSettings"] == {"user": {}} and body["systemPrompt"] == "Be terse."
            assert body["initialMessages"] == [{"role": "MESSAGE_ROLE_AGENT", "text": fake.expected_text}]
            # The same settings again: nothing to re-create.
            await svc.update_settings({"instructions": "Be terse."})
            await asyncio.sleep(0.05)
            assert len(fake.calls) == 2
    finally:
        await fake.close()
