"""SpeechmaticsSTTService: the conformance suite against a local RT API v2 fake, and the wire.

Wire tests: the handshake (``/v2``, ``Authorization: Bearer`` or ``?jwt=``), ``StartRecognition``
(audio_format, transcription_config) before any audio, binary audio equal to what was pushed,
``ForceEndOfUtterance`` at the end of speech, ``EndOfStream`` with the count of audio frames;
partial/final transcripts into interim/final frames; ``Error`` types into flowcat errors; a
malformed message skipped and counted; the key in no log line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from _fake_speechmatics import FakeSpeechmatics, transcript
from _helpers import conformance_params
from _stt_harness import Session
from flowcat.errors import (
    ConfigError,
    ServiceAuthError,
    ServiceConnectionError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from flowcat.frames import InterimTranscriptionFrame, MetricsFrame, TranscriptionFrame, TTFBMetricsData
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff
from flowcat.services.stt import SpeechmaticsSTTService, SpeechmaticsSTTSettings
from flowcat.services.stt.speechmatics import error_for
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST, reconnect_timeout_secs=2.0,
                                  close_timeout_secs=0.5)


CONFORMANCE = {"stt:speechmatics": ConformanceTarget("stt", FakeSpeechmatics, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def serve() -> FakeSpeechmatics:
    fake = FakeSpeechmatics()
    await fake.start()
    return fake


async def test_start_recognition_audio_force_end_and_end_of_stream_on_the_wire() -> None:
    fake = await serve()
    try:
        settings = SpeechmaticsSTTSettings(language="de", model="standard", max_delay=0.7,
                                           end_of_utterance_silence_trigger=0.4, extra={"diarization": "speaker"})
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key, settings=settings, user_id="u1")
        async with Session(stt, rate=8000) as s:
            await s.speak(chunks=6)
            await s.until(lambda: s.of(TranscriptionFrame), "the final transcript")
            await s.end()
    finally:
        await fake.close()
    (conn,) = fake.connections
    assert conn.query == {} and conn.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert conn.start == {
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        "transcription_config": {"language": "de", "enable_partials": True, "max_delay": 0.7,
                                 "operating_point": "standard",
                                 "conversation_config": {"end_of_utterance_silence_trigger": 0.4},
                                 "diarization": "speaker"},
    }
    assert bytes(conn.audio) == bytes(s.sent)
    assert conn.texts[0]["message"] == "StartRecognition"
    assert conn.texts[1:] == [{"message": "ForceEndOfUtterance"},
                              {"message": "EndOfStream", "last_seq_no": conn.frames}]
    assert stt.acked_seq_no == conn.frames
    (final,) = s.of(TranscriptionFrame)
    assert (final.text, final.language, final.user_id, final.finalized) == (fake.expected_text, "de", "u1", True)
    assert final.result["results"][0]["alternatives"][0]["content"] == "Hello"
    ttfb = [d for f in s.tail.frames if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, TTFBMetricsData)]
    assert ttfb and ttfb[0].value >= 0


async def test_a_temporary_key_goes_in_the_jwt_query() -> None:
    fake = await serve()
    try:
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key, token_auth=True)
        async with Session(stt) as s:
            await s.until(lambda: fake.sockets, "the connection")
            await s.end()
    finally:
        await fake.close()
    (conn,) = fake.connections
    assert conn.query == {"jwt": fake.api_key} and "Authorization" not in conn.headers
    assert fake.auth_failures == 0


async def test_partials_and_finals_become_interim_and_final_frames() -> None:
    fake = await serve()
    fake.extra_messages = [
        {"message": "Info", "type": "recognition_quality", "reason": "telephony"},
        {"message": "Warning", "type": "duration_limit_exceeded", "reason": "x"},
        {"message": "AddTranscript", "metadata": {"start_time": 0, "end_time": 0.5}, "results": [
            {"type": "word", "alternatives": [{"content": "Well"}]},
            {"type": "punctuation", "alternatives": [{"content": ","}]}]},  # no metadata.transcript: from words
        {"message": "SomethingNew"},
    ]
    ends: list[Any] = []
    try:
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key, user_id="caller")

        @stt.event_handler("on_end_of_utterance")
        async def on_end(_svc: Any, msg: Any) -> None:
            ends.append(msg["metadata"]["end_time"])

        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: ends, "the end of utterance")
            await s.end()
    finally:
        await fake.close()
    assert {(f.text, f.language, f.user_id) for f in s.of(InterimTranscriptionFrame)} == {("hel", "en", "caller")}
    assert [f.text for f in s.of(TranscriptionFrame)] == ["Well,", fake.expected_text]
    assert ends == [1.0] and stt.bad_messages == 0


async def test_without_force_end_of_utterance_nothing_is_sent_at_the_end_of_speech() -> None:
    fake = await serve()
    try:
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key, force_end_of_utterance=False)
        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: fake.connections and fake.connections[0].frames, "audio")
            await s.end()
    finally:
        await fake.close()
    assert [t["message"] for t in fake.connections[0].texts] == ["StartRecognition", "EndOfStream"]


async def test_a_malformed_message_is_skipped_and_counted() -> None:
    fake = await serve()
    fake.extra_messages = ["{not json", "[]", {"message": "AddTranscript", "results": [{"type": "word"}]}]
    try:
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key)
        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: s.of(TranscriptionFrame), "the final")
            await s.end()
    finally:
        await fake.close()
    assert stt.bad_messages == 3
    assert [f.text for f in s.of(TranscriptionFrame)] == [fake.expected_text] and not s.errors()


async def test_a_bad_key_is_refused_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await serve()
    try:
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key="wrong-key-0123456789", retry=FAST)
        async with Session(stt) as s:
            await s.until(lambda: s.errors(), "the error")
            await asyncio.sleep(0.1)
    finally:
        await fake.close()
    (err,) = s.errors()
    assert isinstance(err.exception, ServiceAuthError) and len(fake.connections) == 1
    assert all("wrong-key-0123456789" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("kind", "cls", "reconnects"), [
    ("job_error", ServiceConnectionError, True),
    ("not_authorised", ServiceAuthError, False),
    ("invalid_audio_type", ServiceStatusError, False),
])
async def test_an_error_message_is_mapped_and_reconnected_only_when_it_may_help(
        kind: str, cls: type[Exception], reconnects: bool) -> None:
    fake = await serve()
    try:
        stt = SpeechmaticsSTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST)
        async with Session(stt) as s:
            await s.until(lambda: fake.sockets, "the first connection")
            fake.error_after_audio = (kind, f"something about {kind}")
            await s.speak(chunks=3)
            await s.until(lambda: s.errors(), "the error")
            await asyncio.sleep(0.2)
    finally:
        await fake.close()
    err = s.errors()[0]
    assert isinstance(err.exception, cls) and kind in err.error
    assert (len(fake.connections) > 1) is reconnects


def test_error_types_map_to_flowcat_errors() -> None:
    assert isinstance(error_for("quota_exceeded", "x"), ServiceRateLimitError)
    assert not error_for("protocol_error", "x").retryable
    assert not error_for("invalid_something_new", "x").retryable
    for kind in ("job_error", "internal_error", "idle_timeout", "session_transfer", "unknown_error"):
        assert error_for(kind, "x").retryable, kind


def test_base_url_is_checked_and_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPEECHMATICS_API_KEY", raising=False)
    assert SpeechmaticsSTTService(api_key="k").url == "wss://eu.rt.speechmatics.com/v2"
    assert SpeechmaticsSTTService(api_key="k", base_url="wss://us2.rt.speechmatics.com/v2").url == \
        "wss://us2.rt.speechmatics.com/v2"
    for bad in ("ftp://127.0.0.1:9", "ws://"):
        with pytest.raises(ConfigError):
            SpeechmaticsSTTService(base_url=bad, api_key="k")
    with pytest.raises(ConfigError, match="SPEECHMATICS_API_KEY"):
        SpeechmaticsSTTService(base_url="ws://127.0.0.1:1")


def test_transcript_helper_shape() -> None:
    assert transcript("Hi there.")["results"][-1]["type"] == "punctuation"
