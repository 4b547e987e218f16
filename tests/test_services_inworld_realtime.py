"""InworldRealtimeLLMService: the realtime conformance suite against the OpenAI Realtime fake
at Inworld's path with Basic auth (Inworld speaks the OpenAI GA wire), and Inworld's quirks on
the wire: the session id and ``protocol=realtime`` in the query (a fresh id per connection),
``Authorization: Basic``, the model, STT and TTS models and semantic VAD in ``session.update``,
no beta protocol.
"""

from __future__ import annotations

from typing import Any

import pytest

from _fake_openai_realtime import FakeOpenAIRealtime
from _helpers import conformance_params
from _realtime_run import FAST, RealtimeRun
from flowcat.errors import ConfigError
from flowcat.frames import LLMFullResponseEndFrame
from flowcat.services.realtime import InworldRealtimeLLMService, InworldRealtimeSettings
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.conformance._realtime import realtime_output

pytestmark = pytest.mark.usefixtures("no_outside_connections")

PATH = "/api/v1/realtime/session"


def _inworld_fake() -> FakeOpenAIRealtime:
    return FakeOpenAIRealtime(path=PATH, auth="basic")


def make_inworld(fake: FakeProvider, **kw: Any) -> InworldRealtimeLLMService:
    return InworldRealtimeLLMService(url=fake.url + PATH, api_key=fake.api_key, reconnect=FAST,
                                     connect_timeout_secs=3.0, **kw)


CONFORMANCE = {
    "realtime:inworld": ConformanceTarget("realtime", _inworld_fake, make_inworld),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def test_inworld_endpoint_auth_and_session_fields() -> None:
    fake = _inworld_fake()
    await fake.start()
    try:
        svc = make_inworld(fake, session_key="sess-abc", settings=InworldRealtimeSettings(instructions="Be brief."))
        async with RealtimeRun(svc, metrics=False, usage=False) as run:
            await run.until(lambda: fake.connections and fake.connections[0].events, "session.update")
            conn = fake.connections[0]
            assert conn.query == {"key": "sess-abc", "protocol": "realtime"}
            assert conn.headers["Authorization"] == f"Basic {fake.api_key}"
            assert "OpenAI-Beta" not in conn.headers
            event = conn.events[0]
            assert event["type"] == "session.update"
            session = event["session"]
            assert session["type"] == "realtime" and session["model"] == "openai/gpt-4o-mini"
            assert session["instructions"] == "Be brief."
            assert session["audio"]["input"]["transcription"] == {"model": "inworld/inworld-stt-1"}
            assert session["audio"]["input"]["turn_detection"] == {
                "type": "semantic_vad", "create_response": True, "interrupt_response": True}
            assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
            assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                                  "voice": "Clive", "model": "inworld-tts-1.5-mini"}
            await run.speak()
            await run.until(lambda: run.count(LLMFullResponseEndFrame) >= 1, "the answer")
            assert realtime_output(run.down.frames) == fake.expected_text
            # A fresh connection (a renewal) gets a fresh session id.
            await svc.renew_session()
            await run.until(lambda: len(fake.connections) == 2, "a fresh session")
            key = fake.connections[1].query["key"]
            assert key and key != "sess-abc" and key == svc.session_key
    finally:
        await fake.close()


async def test_local_turns_send_no_turn_detection() -> None:
    fake = _inworld_fake()
    await fake.start()
    try:
        svc = make_inworld(fake, settings=InworldRealtimeSettings(server_vad=False, tts_model=None))
        async with RealtimeRun(svc, metrics=False, usage=False) as run:
            await run.until(lambda: fake.connections and fake.connections[0].events, "session.update")
            session = fake.connections[0].events[0]["session"]
            assert session["audio"]["input"]["turn_detection"] is None
            assert "model" not in session["audio"]["output"]
    finally:
        await fake.close()


def test_there_is_no_beta_protocol() -> None:
    with pytest.raises(ConfigError, match="beta"):
        InworldRealtimeLLMService(api_key="k", beta=True)
