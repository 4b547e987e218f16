"""The conformance scenarios of speech-to-speech (``"realtime"``) providers.

The input of an exchange is the caller speaking (audio loud enough for the fake's VAD,
then quiet audio); the fake answers with tones encoding its ``expected_text`` (see
:mod:`flowcat.testing.fakes._tones`) and transcript deltas. A realtime fake also has:
``user_text`` (the caller's transcript it reports), ``truncates`` (the truncation events it
received, each with ``item_id`` and ``audio_end_ms``), ``item_ids`` (the model's audio
items, in order), ``tool_calls`` (scripted ``(name, arguments)`` calls),
``connections`` (each with its client ``events`` and ``types()``), ``slow_chunks`` (audio chunks
of 100 ms sent before a ``SLOW`` response is barged in on), and the wire-neutral views
``session_event`` (the type of the message that configures a session), ``truncation`` (the
protocol has a truncation message), ``reports_usage`` (the protocol reports token usage; default
True), ``tool_outputs()`` (``(call_id, output)`` sent),
``continued_after_tool()`` (the model was made to, or left to, go on after the tool result)
and ``replayed_texts(connection)``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from ...frames import (
    Frame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMUsageMetricsData,
    MetricsFrame,
    TranscriptionFrame,
    TTFBMetricsData,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from ...runtime import FrameDirection
from ..fakes._tones import decode_tones
from ._fake import Behaviour

if TYPE_CHECKING:
    from ._suite import Scenario, _Session

__all__ = ["realtime_inputs", "realtime_output", "realtime_scenarios"]

UP = FrameDirection.UPSTREAM


def realtime_inputs(rate: int) -> list[Frame]:
    """300 ms of a loud tone (the caller speaking), then 300 ms of silence."""
    n = rate // 50
    t = np.arange(n) / rate
    loud = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes()
    quiet = b"\x00\x00" * n
    return [*(InputAudioRawFrame(loud, rate) for _ in range(15)), *(InputAudioRawFrame(quiet, rate) for _ in range(15))]


def _audio(frames: list[Frame]) -> tuple[bytes, int]:
    out = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
    return b"".join(f.audio for f in out), (out[0].sample_rate if out else 24000)


def realtime_output(frames: list[Frame]) -> str:
    """The text the bot's audio spells (decoded tones), stripped."""
    pcm, rate = _audio(frames)
    return decode_tones(pcm, rate).strip()


def _spoken(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, TTSTextFrame))


async def _happy_path(s: _Session) -> None:
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), f"audio spells {s.output(frames)!r}, not {s.expected()!r}"
    assert _spoken(frames) == s.fake.expected_text, f"transcript {_spoken(frames)!r}"
    fake: Any = s.fake
    users = [f for f in s.up.frames if isinstance(f, TranscriptionFrame)]
    assert [f.text for f in users] == [fake.user_text], "the caller's transcript did not go upstream"
    assert not s.errors(), [e.error for e in s.errors()]
    data = [d for f in s.down.frames if isinstance(f, MetricsFrame) for d in f.data]
    assert any(isinstance(d, TTFBMetricsData) for d in data), "no TTFB metric"
    usage = [d.value for d in data if isinstance(d, LLMUsageMetricsData)]
    assert not getattr(fake, "reports_usage", True) or usage and usage[-1].input_audio_tokens is not None and usage[-1].output_audio_tokens is not None, \
        "no usage metric with audio tokens apart"
    assert s.fake.auth_failures == 0, "the key was not presented as the vendor expects"


async def _barge_in(s: _Session) -> None:
    fake: Any = s.fake
    fake.set(Behaviour.SLOW, failures=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n0 = s.count(InterruptionFrame)
    for f in s.inputs():
        await s.task.queue_frame(f)
    await s.until(lambda: s.count(InterruptionFrame) > n0, "the interruption of the barge-in")
    if getattr(fake, "truncation", True):
        await s.until(lambda: bool(fake.truncates), "conversation.item.truncate")
        elapsed_ms = (loop.time() - t0) * 1000
        truncate = fake.truncates[-1]
        sent_ms = fake.slow_chunks * 100
        assert truncate["item_id"] == fake.item_ids[-1], truncate
        assert 0 <= truncate["audio_end_ms"] <= min(sent_ms, elapsed_ms), (truncate, sent_ms, elapsed_ms)
    await asyncio.wait_for(fake.aborted.wait(), s.target.timeout_secs)  # the response cancelled
    await asyncio.sleep(0.1)
    idx = max(i for i, f in enumerate(s.down.frames) if isinstance(f, InterruptionFrame))
    late = [f for f in s.down.frames[idx:] if isinstance(f, TTSAudioRawFrame)]
    assert not late, f"{len(late)} audio frame(s) of the cancelled response after the barge-in"
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "no normal answer after a barge-in"


async def _tool_call(s: _Session) -> None:
    fake: Any = s.fake
    fake.tool_calls.append(("get_weather", {"city": "Paris"}))
    seen: list[dict[str, Any]] = []

    async def get_weather(params: Any) -> None:
        seen.append(params.arguments)
        await params.result_callback({"temp": 21})

    s.service.register_function("get_weather", get_weather)  # type: ignore[attr-defined]
    for f in s.inputs():
        await s.task.queue_frame(f)
    await s.until(lambda: s.output(s.down.frames) == s.expected(), "the answer after the tool result")
    assert seen == [{"city": "Paris"}], seen
    results = [f for f in s.up.frames if isinstance(f, FunctionCallResultFrame)]
    assert [r.result for r in results] == [{"temp": 21}], results
    out = fake.tool_outputs()
    assert out and out[0] == ("call_1", '{"temp": 21}'), out
    assert fake.continued_after_tool(), "the model was not (or was wrongly) asked to go on after the result"


def _short_sessions(s: _Session) -> None:
    s.service.max_session_secs = 0.5  # type: ignore[attr-defined]


async def _renewal(s: _Session) -> None:
    fake: Any = s.fake
    await s.exchange()
    await s.until(lambda: len(fake.connections) >= 2, "a fresh session before the cap")
    fresh = fake.connections[1]
    await s.until(lambda: bool(fake.replayed_texts(fresh)), "the conversation replayed")
    assert fresh.types()[0] == fake.session_event, fresh.types()
    texts = fake.replayed_texts(fresh)
    assert fake.user_text in texts and fake.expected_text in texts, texts
    bytes_before = fake.audio_bytes_in
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "no answer from the fresh session"
    assert fake.audio_bytes_in > bytes_before
    assert not s.errors(), [e.error for e in s.errors()]


async def _server_error(s: _Session) -> None:
    s.fake.set(Behaviour.STREAM_ERROR, failures=1)
    await s.exchange(expect_error=True)
    errors = s.errors()
    assert errors and all(not e.fatal for e in errors), [e.error for e in errors]
    assert "server had an error" in errors[-1].error, errors[-1].error
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "no answer after a server error event"


async def _disconnect(s: _Session) -> None:
    fake: Any = s.fake
    fake.set(Behaviour.DISCONNECT, failures=1)
    await s.exchange(expect_error=True)
    await s.until(lambda: len(fake.connections) >= 2, "a reconnection")
    await s.until(lambda: fake.session_event in fake.connections[-1].types(), "the session resent")
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "the service did not recover after a disconnect"


async def _malformed(s: _Session) -> None:
    s.fake.set(Behaviour.MALFORMED, failures=1)
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "the answer did not survive malformed events"
    assert getattr(s.service, "bad_messages", 0) >= 2, "the malformed events were not counted"
    assert not s.errors(), [e.error for e in s.errors()]


def realtime_scenarios() -> list[Scenario]:
    """The realtime scenarios (called by ``_suite`` once its ``Scenario`` exists)."""
    from ._suite import Scenario

    rt = ("realtime",)
    return [
        Scenario("realtime_happy_path", rt, _happy_path),
        Scenario("realtime_barge_in_truncation", rt, _barge_in),
        Scenario("realtime_tool_call_round_trip", rt, _tool_call),
        Scenario("realtime_session_renewal", rt, _renewal, setup=_short_sessions),
        Scenario("realtime_server_error_event", rt, _server_error),
        Scenario("realtime_server_disconnect", rt, _disconnect),
        Scenario("realtime_malformed_events", rt, _malformed),
    ]
