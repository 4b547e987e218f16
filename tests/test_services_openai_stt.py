"""OpenAISTTService and GroqSTTService: the conformance suite against a local ``/audio/transcriptions``
fake (JSON and SSE answers), and the wire.

Wire tests: the multipart form (the WAV's header, sample rate and audio bytes; model,
language, prompt, response_format; ``stream``), ``Authorization: Bearer``; the SSE deltas
as interims then the final; Groq's defaults; error mapping (what is retried and what not);
a malformed answer counted; the key in no log line.
"""

from __future__ import annotations

import logging
import struct

import pytest

from _fake_openai_stt import FakeOpenAISTT
from _helpers import conformance_params
from _stt_harness import Session
from flowcat.errors import ConfigError, ServiceAuthError
from flowcat.frames import InterimTranscriptionFrame, MetricsFrame, TranscriptionFrame, TTFBMetricsData
from flowcat.runtime import FrameProcessor
from flowcat.services import Backoff
from flowcat.services.stt import GroqSTTService, OpenAISTTService, OpenAISTTSettings
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_openai(fake: FakeProvider) -> FrameProcessor:  # streamed (SSE) answers
    return OpenAISTTService(base_url=f"{fake.url}/v1", api_key=fake.api_key, stream=True, retry=FAST,
                            request_timeout_secs=2.0, reconnect_timeout_secs=3.0)


def make_groq(fake: FakeProvider) -> FrameProcessor:  # JSON answers
    return GroqSTTService(base_url=f"{fake.url}/openai/v1", api_key=fake.api_key, retry=FAST,
                          request_timeout_secs=2.0, reconnect_timeout_secs=3.0)


CONFORMANCE = {
    "stt:openai": ConformanceTarget("stt", FakeOpenAISTT, make_openai),
    "stt:groq": ConformanceTarget("stt", lambda: FakeOpenAISTT(path="/openai/v1/audio/transcriptions"), make_groq),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def serve(**kw: object) -> FakeOpenAISTT:
    fake = FakeOpenAISTT(**kw)  # type: ignore[arg-type]
    await fake.start()
    return fake


def wav_parts(wav: bytes) -> tuple[int, int, int, bytes]:
    """(sample rate, channels, bits per sample, PCM) of a canonical 44-byte-header WAV."""
    assert wav[:4] == b"RIFF" and wav[8:16] == b"WAVEfmt " and wav[36:40] == b"data"
    fmt, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", wav[20:36])
    assert fmt == 1
    (size,) = struct.unpack("<I", wav[40:44])
    assert size == len(wav) - 44 and struct.unpack("<I", wav[4:8])[0] == len(wav) - 8
    return rate, channels, bits, wav[44:]


async def test_the_multipart_form_carries_the_utterance_as_wav_and_the_fields() -> None:
    fake = await serve()
    try:
        settings = OpenAISTTSettings(model="whisper-1", language="fr", prompt="flowcat, Paris", temperature=0.0)
        stt = OpenAISTTService(base_url=f"{fake.url}/v1", api_key=fake.api_key, settings=settings, user_id="u1")
        async with Session(stt, rate=8000) as s:
            await s.speak(chunks=6)
            await s.until(lambda: s.of(TranscriptionFrame), "the transcript")
            await s.end()
    finally:
        await fake.close()
    (up,) = fake.uploads
    assert up.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert up.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert up.order == ["file", "model", "response_format", "language", "prompt", "temperature"]
    assert (up.filename, up.content_type) == ("audio.wav", "audio/wav")
    assert up.fields == {"model": "whisper-1", "response_format": "json", "language": "fr",
                         "prompt": "flowcat, Paris", "temperature": "0.0"}
    assert wav_parts(up.file) == (8000, 1, 16, bytes(s.sent))
    (final,) = s.of(TranscriptionFrame)
    assert (final.text, final.language, final.user_id, final.finalized) == (fake.expected_text, "fr", "u1", True)
    assert not s.of(InterimTranscriptionFrame)


async def test_a_streamed_answer_gives_interims_then_the_final() -> None:
    fake = await serve()
    fake.extra_events = ['{"type": "transcript.text.something_new"}', ": comment-free junk is fine"]
    try:
        stt = OpenAISTTService(base_url=f"{fake.url}/v1", api_key=fake.api_key, stream=True, user_id="u2")
        async with Session(stt) as s:
            await s.speak(chunks=5)
            await s.until(lambda: s.of(TranscriptionFrame), "the transcript")
            await s.end()
    finally:
        await fake.close()
    (up,) = fake.uploads
    assert up.fields["stream"] == "true" and up.fields["model"] == "gpt-4o-transcribe"
    assert [(f.text, f.language, f.user_id) for f in s.of(InterimTranscriptionFrame)] == [
        ("Hel", "en", "u2"), ("Hello fr", "en", "u2"), (fake.expected_text, "en", "u2")]
    assert [f.text for f in s.of(TranscriptionFrame)] == [fake.expected_text]
    kinds = [type(f) for f in s.tail.frames if isinstance(f, (InterimTranscriptionFrame, TranscriptionFrame))]
    assert kinds[-1] is TranscriptionFrame
    ttfb = [d for f in s.tail.frames if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, TTFBMetricsData)]
    assert ttfb and ttfb[0].value >= 0
    assert stt.bad_messages == 1  # the non-JSON "data" line


async def test_groq_defaults_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-from-env")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    groq = GroqSTTService()
    assert groq.url == "https://api.groq.com/openai/v1/audio/transcriptions"
    assert groq.settings.model == "whisper-large-v3-turbo" and groq._api_key is not None
    assert groq._api_key.reveal() == "gsk-from-env"
    assert OpenAISTTService(api_key="k").url == "https://api.openai.com/v1/audio/transcriptions"
    assert OpenAISTTService(api_key="k", base_url="http://127.0.0.1:8000/v1/", model="large-v3").url == \
        "http://127.0.0.1:8000/v1/audio/transcriptions"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAISTTService()
    with pytest.raises(ConfigError):
        OpenAISTTService(api_key="k", base_url="ws://127.0.0.1:1")


async def test_groq_against_its_path() -> None:
    fake = await serve(path="/openai/v1/audio/transcriptions")
    try:
        stt = GroqSTTService(base_url=f"{fake.url}/openai/v1", api_key=fake.api_key)
        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: s.of(TranscriptionFrame), "the transcript")
            await s.end()
    finally:
        await fake.close()
    (up,) = fake.uploads
    assert up.fields == {"model": "whisper-large-v3-turbo", "response_format": "json", "language": "en"}
    assert wav_parts(up.file)[3] == bytes(s.sent)


async def test_a_bad_key_is_reported_once_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await serve()
    try:
        stt = OpenAISTTService(base_url=f"{fake.url}/v1", api_key="sk-wrong-0123456789abc", retry=FAST)
        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: s.errors(), "the error")
            await s.end()
    finally:
        await fake.close()
    (err,) = s.errors()
    assert isinstance(err.exception, ServiceAuthError) and len(fake.uploads) == 1
    assert all("sk-wrong-0123456789abc" not in r.getMessage() for r in caplog.records)


async def test_an_answer_cut_after_200_is_reported_not_resent() -> None:
    fake = await serve()
    fake.set(Behaviour.DISCONNECT, failures=1)
    try:
        stt = OpenAISTTService(base_url=f"{fake.url}/v1", api_key=fake.api_key, retry=FAST)
        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: s.errors(), "the error")
            await s.speak(chunks=3)
            await s.until(lambda: s.of(TranscriptionFrame), "the next utterance")
            await s.end()
    finally:
        await fake.close()
    assert len(fake.uploads) == 2 and len(s.errors()) == 1


async def test_a_garbled_answer_is_counted_and_asked_again() -> None:
    fake = await serve()
    fake.set(Behaviour.MALFORMED, failures=1)
    try:
        stt = OpenAISTTService(base_url=f"{fake.url}/v1", api_key=fake.api_key, retry=FAST)
        async with Session(stt) as s:
            await s.speak(chunks=3)
            await s.until(lambda: s.of(TranscriptionFrame), "the transcript")
            await s.end()
    finally:
        await fake.close()
    assert len(fake.uploads) == 2 and fake.uploads[0].file == fake.uploads[1].file
    assert stt.bad_messages == 1 and not s.errors()
