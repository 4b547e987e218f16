"""ElevenLabsTTSService: the conformance suite against a local multi-context WebSocket fake, and the wire.

Wire tests: the handshake (voice in the path, query, ``xi-api-key``), the exact messages (a
context per sentence: opening, text with ``flush``, ``close_context``; ``close_socket`` at
the end; the keepalive), word timestamps joined from the character alignment in either
reading of its times, a barge-in ``close_context`` with the late audio dropped, and
in-socket errors mapped.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from _fake_elevenlabs import CHAR_MS, FakeElevenLabs
from _helpers import conformance_params
from flowcat.errors import ConfigError, ServiceAuthError, ServiceStatusError
from flowcat.frames import (
    AggregatedTextFrame,
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
    TTSUpdateSettingsFrame,
)
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff, close_http_sessions
from flowcat.services.tts import ElevenLabsTTSService, ElevenLabsTTSSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.fakes import decode_tones

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return ElevenLabsTTSService(base_url=fake.url, api_key=fake.api_key, voice_id="voice-1", sample_rate=16000,
                                request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"tts:elevenlabs": ConformanceTarget("tts", FakeElevenLabs, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ----------------------------------------------------------------------------- helpers


async def serve(**kw: Any) -> FakeElevenLabs:
    fake = FakeElevenLabs(**kw)
    await fake.start()
    return fake


def service(fake: FakeElevenLabs, **kw: Any) -> ElevenLabsTTSService:
    kw.setdefault("sample_rate", 16000)
    kw.setdefault("voice_id", "voice-1")
    return ElevenLabsTTSService(base_url=fake.url, api_key=fake.api_key, **kw)


def response(*texts: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *[TextFrame(t) for t in texts], LLMFullResponseEndFrame()]


async def run(tts: ElevenLabsTTSService, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    try:
        return await run_test(tts, frames_to_send=frames, timeout=10)
    finally:
        await close_http_sessions()


def played(frames: list[Frame], rate: int = 16000) -> str:
    return decode_tones(b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)), rate, CHAR_MS)


def unit(cid: str, text: str) -> list[dict[str, Any]]:
    return [{"text": " ", "context_id": cid}, {"text": text, "context_id": cid, "flush": True},
            {"context_id": cid, "close_context": True}]


# ----------------------------------------------------------------------------- wire


async def test_handshake_messages_and_frames_on_the_wire() -> None:
    fake = await serve()
    try:
        down, up = await run(service(fake), [*response("Hello there. ", "How are you?"), TTSSpeakFrame("Bye.")])
    finally:
        await fake.close()
    assert fake.voices == ["voice-1"]
    assert fake.queries == [{"model_id": "eleven_flash_v2_5", "output_format": "pcm_16000", "auto_mode": "true",
                             "sync_alignment": "true"}]
    assert fake.headers[0]["xi-api-key"] == fake.api_key
    ids = list(dict.fromkeys(m["context_id"] for m in fake.messages if "context_id" in m))
    assert len(ids) == 3  # a context per sentence
    assert fake.messages == [*unit(ids[0], "Hello there. "), *unit(ids[1], "How are you? "),
                             *unit(ids[2], "Bye. "), {"close_socket": True}]
    assert played(down) == "hello there.how are you?bye."
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    order = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame, LLMFullResponseEndFrame))]
    assert order == [TTSStartedFrame, TTSStoppedFrame, LLMFullResponseEndFrame, TTSStartedFrame, TTSStoppedFrame]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {f.sample_rate for f in audio} == {16000} and all(f.context_id for f in audio)
    for ctx in {f.context_id for f in audio}:  # each context's audio between its Started and Stopped
        idx = [i for i, f in enumerate(down) if getattr(f, "context_id", None) == ctx]
        assert isinstance(down[idx[0]], TTSStartedFrame) and isinstance(down[idx[-1]], TTSStoppedFrame)


@pytest.mark.parametrize("cumulative", [False, True], ids=["from-chunk", "from-context"])
async def test_word_timestamps_from_the_alignment(cumulative: bool) -> None:
    # chunks of 3, 5 and 4 characters: "Hel" | "lo th" | "ere." -- words span chunks
    fake = await serve(cumulative=cumulative, chunk_chars=(3, 5, 4))
    try:
        down, _ = await run(service(fake), response("Hello there. ", "How are you?"))
    finally:
        await fake.close()
    ms = 1_000_000
    unit_ns = 12 * CHAR_MS * ms  # "Hello there." is 12 characters of 20 ms
    words = [(f.text, f.pts) for f in down if isinstance(f, TTSTextFrame)]
    assert words == [("Hello", 0), ("there.", 6 * CHAR_MS * ms), ("How", unit_ns),
                     ("are", unit_ns + 4 * CHAR_MS * ms), ("you?", unit_ns + 8 * CHAR_MS * ms)]
    assert all(f.aggregated_by == "word" for f in down if isinstance(f, TTSTextFrame))
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame, AggregatedTextFrame,
                                                     LLMFullResponseEndFrame)) and not isinstance(f, TTSTextFrame)]
    assert kinds == [AggregatedTextFrame, TTSStartedFrame, AggregatedTextFrame, TTSStoppedFrame,
                     LLMFullResponseEndFrame]


async def test_voice_settings_and_query_settings() -> None:
    fake = await serve()
    try:
        settings = ElevenLabsTTSSettings(model="eleven_turbo_v2_5", language="de", auto_mode=False,
                                         inactivity_timeout=60, stability=0.4, speed=1.1,
                                         extra={"generation_config": {"chunk_length_schedule": [50]}})
        await run(service(fake, settings=settings, voice_id="v 2", sample_rate=24000), [TTSSpeakFrame("Hallo.")])
    finally:
        await fake.close()
    assert fake.voices == ["v 2"]
    assert fake.queries == [{"model_id": "eleven_turbo_v2_5", "output_format": "pcm_24000", "auto_mode": "false",
                             "sync_alignment": "true", "language_code": "de", "inactivity_timeout": "60"}]
    cid = fake.messages[0]["context_id"]
    assert fake.messages[0] == {"text": " ", "context_id": cid, "voice_settings": {"stability": 0.4, "speed": 1.1},
                                "generation_config": {"chunk_length_schedule": [50]}}


async def test_keepalive_when_idle() -> None:
    fake = await serve()
    try:
        await run(service(fake, keepalive_secs=0.05), [TTSSpeakFrame("Hi."), SleepFrame(0.3)])
    finally:
        await fake.close()
    assert fake.keepalives >= 2
    assert {"text": ""} in fake.messages


async def test_interruption_closes_the_context_and_drops_late_audio() -> None:
    fake = await serve()
    fake.set(Behaviour.SLOW, failures=1)
    tts = service(fake)
    try:
        down, _ = await run(tts, [TTSSpeakFrame("Hello there."), SleepFrame(0.15), InterruptionFrame(),
                                  SleepFrame(0.3), TTSSpeakFrame("Again.")])
    finally:
        await fake.close()
    first = fake.messages[0]["context_id"]
    closes = [m for m in fake.messages if m == {"context_id": first, "close_context": True}]
    assert len(closes) == 2  # the graceful close with the text, then the barge-in close
    assert fake.cancelled == [first] and fake.late_sent > 0
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    old_ctx = next(f.context_id for f in down if isinstance(f, TTSAudioRawFrame))
    assert not [f for f in down[cut:] if isinstance(f, TTSAudioRawFrame) and f.context_id == old_ctx]
    assert tts.contexts.stale_dropped > 0
    assert played(down[cut:]) == "again."


@pytest.mark.parametrize(("error", "exc_type", "retried"), [
    ({"message": "Voice not found", "error": "voice_not_found", "code": 400}, ServiceStatusError, False),
    ({"message": "Invalid API key", "error": "invalid_api_key"}, ServiceAuthError, False),
], ids=["status", "auth"])
async def test_error_message_fails_the_unit(error: dict[str, Any], exc_type: type, retried: bool) -> None:
    class ErrFake(FakeElevenLabs):
        async def context(self, ws: Any, cid: str, ctx: dict[str, Any], rate: int) -> None:
            await ws.send_json({**error, "contextId": cid})

    fake = ErrFake()
    await fake.start()
    try:
        down, up = await run(service(fake, retry=FAST), [TTSSpeakFrame("Hello.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, exc_type)
    assert error["message"] in errors[0].error
    assert len([m for m in fake.messages if m.get("text") == "Hello. "]) == 1
    assert [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame))] == [TTSStartedFrame,
                                                                                            TTSStoppedFrame]


async def test_no_key_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, failures=-1, status=401)
    caplog.set_level(logging.DEBUG)
    try:
        _, up = await run(service(fake), [TTSSpeakFrame("Hello.")])
    finally:
        await fake.close()
    assert isinstance(next(f for f in up if isinstance(f, ErrorFrame)).exception, ServiceAuthError)
    assert fake.api_key and fake.api_key not in caplog.text


def test_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        ElevenLabsTTSService(voice_id="v")
    with pytest.raises(ConfigError, match="voice_id"):
        ElevenLabsTTSService(api_key="k")
    with pytest.raises(ConfigError):
        ElevenLabsTTSService(api_key="k", voice_id="v", base_url="ftp://x")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "el-key-0123456789")
    tts = ElevenLabsTTSService(voice_id="v")
    assert tts.socket_url() == "wss://api.elevenlabs.io/v1/text-to-speech/v/multi-stream-input"
    tts.sample_rate = 22050
    assert tts.handshake()[1] == {"xi-api-key": "el-key-0123456789"}


async def test_a_voice_change_opens_a_new_socket_for_the_next_sentence() -> None:
    fake = await serve()
    try:
        down, up = await run(service(fake), [TTSSpeakFrame("One."), TTSUpdateSettingsFrame(settings={"voice": "v2"}),
                                             TTSSpeakFrame("Two.")])
    finally:
        await fake.close()
    assert fake.voices == ["voice-1", "v2"]
    assert played(down) == "one.two." and not [f for f in up if isinstance(f, ErrorFrame)]
