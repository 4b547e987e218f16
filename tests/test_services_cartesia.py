"""CartesiaTTSService: the conformance suite against a local ``/tts/websocket`` fake, and the wire.

Wire tests: the handshake (``api_key``/``cartesia_version`` query, ``Cartesia-Version``
header, or a Bearer header), the exact generation requests (one Cartesia context per
utterance, ``continue: true`` per sentence, a manual flush per sentence, an empty
``continue: false`` closing it), ``cancel`` on interruption with the late audio
dropped, word timestamps in either documented reading, and error messages.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from _fake_cartesia import FakeCartesia
from _helpers import conformance_params
from flowcat.errors import ConfigError, ServiceStatusError
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
)
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff, close_http_sessions
from flowcat.services.tts import CartesiaTTSService, CartesiaTTSSettings
from flowcat.services.tts.cartesia import socket_url
from flowcat.testing import SleepFrame, fakes, run_test
from flowcat.testing.conformance import (
    Behaviour,
    ConformanceTarget,
    FakeProvider,
    Scenario,
    run_scenario,
    scenarios,
)

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return CartesiaTTSService(base_url=fake.url, api_key=fake.api_key, voice_id="voice-1", sample_rate=16000,
                              request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


TARGET = ConformanceTarget("tts", FakeCartesia, make_service)
CONFORMANCE = {"tts:cartesia": TARGET}  # the registry test checks every provider has one
VENDOR_KEY = "sk-vendor-fake-0123456789-SECRET"
# The benchmark's vendor fake (flowcat.testing.fakes).
VENDOR_TARGET = ConformanceTarget(
    "tts", lambda: fakes.FakeCartesia(api_key=VENDOR_KEY, echo_key_in_errors=True), make_service
)


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


@pytest.mark.parametrize("scenario", scenarios("tts"), ids=str)
async def test_conformance_against_the_benchmark_fake(scenario: Scenario) -> None:
    await run_scenario(VENDOR_TARGET, scenario)


# ----------------------------------------------------------------------------- helpers


async def serve(**kw: Any) -> FakeCartesia:
    fake = FakeCartesia(**kw)
    await fake.start()
    return fake


def service(fake: FakeCartesia, **kw: Any) -> CartesiaTTSService:
    kw.setdefault("sample_rate", 16000)
    return CartesiaTTSService(base_url=fake.url, api_key=fake.api_key, voice_id="voice-1", **kw)


def response(*texts: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *[TextFrame(t) for t in texts], LLMFullResponseEndFrame()]


async def run(tts: CartesiaTTSService, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    try:
        return await run_test(tts, frames_to_send=frames, timeout=10)
    finally:
        await close_http_sessions()


def gen(cid: str, transcript: str, *, more: bool = True, flush: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"model_id": "sonic-3", "transcript": transcript, "voice": {"mode": "id", "id": "voice-1"},
                           "context_id": cid,
                           "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
                           "add_timestamps": True, "continue": more, "language": "en"}
    if flush:
        msg["flush"] = True
    return msg


# ----------------------------------------------------------------------------- wire


async def test_handshake_and_requests_on_the_wire() -> None:
    fake = await serve()
    try:
        down, _ = await run(service(fake), [*response("Hello there. ", "How are you?"), TTSSpeakFrame("Bye.")])
    finally:
        await fake.close()
    assert fake.queries == [{"cartesia_version": "2025-04-16", "api_key": fake.api_key}]
    assert fake.headers[0]["Cartesia-Version"] == "2025-04-16" and "Authorization" not in fake.headers[0]
    a = fake.messages[0]["context_id"]
    b = fake.messages[-2]["context_id"]
    assert a != b
    assert fake.messages == [
        gen(a, "Hello there."), gen(a, "", flush=True), gen(a, "How are you?"), gen(a, "", flush=True),
        gen(a, "", more=False),  # the response's context ends when the next utterance starts
        gen(b, "Bye."), gen(b, "", flush=True), gen(b, "", more=False),  # and at the end of the pipeline
    ]
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert audio == fake.expected_audio * 3


async def test_the_context_is_closed_when_the_utterance_is_complete() -> None:
    fake = await serve()
    try:
        # cancelled at the end (no EndFrame): the close can only come from the end of the response
        down, _ = await run_test(service(fake), frames_to_send=[*response("Hi there."), SleepFrame(0.2)],
                                 send_end_frame=False, timeout=10)
    finally:
        await close_http_sessions()
        await fake.close()
    a = fake.messages[0]["context_id"]
    assert fake.messages == [gen(a, "Hi there."), gen(a, "", flush=True), gen(a, "", more=False)]
    assert any(isinstance(f, TTSStoppedFrame) for f in down)


async def test_bearer_auth_and_settings() -> None:
    fake = await serve()
    try:
        settings = CartesiaTTSSettings(model="sonic-2", voice="v2", language="fr", add_timestamps=False,
                                       max_buffer_delay_ms=0, extra={"speed": "fast"})
        tts = CartesiaTTSService(base_url=fake.url + "/tts/websocket", api_key=fake.api_key, settings=settings,
                                 sample_rate=8000, auth="bearer", cartesia_version="2026-03-01")
        await run(tts, [TTSSpeakFrame("Salut.")])
    finally:
        await fake.close()
    assert fake.queries == [{"cartesia_version": "2026-03-01"}]
    assert fake.headers[0]["Authorization"] == f"Bearer {fake.api_key}"
    first = fake.messages[0]
    assert first == {"model_id": "sonic-2", "transcript": "Salut.", "voice": {"mode": "id", "id": "v2"},
                     "context_id": first["context_id"],
                     "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
                     "add_timestamps": False, "continue": True, "language": "fr", "max_buffer_delay_ms": 0,
                     "speed": "fast"}


@pytest.mark.parametrize("relative", [False, True], ids=["from-context", "from-transcript"])
async def test_word_timestamps_in_either_reading_give_the_same_pts(relative: bool) -> None:
    fake = await serve(relative=relative)
    try:
        down, _ = await run(service(fake), response("Hello there. ", "How are you?"))
    finally:
        await fake.close()
    unit_ns = len(fake.expected_audio) * 1_000_000_000 // 32000  # 64 ms of audio per unit
    words = [(f.text, f.pts) for f in down if isinstance(f, TTSTextFrame)]
    assert words == [("Hello", 0), ("there.", 10_000_000), ("How", unit_ns), ("are", unit_ns + 10_000_000),
                     ("you?", unit_ns + 20_000_000)]
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame, AggregatedTextFrame,
                                                     LLMFullResponseEndFrame)) and not isinstance(f, TTSTextFrame)]
    assert kinds == [AggregatedTextFrame, TTSStartedFrame, AggregatedTextFrame, TTSStoppedFrame,
                     LLMFullResponseEndFrame]


async def test_interruption_sends_cancel_and_drops_late_audio() -> None:
    fake = await serve()
    fake.set(Behaviour.SLOW, failures=1)
    tts = service(fake)
    try:
        down, _ = await run(tts, [TTSSpeakFrame("Hello there."), SleepFrame(0.15), InterruptionFrame(),
                                  SleepFrame(0.3), TTSSpeakFrame("Again.")])
    finally:
        await fake.close()
    first = fake.messages[0]["context_id"]
    assert {"context_id": first, "cancel": True} in fake.messages
    assert fake.cancelled == [first] and fake.late_sent > 0
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    old_ctx = next(f.context_id for f in down if isinstance(f, TTSAudioRawFrame))
    assert not [f for f in down[cut:] if isinstance(f, TTSAudioRawFrame) and f.context_id == old_ctx]
    assert tts.contexts.stale_dropped > 0
    second = [m for m in fake.messages if m.get("transcript") == "Again."]
    assert second and second[0]["context_id"] != first  # a new Cartesia context after the interruption
    assert b"".join(f.audio for f in down[cut:] if isinstance(f, TTSAudioRawFrame)) == fake.expected_audio


@pytest.mark.parametrize("error", [
    {"type": "error", "done": True, "title": "Invalid voice", "message": "Voice not found", "error_code": "bad_voice",
     "status_code": 400},
    {"type": "error", "done": True, "error": "Invalid model: nope", "status_code": 400},  # 2024-11-13 shape
], ids=["current", "older"])
async def test_error_message_fails_the_unit_without_retry(error: dict[str, Any]) -> None:
    class ErrFake(FakeCartesia):
        async def context(self, ws: Any, cid: str, ctx: dict[str, Any]) -> None:
            await ws.send_json({**error, "context_id": cid})

    fake = ErrFake()
    await fake.start()
    try:
        down, up = await run(service(fake, retry=FAST), [TTSSpeakFrame("Hello.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, ServiceStatusError)
    assert errors[0].exception.status_code == 400
    assert (error.get("message") or error["error"]) in errors[0].error
    assert len([m for m in fake.messages if m.get("transcript") == "Hello."]) == 1  # a 400 is not retried
    assert [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame))] == [TTSStartedFrame,
                                                                                            TTSStoppedFrame]


def test_url_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    assert socket_url(None) == "wss://api.cartesia.ai/tts/websocket"
    assert socket_url("http://127.0.0.1:9") == "ws://127.0.0.1:9/tts/websocket"
    with pytest.raises(ConfigError, match="CARTESIA_API_KEY"):
        CartesiaTTSService()
    with pytest.raises(ConfigError):
        CartesiaTTSService(api_key="k", base_url="ftp://x")
    with pytest.raises(ConfigError):
        CartesiaTTSService(api_key="k", auth="cookie")
    monkeypatch.setenv("CARTESIA_API_KEY", "car-key-0123456789")
    assert CartesiaTTSService().connect_params()[0]["api_key"] == "car-key-0123456789"


async def test_reconnects_after_the_server_closes_the_socket() -> None:
    fake = await serve()
    tts = service(fake, retry=FAST)
    try:
        async def close_first() -> None:
            await fake.context_closed.wait()  # the first utterance is complete
            await fake.sockets[0].close()

        closer = asyncio.get_running_loop().create_task(close_first())
        down, up = await run(tts, [TTSSpeakFrame("One."), SleepFrame(0.3), TTSSpeakFrame("Two.")])
        await closer
    finally:
        await fake.close()
    assert len(fake.queries) == 2
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    assert b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame)) == fake.expected_audio * 2
