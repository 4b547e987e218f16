"""DeepgramSTTService: the conformance suite against a local ``/v1/listen`` fake, and the wire.

Wire tests: the handshake (path, query parameters, ``Authorization: Token``), binary
audio (never an empty frame), ``KeepAlive`` on idle, ``Finalize`` at end of speech,
``CloseStream`` at the end; ``Results`` into interim/final transcription frames with
language and the raw result; events; reconnect after a drop; no connection ever leaves
the machine (no silent fallback to Deepgram's host).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from _fake_deepgram import FakeDeepgram, results
from _helpers import conformance_params
from flowcat.errors import ConfigError, ServiceAuthError
from flowcat.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services import Backoff, close_http_sessions
from flowcat.services.stt import DeepgramSTTService, DeepgramSTTSettings
from flowcat.services.stt.deepgram import listen_url
from flowcat.testing import fakes
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
    return DeepgramSTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST, reconnect_timeout_secs=2.0,
                              close_timeout_secs=0.5)


TARGET = ConformanceTarget("stt", FakeDeepgram, make_service)
CONFORMANCE = {"stt:deepgram": TARGET}  # the registry test checks every provider has one
VENDOR_KEY = "sk-vendor-fake-0123456789-SECRET"
# The benchmark's vendor fake (flowcat.testing.fakes); the suite's input is quiet (-66 dBFS),
# so the fake's speech threshold is set below it.
VENDOR_TARGET = ConformanceTarget(
    "stt",
    lambda: fakes.FakeDeepgram(["hello from the fake"], speech_dbfs=-90.0, min_speech_ms=10, api_key=VENDOR_KEY,
                               echo_key_in_errors=True),
    make_service,
)


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


@pytest.mark.parametrize("scenario", scenarios("stt"), ids=str)
async def test_conformance_against_the_benchmark_fake(scenario: Scenario) -> None:
    await run_scenario(VENDOR_TARGET, scenario)


# ----------------------------------------------------------------------------- harness


class Capture(FrameProcessor):
    def __init__(self) -> None:
        super().__init__(name="capture")
        self.frames: list[Frame] = []
        self.up: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        (self.frames if direction is FrameDirection.DOWNSTREAM else self.up).append(frame)
        await self.push_frame(frame, direction)


class Session:
    def __init__(self, stt: DeepgramSTTService, rate: int = 16000) -> None:
        self.stt = stt
        self.head = Capture()
        self.tail = Capture()
        self.rate = rate
        self.task = PipelineTask(Pipeline([self.head, stt, self.tail]),
                                 params=PipelineParams(audio_in_sample_rate=rate))
        self.runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Session:
        self.runner = asyncio.get_running_loop().create_task(self.task.run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.runner is not None and not self.runner.done():
            await self.task.cancel()
            await asyncio.wait({self.runner}, timeout=5)
        await close_http_sessions()

    async def speak(self, chunks: int = 5) -> None:
        await self.task.queue_frame(VADUserStartedSpeakingFrame())
        for i in range(chunks):
            await self.task.queue_frame(InputAudioRawFrame(bytes([i + 1, 0]) * (self.rate // 50), self.rate))
        await self.task.queue_frame(VADUserStoppedSpeakingFrame())

    async def until(self, cond: Any, what: str, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not cond():
            assert loop.time() < end, f"timed out waiting for {what}"
            await asyncio.sleep(0.005)

    def of(self, t: type[Frame]) -> list[Any]:
        return [f for f in self.tail.frames if isinstance(f, t)]

    async def end(self) -> None:
        await self.task.queue_frame(EndFrame())
        assert self.runner is not None
        await asyncio.wait_for(self.runner, 5)


async def serve() -> FakeDeepgram:
    fake = FakeDeepgram()
    await fake.start()
    return fake


# ----------------------------------------------------------------------------- wire


async def test_handshake_audio_finalize_and_close_stream_on_the_wire() -> None:
    fake = await serve()
    try:
        settings = DeepgramSTTSettings(model="nova-3-general", language="en-US", smart_format=True, endpointing=300,
                                       utterance_end_ms=1000, vad_events=True, extra={"diarize": True})
        stt = DeepgramSTTService(base_url=fake.url, api_key=fake.api_key, settings=settings)
        async with Session(stt, rate=8000) as s:
            await s.speak(chunks=3)
            await s.until(lambda: s.of(TranscriptionFrame), "the final transcript")
            await s.end()
    finally:
        await fake.close()
    (conn,) = fake.connections
    assert conn.query == {"model": "nova-3-general", "language": "en-US", "encoding": "linear16",
                          "sample_rate": "8000", "channels": "1", "interim_results": "true", "punctuate": "true",
                          "smart_format": "true", "endpointing": "300", "utterance_end_ms": "1000",
                          "vad_events": "true", "diarize": "true"}
    assert conn.headers["Authorization"] == f"Token {fake.api_key}"
    assert bytes(conn.audio) == b"".join(bytes([i + 1, 0]) * 160 for i in range(3))
    assert conn.empty_frames == 0
    assert conn.texts == [{"type": "Finalize"}, {"type": "CloseStream"}]


async def test_results_become_interim_and_final_frames_with_language_and_result() -> None:
    fake = await serve()
    fake.extra_messages = [
        {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 0.1},
        results("ignored final", final=True, speech_final=False, languages=["fr"]),
        {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 0.3},
        {"type": "SomethingNew", "x": 1},  # unknown: logged and skipped, not malformed
        results("", final=True, from_finalize=True),  # empty: no frame
    ]
    seen: dict[str, list[Any]] = {"speech_final": [], "metadata": [], "started": [], "utterance_end": []}
    try:
        stt = DeepgramSTTService(base_url=fake.url, api_key=fake.api_key)

        @stt.event_handler("on_speech_final")
        async def on_final(_svc: Any, msg: Any) -> None:
            seen["speech_final"].append(msg["channel"]["alternatives"][0]["transcript"])

        @stt.event_handler("on_metadata")
        async def on_meta(_svc: Any, msg: Any) -> None:
            seen["metadata"].append(msg["request_id"])

        @stt.event_handler("on_speech_started")
        async def on_started(_svc: Any, msg: Any) -> None:
            seen["started"].append(msg["timestamp"])

        @stt.event_handler("on_utterance_end")
        async def on_end(_svc: Any, msg: Any) -> None:
            seen["utterance_end"].append(msg["last_word_end"])

        async with Session(stt) as s:
            await s.speak(chunks=2)
            await s.until(lambda: len(s.of(TranscriptionFrame)) == 2, "two finals")
            await s.end()
    finally:
        await fake.close()
    interim = s.of(InterimTranscriptionFrame)
    assert interim and all(f.text == "hel" and f.language == "en" for f in interim)
    finals = s.of(TranscriptionFrame)
    assert [(f.text, f.language, f.finalized) for f in finals] == [("ignored final", "fr", True),
                                                                  (fake.expected_text, "en", True)]
    assert finals[1].result["channel"]["alternatives"][0]["confidence"] == 0.98
    assert finals[1].result["speech_final"] is True
    # an interim never follows the final of its span here: all interims came before the finals
    kinds = [type(f) for f in s.tail.frames if isinstance(f, (InterimTranscriptionFrame, TranscriptionFrame))]
    assert kinds.index(TranscriptionFrame) > max(i for i, k in enumerate(kinds) if k is InterimTranscriptionFrame)
    assert seen == {"speech_final": [fake.expected_text], "metadata": ["req-1"], "started": [0.1],
                    "utterance_end": [0.3]}
    assert stt.bad_messages == 0


async def test_keepalive_is_sent_as_text_when_no_audio_flows() -> None:
    fake = await serve()
    try:
        stt = DeepgramSTTService(base_url=fake.url, api_key=fake.api_key, keepalive_secs=0.05)
        async with Session(stt) as s:
            await s.until(lambda: len(fake.connections) == 1 and len(fake.connections[0].texts) >= 2, "keepalives")
            await s.end()
    finally:
        await fake.close()
    texts = fake.connections[0].texts
    assert texts[:2] == [{"type": "KeepAlive"}, {"type": "KeepAlive"}]
    assert texts[-1] == {"type": "CloseStream"}
    assert not fake.connections[0].audio and fake.connections[0].empty_frames == 0


async def test_reconnects_after_the_server_drops_the_socket() -> None:
    fake = await serve()
    try:
        stt = DeepgramSTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST)
        async with Session(stt) as s:
            await s.until(lambda: fake.sockets, "the first connection")
            await fake.sockets[0].close(code=1011, message=b"NET-0001")
            await s.until(lambda: len(fake.connections) == 2, "a reconnection")
            await s.speak(chunks=2)
            await s.until(lambda: s.of(TranscriptionFrame), "a transcript on the new connection")
            await s.end()
    finally:
        await fake.close()
    errors = [f for f in s.head.up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and "1011" in errors[0].error and "NET-0001" in errors[0].error
    assert fake.connections[1].audio  # the audio went to the new socket


def test_url_never_falls_back_to_the_real_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    assert listen_url(None) == "wss://api.deepgram.com/v1/listen"
    assert listen_url("http://127.0.0.1:9000") == "ws://127.0.0.1:9000/v1/listen"
    assert listen_url("https://dg.example.org/") == "wss://dg.example.org/v1/listen"
    assert listen_url("ws://127.0.0.1:9000/v1/listen") == "ws://127.0.0.1:9000/v1/listen"
    assert listen_url("127.0.0.1:9000") == "wss://127.0.0.1:9000/v1/listen"
    for bad in ("ftp://127.0.0.1:9000", "ws://", ""):
        with pytest.raises(ConfigError):
            DeepgramSTTService(base_url=bad, api_key="k")
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        DeepgramSTTService(base_url="ws://127.0.0.1:1")


async def test_a_refused_local_connection_stays_local(outside_attempts: list[str]) -> None:
    """A base_url whose server is gone: errors and retries on that host, never Deepgram's."""
    fake = await serve()
    url = fake.url
    await fake.close()
    stt = DeepgramSTTService(base_url=url, api_key="k", retry=Backoff(initial=0.01, max_attempts=2),
                             reconnect_timeout_secs=1.0)
    async with Session(stt) as s:
        await s.until(lambda: any(isinstance(f, ErrorFrame) for f in s.head.up), "the connect error")
    assert outside_attempts == []


async def test_the_guard_catches_the_real_host(outside_attempts: list[str]) -> None:
    stt = DeepgramSTTService(api_key="k", retry=Backoff(initial=0.01, max_attempts=1), reconnect_timeout_secs=1.0)
    async with Session(stt) as s:
        await s.until(lambda: any(isinstance(f, ErrorFrame) for f in s.head.up), "the connect error")
    assert outside_attempts and all(h == "api.deepgram.com" for h in outside_attempts)
    outside_attempts.clear()


async def test_a_refused_handshake_names_deepgrams_reason_and_is_not_retried() -> None:
    fake = await serve()
    fake.set(Behaviour.STATUS, failures=-1, status=403)
    try:
        stt = DeepgramSTTService(base_url=fake.url, api_key=fake.api_key, retry=FAST)
        async with Session(stt) as s:
            await s.until(lambda: any(isinstance(f, ErrorFrame) for f in s.head.up), "the error")
            await asyncio.sleep(0.1)
    finally:
        await fake.close()
    (err,) = [f for f in s.head.up if isinstance(f, ErrorFrame)]
    assert isinstance(err.exception, ServiceAuthError) and "(injected)" in err.error
    assert fake.api_key not in err.error and len(fake.connections) == 1
