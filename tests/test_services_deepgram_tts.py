"""DeepgramTTSService: the conformance suite against a local ``/v1/speak`` WebSocket fake, and the wire.

Wire tests: the handshake (query, ``Authorization: Token``), the exact messages (``Speak`` +
``Flush`` per sentence, ``Close`` at the end), the frames (order, sample rate, the audio of
the text sent), ``Clear`` on interruption with the audio still in flight before
``Cleared`` dropped, a server close mapped to a connection error, ``Metadata`` kept.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from _fake_deepgram_tts import CHAR_MS, FakeDeepgramTTS
from _helpers import conformance_params
from flowcat.errors import ConfigError, ServiceAuthError, ServiceConnectionError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff, close_http_sessions
from flowcat.services.tts import DeepgramTTSService, DeepgramTTSSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.fakes import decode_tones

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return DeepgramTTSService(base_url=fake.url, api_key=fake.api_key, sample_rate=16000,
                              request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"tts:deepgram": ConformanceTarget("tts", FakeDeepgramTTS, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def serve() -> FakeDeepgramTTS:
    fake = FakeDeepgramTTS()
    await fake.start()
    return fake


def service(fake: FakeDeepgramTTS, **kw: Any) -> DeepgramTTSService:
    kw.setdefault("sample_rate", 16000)
    return DeepgramTTSService(base_url=fake.url, api_key=fake.api_key, **kw)


async def run(tts: DeepgramTTSService, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    try:
        return await run_test(tts, frames_to_send=frames, timeout=10)
    finally:
        await close_http_sessions()


def played(frames: list[Frame], rate: int = 16000) -> str:
    return decode_tones(b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)), rate, CHAR_MS)


async def test_handshake_messages_and_frames_on_the_wire() -> None:
    fake = await serve()
    tts = service(fake)
    try:
        down, up = await run(tts, [LLMFullResponseStartFrame(), TextFrame("Hello there. "), TextFrame("How are you?"),
                                   LLMFullResponseEndFrame(), TTSSpeakFrame("Bye.")])
    finally:
        await fake.close()
    assert fake.queries == [{"model": "aura-2-thalia-en", "encoding": "linear16", "sample_rate": "16000"}]
    assert fake.headers[0]["Authorization"] == f"Token {fake.api_key}"
    assert fake.messages == [
        {"type": "Speak", "text": "Hello there."}, {"type": "Flush"},
        {"type": "Speak", "text": "How are you?"}, {"type": "Flush"},
        {"type": "Speak", "text": "Bye."}, {"type": "Flush"},
        {"type": "Close"},
    ]
    assert played(down) == "hello there.how are you?bye."
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    assert tts.metadata is not None and tts.metadata["model_name"] == "aura-2-thalia-en"
    order = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame, LLMFullResponseEndFrame))]
    assert order == [TTSStartedFrame, TTSStoppedFrame, LLMFullResponseEndFrame, TTSStartedFrame, TTSStoppedFrame]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {f.sample_rate for f in audio} == {16000}
    # no timestamps from Deepgram: one TTSTextFrame per sentence, after its audio
    texts = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert texts == ["Hello there.", "How are you?", "Bye."]


async def test_model_rate_and_extra_in_the_query() -> None:
    fake = await serve()
    try:
        settings = DeepgramTTSSettings(model="aura-2-apollo-en", extra={"mip_opt_out": "true"})
        down, _ = await run(service(fake, settings=settings, sample_rate=24000), [TTSSpeakFrame("Hi.")])
    finally:
        await fake.close()
    assert fake.queries == [{"model": "aura-2-apollo-en", "encoding": "linear16", "sample_rate": "24000",
                             "mip_opt_out": "true"}]
    assert played(down, 24000) == "hi."


async def test_interruption_sends_clear_and_drops_audio_until_cleared() -> None:
    fake = await serve()
    fake.set(Behaviour.SLOW, failures=1)
    tts = service(fake)
    try:
        down, _ = await run(tts, [TTSSpeakFrame("Hello there."), SleepFrame(0.15), InterruptionFrame(),
                                  TTSSpeakFrame("Again."), SleepFrame(0.3)])  # the next one at once
    finally:
        await fake.close()
    assert fake.messages[:3] == [{"type": "Speak", "text": "Hello there."}, {"type": "Flush"}, {"type": "Clear"}]
    assert fake.clears == 1 and fake.late_sent == 3
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    assert played(down[cut:]) == "again."
    assert tts.contexts.stale_dropped >= 3


async def test_a_server_close_is_a_connection_error_and_the_next_unit_reconnects() -> None:
    fake = await serve()
    fake.set(Behaviour.DISCONNECT, failures=1)
    try:
        down, up = await run(service(fake), [TTSSpeakFrame("Hello."), SleepFrame(0.1), TTSSpeakFrame("Again.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, ServiceConnectionError)
    assert "closed by the server" in errors[0].error  # after audio went out: reported, not retried
    assert len(fake.queries) == 2  # reconnected for the next utterance
    assert played(down).endswith("again.")


async def test_auth_refused_not_retried_and_no_key_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake = await serve()
    caplog.set_level(logging.DEBUG)
    try:
        _, up = await run(DeepgramTTSService(base_url=fake.url, api_key="wrong-key-0123456789", sample_rate=16000),
                          [TTSSpeakFrame("Hi.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, ServiceAuthError)
    assert fake.auth_failures == 1
    assert "wrong-key-0123456789" not in caplog.text


def test_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        DeepgramTTSService()
    with pytest.raises(ConfigError):
        DeepgramTTSService(api_key="k", base_url="ftp://x")
    assert DeepgramTTSService(api_key="k").url == "wss://api.deepgram.com/v1/speak"
    assert DeepgramTTSService(api_key="k", base_url="http://127.0.0.1:9/").url == "ws://127.0.0.1:9/v1/speak"
