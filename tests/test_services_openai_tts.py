"""OpenAITTSService: the conformance suite against a local ``/v1/audio/speech`` fake, and the wire.

Wire tests: the request (URL, Bearer auth, JSON body with ``response_format: pcm``,
optional fields and headers), the frames (order, sample rate, the audio of the text that
was sent), resampling from OpenAI's 24 kHz to the pipeline's rate, errors in OpenAI's
body shape mapped (retryable or not), a 200 that is not audio.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from _fake_openai_tts import CHAR_MS, FakeOpenAITTS
from _helpers import conformance_params
from flowcat.errors import ConfigError, ServiceAuthError, ServiceProtocolError, ServiceStatusError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff, close_http_sessions
from flowcat.services.tts import OpenAITTSService, OpenAITTSSettings
from flowcat.testing import run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.fakes import decode_tones

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return OpenAITTSService(base_url=fake.url + "/v1", api_key=fake.api_key, sample_rate=24000,
                            request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"tts:openai": ConformanceTarget("tts", FakeOpenAITTS, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def serve() -> FakeOpenAITTS:
    fake = FakeOpenAITTS()
    await fake.start()
    return fake


def service(fake: FakeOpenAITTS, **kw: Any) -> OpenAITTSService:
    kw.setdefault("sample_rate", 24000)
    return OpenAITTSService(base_url=fake.base_url, api_key=fake.api_key, **kw)


async def run(tts: OpenAITTSService, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    try:
        return await run_test(tts, frames_to_send=frames, timeout=10)
    finally:
        await close_http_sessions()


def audio_of(frames: list[Frame]) -> bytes:
    return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))


async def test_request_and_frames_on_the_wire() -> None:
    fake = await serve()
    try:
        down, up = await run(service(fake, organization="org-1", project="proj-1"),
                             [TTSSpeakFrame("Hello there. How are you?")])
    finally:
        await fake.close()
    assert fake.bodies == [{"model": "gpt-4o-mini-tts", "input": "Hello there. How are you?", "voice": "alloy",
                            "response_format": "pcm"}]
    h = fake.headers[0]
    assert h["Authorization"] == f"Bearer {fake.api_key}" and h["Content-Type"] == "application/json"
    assert h["OpenAI-Organization"] == "org-1" and h["OpenAI-Project"] == "proj-1"
    assert decode_tones(audio_of(down), 24000, CHAR_MS) == "hello there. how are you?"
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSAudioRawFrame, TTSTextFrame,
                                                     TTSStoppedFrame))]
    assert kinds[0] is TTSStartedFrame and kinds[-2:] == [TTSTextFrame, TTSStoppedFrame]
    assert set(kinds[1:-2]) == {TTSAudioRawFrame}
    assert {f.sample_rate for f in down if isinstance(f, TTSAudioRawFrame)} == {24000}
    assert not [f for f in up if isinstance(f, ErrorFrame)]


async def test_settings_in_the_body() -> None:
    fake = await serve()
    try:
        settings = OpenAITTSSettings(model="tts-1", voice="nova", instructions="Speak calmly.", speed=1.25,
                                     extra={"stream_format": "audio"})
        await run(service(fake, settings=settings), [TTSSpeakFrame("Hi.")])
    finally:
        await fake.close()
    assert fake.bodies == [{"model": "tts-1", "input": "Hi.", "voice": "nova", "response_format": "pcm",
                            "instructions": "Speak calmly.", "speed": 1.25, "stream_format": "audio"}]


async def test_resampled_to_the_pipeline_rate() -> None:
    fake = await serve()
    try:
        down, _ = await run(service(fake, sample_rate=16000), [TTSSpeakFrame("Hello there.")])
    finally:
        await fake.close()
    audio = audio_of(down)
    assert {f.sample_rate for f in down if isinstance(f, TTSAudioRawFrame)} == {16000}
    assert abs(len(audio) - len(fake.expected_audio) * 2 // 3) <= 64  # 24 kHz -> 16 kHz, filter tail flushed
    assert decode_tones(audio, 16000, CHAR_MS) == "hello there."


@pytest.mark.parametrize(("status", "exc_type", "requests"), [
    (400, ServiceStatusError, 1), (401, ServiceAuthError, 1), (500, ServiceStatusError, 4),
])
async def test_errors_mapped(status: int, exc_type: type, requests: int, caplog: pytest.LogCaptureFixture) -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, failures=-1, status=status)
    caplog.set_level(logging.DEBUG)
    try:
        _, up = await run(service(fake, retry=Backoff(initial=0.01, max_attempts=4)), [TTSSpeakFrame("Hi.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, exc_type)
    assert errors[0].exception.status_code == status and "Incorrect API key provided" in errors[0].error
    assert fake.requests == requests  # 5xx retried, 4xx not
    assert fake.api_key and fake.api_key not in caplog.text and fake.api_key not in errors[0].error


async def test_a_200_that_is_not_audio_is_a_protocol_error() -> None:
    fake = await serve()
    fake.set(Behaviour.MALFORMED, failures=1)
    try:
        down, up = await run(service(fake), [TTSSpeakFrame("Hi.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, ServiceProtocolError)
    assert fake.requests == 1 and not audio_of(down)


def test_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAITTSService()
    with pytest.raises(ConfigError):
        OpenAITTSService(api_key="k", base_url="ftp://x")
    assert OpenAITTSService(api_key="k").url == "https://api.openai.com/v1/audio/speech"
