"""AssemblyAISTTService: the conformance suite against a local Universal Streaming v3 fake, and the wire.

Wire tests: the handshake (path, query, ``Authorization: <key>`` or ``?token=``), binary audio
equal to what was pushed in 50..1000 ms frames, ``ForceEndpoint`` at the end of speech,
``Terminate`` at the end; ``Turn`` messages into interim/final frames (formatted or not);
in-band ``Error`` + close codes into flowcat errors (auth not retried, expiry reconnected);
a malformed message skipped and counted; the key in no log line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from _fake_assemblyai import FakeAssemblyAI, turn
from _helpers import conformance_params
from _stt_harness import Session, chunk
from flowcat.errors import ConfigError, ServiceAuthError, ServiceConnectionError, ServiceRateLimitError
from flowcat.frames import InterimTranscriptionFrame, MetricsFrame, TranscriptionFrame, TTFBMetricsData
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff
from flowcat.services.stt import AssemblyAISTTService, AssemblyAISTTSettings
from flowcat.services.stt.assemblyai import close_error
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST, reconnect_timeout_secs=2.0,
                                close_timeout_secs=0.5)


CONFORMANCE = {"stt:assemblyai": ConformanceTarget("stt", FakeAssemblyAI, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def serve() -> FakeAssemblyAI:
    fake = FakeAssemblyAI()
    await fake.start()
    return fake


async def test_handshake_audio_force_endpoint_and_terminate_on_the_wire() -> None:
    fake = await serve()
    try:
        settings = AssemblyAISTTSettings(model="universal-streaming-multilingual", end_of_turn_confidence_threshold=0.6,
                                         max_turn_silence=900, keyterms_prompt=["flowcat"], extra={"vad_threshold": 0.4})
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key, settings=settings, user_id="u1")
        async with Session(stt, rate=8000) as s:
            await s.speak(chunks=7)  # 140 ms: one 100 ms frame, then 40 ms padded to 50 ms at the end
            await s.until(lambda: s.of(TranscriptionFrame), "the final transcript")
            await s.end()
    finally:
        await fake.close()
    (conn,) = fake.connections
    assert conn.query == {"speech_model": "universal-streaming-multilingual", "sample_rate": "8000",
                          "encoding": "pcm_s16le", "format_turns": "true", "end_of_turn_confidence_threshold": "0.6",
                          "max_turn_silence": "900", "keyterms_prompt": '["flowcat"]', "vad_threshold": "0.4"}
    assert conn.headers["Authorization"] == fake.api_key
    assert all(50 <= ms <= 1000 for ms in conn.frame_ms), conn.frame_ms
    # what was pushed, then at most the silence that pads a short tail to 50 ms
    assert bytes(conn.audio[: len(s.sent)]) == bytes(s.sent) and not any(conn.audio[len(s.sent):])
    assert conn.texts == [{"type": "ForceEndpoint"}, {"type": "Terminate"}]
    assert conn.close_code == 1000
    (final,) = s.of(TranscriptionFrame)
    assert (final.text, final.language, final.user_id, final.finalized) == (fake.expected_text, "en", "u1", True)
    assert final.result["turn_is_formatted"] is True


async def test_a_temporary_token_goes_in_the_query_not_a_header() -> None:
    fake = await serve()
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key, token_auth=True)
        async with Session(stt) as s:
            await s.until(lambda: fake.sockets, "the connection")
            await s.end()
    finally:
        await fake.close()
    (conn,) = fake.connections
    assert conn.query["token"] == fake.api_key and "Authorization" not in conn.headers
    assert fake.auth_failures == 0


async def test_long_batches_are_cut_into_frames_of_at_most_one_second() -> None:
    fake = await serve()
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key, audio_batch_secs=5.0,
                                   max_buffer_secs=10.0)
        async with Session(stt) as s:
            await s.speak(chunks=1, ms=2530)
            await s.until(lambda: s.of(TranscriptionFrame), "the final transcript")
            await s.end()
    finally:
        await fake.close()
    (conn,) = fake.connections
    assert conn.frame_ms == [1000.0, 1000.0, 530.0]
    assert bytes(conn.audio) == bytes(s.sent)


async def test_turns_become_interim_and_final_frames() -> None:
    fake = await serve()
    fake.extra_messages = [
        {"type": "SpeechStarted", "timestamp": 120},
        turn("hello from", words=["hello", "from", "the"]),
        {"type": "SomethingNew"},  # unknown: logged and skipped, not malformed
    ]
    seen: dict[str, list[Any]] = {"started": [], "turns": [], "termination": []}
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key, user_id="caller")

        @stt.event_handler("on_speech_started")
        async def on_started(_svc: Any, msg: Any) -> None:
            seen["started"].append(msg["timestamp"])

        @stt.event_handler("on_turn")
        async def on_turn(_svc: Any, msg: Any) -> None:
            seen["turns"].append((msg["end_of_turn"], msg["turn_is_formatted"]))

        @stt.event_handler("on_termination")
        async def on_term(_svc: Any, msg: Any) -> None:
            seen["termination"].append(msg["audio_duration_seconds"])

        async with Session(stt) as s:
            await s.speak(chunks=10)
            await s.until(lambda: s.of(TranscriptionFrame), "the final")
            await s.end()
    finally:
        await fake.close()
    interims = [(f.text, f.language, f.user_id) for f in s.of(InterimTranscriptionFrame)]
    # the unformatted end of turn is an interim when format_turns is on; the formatted copy is the final
    assert interims == [("hel", "en", "caller"), ("hello from the", "en", "caller"),
                        ("hello from the fake", "en", "caller")]
    assert [f.text for f in s.of(TranscriptionFrame)] == [fake.expected_text]
    assert seen == {"started": [120], "turns": [(False, False), (False, False), (True, False), (True, True)],
                    "termination": [1]}
    assert stt.bad_messages == 0
    ttfb = [d for f in s.tail.frames if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, TTFBMetricsData)]
    assert ttfb and ttfb[0].value >= 0


async def test_without_format_turns_the_end_of_turn_is_the_final() -> None:
    fake = await serve()
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key,
                                   settings=AssemblyAISTTSettings(format_turns=False))
        async with Session(stt) as s:
            await s.speak(chunks=5)
            await s.until(lambda: s.of(TranscriptionFrame), "the final")
            await s.end()
    finally:
        await fake.close()
    assert fake.connections[0].query["format_turns"] == "false"
    assert [f.text for f in s.of(TranscriptionFrame)] == ["hello from the fake"]


async def test_a_malformed_message_is_skipped_and_counted() -> None:
    fake = await serve()
    fake.extra_messages = ["{not json", "[1, 2]", {**turn("x"), "words": [{"no": "text"}]}]
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key)
        async with Session(stt) as s:
            await s.speak(chunks=5)
            await s.until(lambda: s.of(TranscriptionFrame), "the final")
            await s.end()
    finally:
        await fake.close()
    assert stt.bad_messages == 3
    assert [f.text for f in s.of(TranscriptionFrame)] == [fake.expected_text]
    assert not s.errors()


async def test_a_bad_key_is_refused_in_band_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await serve()
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key="wrong-key-0123456789", retry=FAST)
        async with Session(stt) as s:
            await s.until(lambda: s.errors(), "the error")
            await asyncio.sleep(0.1)
    finally:
        await fake.close()
    (err,) = s.errors()
    assert isinstance(err.exception, ServiceAuthError) and "1008" in err.error
    assert len(fake.connections) == 1
    assert "wrong-key-0123456789" not in err.error
    assert all("wrong-key-0123456789" not in r.getMessage() for r in caplog.records)


async def test_a_session_expiry_is_reported_and_reconnected() -> None:
    fake = await serve()
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST)
        async with Session(stt) as s:
            await s.until(lambda: fake.sockets, "the first connection")
            fake.error_after_audio = (3008, "Session Expired: Maximum session duration exceeded")
            await s.speak(chunks=5)
            await s.until(lambda: len(fake.connections) == 2, "a reconnection")
            await s.speak(chunks=5)
            await s.until(lambda: s.of(TranscriptionFrame), "a transcript on the new connection")
            await s.end()
    finally:
        await fake.close()
    (err,) = s.errors()
    assert isinstance(err.exception, ServiceConnectionError) and "3008" in err.error and "Expired" in err.error
    assert fake.connections[0].close_code == 3008 and fake.connections[1].audio


def test_error_codes_map_to_flowcat_errors() -> None:
    auth = close_error(1008, "Unauthorized Connection: Missing Authorization header")
    assert isinstance(auth, ServiceAuthError) and not auth.retryable
    busy = close_error(1008, "Unauthorized Connection: Too many concurrent sessions")
    assert isinstance(busy, ServiceRateLimitError) and busy.retryable
    assert isinstance(close_error(3009, "Too many concurrent sessions"), ServiceRateLimitError)
    assert not close_error(3006, "Invalid Message Type: x").retryable
    assert not close_error(3005, "Invalid JSON: x").retryable  # the older page's 3005 for a bad message
    for code in (3005, 3007, 3008, 1011, None):
        e = close_error(code, "x")
        assert isinstance(e, ServiceConnectionError) and e.retryable, code


async def test_settings_change_sends_update_configuration() -> None:
    fake = await serve()
    try:
        stt = AssemblyAISTTService(base_url=fake.url, api_key=fake.api_key)
        async with Session(stt) as s:
            await s.until(lambda: fake.sockets and stt._ws is not None, "the connection")
            await stt.update_settings({"max_turn_silence": 700, "format_turns": False})
            await s.until(lambda: fake.connections[0].texts, "the update")
            await s.end()
    finally:
        await fake.close()
    assert fake.connections[0].texts[0] == {"type": "UpdateConfiguration", "max_turn_silence": 700}


def test_base_url_is_checked_and_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    assert AssemblyAISTTService(api_key="k").url == "wss://streaming.assemblyai.com/v3/ws"
    assert AssemblyAISTTService(api_key="k", base_url="http://127.0.0.1:9").url == "ws://127.0.0.1:9/v3/ws"
    for bad in ("ftp://127.0.0.1:9", "ws://", ""):
        with pytest.raises(ConfigError):
            AssemblyAISTTService(base_url=bad, api_key="k")
    with pytest.raises(ConfigError, match="ASSEMBLYAI_API_KEY"):
        AssemblyAISTTService(base_url="ws://127.0.0.1:1")


async def test_frames_stay_within_50_to_1000_ms_and_a_short_tail_is_padded_at_the_end() -> None:
    stt = AssemblyAISTTService(api_key="k")
    stt.sample_rate = 8000
    frames: list[bytes] = []
    texts: list[dict[str, Any]] = []

    async def send_frame(data: bytes) -> None:
        frames.append(data)

    async def send_json(obj: dict[str, Any]) -> None:
        texts.append(obj)

    stt.send_frame = send_frame  # type: ignore[method-assign]
    stt.send_json = send_json  # type: ignore[method-assign]
    stt._ws = type("WS", (), {"closed": False})()  # type: ignore[assignment]
    await stt.send_audio(chunk(0, 8000, 30))  # 30 ms: waits
    assert frames == []
    await stt.send_audio(chunk(1, 8000, 2000))  # 2030 ms: 1000, then 980 (no tail under 50 ms left), 50
    assert [len(f) // 16 for f in frames] == [1000, 980, 50]
    await stt.finalize()  # nothing left: only ForceEndpoint
    assert [len(f) // 16 for f in frames] == [1000, 980, 50]
    assert b"".join(frames) == chunk(0, 8000, 30) + chunk(1, 8000, 2000)
    await stt.send_audio(chunk(2, 8000, 20))
    await stt.finalize()  # 20 ms left at the end of speech: padded with 30 ms of silence
    assert frames[-1] == chunk(2, 8000, 20) + bytes(480)
    assert texts == [{"type": "ForceEndpoint"}, {"type": "ForceEndpoint"}]
