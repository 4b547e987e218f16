"""RimeTTSService: the conformance suite against a local JSON WebSocket fake (``/ws3``), and the wire.

Wire tests: the handshake (query options, Bearer auth), the exact messages (text with a
``contextId`` and a flush per sentence, ``eos`` at the end), word timestamps per sentence,
``clear`` on interruption with late chunks of the old ``contextId`` dropped, an ``error``
message failing the sentence without a retry, the ``/ws2`` endpoint.
"""

from __future__ import annotations

from typing import Any

import pytest

from _fake_rime import CHAR_MS, FakeRime
from _helpers import conformance_params
from flowcat.errors import ConfigError, ServiceStatusError
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
from flowcat.services.tts import RimeTTSService, RimeTTSSettings
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.fakes import decode_tones

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)


def make_service(fake: FakeProvider) -> FrameProcessor:
    return RimeTTSService(url=fake.url + "/ws3", api_key=fake.api_key, voice_id="cove", sample_rate=16000,
                          request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


CONFORMANCE = {"tts:rime": ConformanceTarget("tts", FakeRime, make_service)}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


async def serve(cls: type[FakeRime] = FakeRime) -> FakeRime:
    fake = cls()
    await fake.start()
    return fake


def service(fake: FakeRime, path: str = "/ws3", **kw: Any) -> RimeTTSService:
    kw.setdefault("sample_rate", 16000)
    kw.setdefault("voice_id", "cove")
    return RimeTTSService(url=fake.url + path, api_key=fake.api_key, **kw)


async def run(tts: RimeTTSService, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    try:
        return await run_test(tts, frames_to_send=frames, timeout=10)
    finally:
        await close_http_sessions()


def played(frames: list[Frame], rate: int = 16000) -> str:
    return decode_tones(b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)), rate, CHAR_MS)


async def test_handshake_messages_words_and_frames_on_the_wire() -> None:
    fake = await serve()
    try:
        down, up = await run(service(fake), [LLMFullResponseStartFrame(), TextFrame("Hello there. "),
                                             TextFrame("How are you?"), LLMFullResponseEndFrame(),
                                             TTSSpeakFrame("Bye.")])
    finally:
        await fake.close()
    assert fake.paths == ["/ws3"]
    assert fake.queries == [{"speaker": "cove", "modelId": "arcana", "audioFormat": "pcm", "samplingRate": "16000",
                             "segment": "never"}]
    assert fake.headers[0]["Authorization"] == f"Bearer {fake.api_key}"
    ids = [m["contextId"] for m in fake.messages if "contextId" in m]
    assert len(set(ids)) == 3
    assert fake.messages == [
        {"text": "Hello there. ", "contextId": ids[0]}, {"operation": "flush"},
        {"text": "How are you? ", "contextId": ids[1]}, {"operation": "flush"},
        {"text": "Bye. ", "contextId": ids[2]}, {"operation": "flush"},
        {"operation": "eos"},
    ]
    assert played(down) == "hello there.how are you?bye."
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    ms = 1_000_000
    unit_ns = 12 * CHAR_MS * ms
    words = [(f.text, f.pts) for f in down if isinstance(f, TTSTextFrame)]
    assert words == [("Hello", 0), ("there.", 6 * CHAR_MS * ms), ("How", unit_ns),
                     ("are", unit_ns + 4 * CHAR_MS * ms), ("you?", unit_ns + 8 * CHAR_MS * ms), ("Bye.", 0)]
    order = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame, LLMFullResponseEndFrame))]
    assert order == [TTSStartedFrame, TTSStoppedFrame, LLMFullResponseEndFrame, TTSStartedFrame, TTSStoppedFrame]
    assert {f.sample_rate for f in down if isinstance(f, TTSAudioRawFrame)} == {16000}


async def test_ws2_and_settings_in_the_query() -> None:
    fake = await serve()
    try:
        settings = RimeTTSSettings(model="mistv2", language="eng", extra={"speedAlpha": 1.2})
        down, _ = await run(service(fake, "/ws2", settings=settings, voice_id="abbie", sample_rate=24000),
                            [TTSSpeakFrame("Hi.")])
    finally:
        await fake.close()
    assert fake.paths == ["/ws2"]
    assert fake.queries == [{"speaker": "abbie", "modelId": "mistv2", "audioFormat": "pcm", "samplingRate": "24000",
                             "segment": "never", "lang": "eng", "speedAlpha": "1.2"}]
    assert played(down, 24000) == "hi."


async def test_interruption_sends_clear_and_drops_late_chunks() -> None:
    fake = await serve()
    fake.set(Behaviour.SLOW, failures=1)
    tts = service(fake)
    try:
        down, _ = await run(tts, [TTSSpeakFrame("Hello there."), SleepFrame(0.15), InterruptionFrame(),
                                  TTSSpeakFrame("Again."), SleepFrame(0.3)])  # the next one at once
    finally:
        await fake.close()
    assert fake.messages[1:3] == [{"operation": "flush"}, {"operation": "clear"}]
    assert fake.clears == 1 and fake.late_sent == 3
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    assert played(down[cut:]) == "again."
    assert tts.contexts.stale_dropped >= 3


async def test_error_message_fails_the_sentence_without_retry() -> None:
    class ErrFake(FakeRime):
        async def synthesize(self, ws: Any, beh: Behaviour, text: str, ctx: str | None, state: dict[str, Any],
                             rate: int) -> bool:
            if text == "Two.":
                await ws.send_json({"type": "error", "message": f"Invalid speaker (key {self.api_key})"})
                return True
            return await super().synthesize(ws, beh, text, ctx, state, rate)

    fake = await serve(ErrFake)
    try:
        down, up = await run(service(fake), [TTSSpeakFrame("One."), TTSSpeakFrame("Two."), TTSSpeakFrame("Three.")])
    finally:
        await fake.close()
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and isinstance(errors[0].exception, ServiceStatusError)
    assert not errors[0].exception.retryable
    assert "Invalid speaker" in errors[0].error and fake.api_key not in errors[0].error
    assert [m["text"] for m in fake.messages if "text" in m] == ["One. ", "Two. ", "Three. "]  # not retried
    assert played(down) == "one.three."
    assert len(fake.queries) == 1  # the socket stays open after an error message


def test_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIME_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="RIME_API_KEY"):
        RimeTTSService(voice_id="cove")
    with pytest.raises(ConfigError, match="voice_id"):
        RimeTTSService(api_key="k")
    with pytest.raises(ConfigError):
        RimeTTSService(api_key="k", voice_id="cove", url="ftp://x")
    assert RimeTTSService(api_key="k", voice_id="cove").url == "wss://users-ws.rime.ai/ws3"
