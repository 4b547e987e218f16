"""The provider conformance suite: scenarios every STT, LLM and TTS provider passes
against a local fake of its vendor protocol.

A provider's test module plugs in a :class:`ConformanceTarget` (the fake, and a
factory for the service pointed at it) and parametrises over :func:`scenarios`::

    TARGET = ConformanceTarget("llm", make_fake=FakeOpenAI, make_service=make_llm)

    @pytest.mark.parametrize("scenario", scenarios("llm"), ids=str)
    async def test_conformance(scenario: Scenario) -> None:
        await run_scenario(TARGET, scenario)

Every scenario also checks that the API key appears in no log line (any logger, DEBUG
and up) and in no ``ErrorFrame``, and that no background task failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import ServiceTimeout
from ...frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    LLMUsageMetricsData,
    MetricsFrame,
    TranscriptionFrame,
    TTFBMetricsData,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    TTSUsageMetricsData,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from ...runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from .._harness import CaptureProcessor
from ._fake import Behaviour, FakeProvider
from ._realtime import realtime_inputs, realtime_output, realtime_scenarios

__all__ = ["ConformanceTarget", "Scenario", "run_scenario", "scenarios"]

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


@dataclass
class ConformanceTarget:
    """What a provider plugs into the suite.

    Attributes:
        kind: ``"llm"``, ``"tts"``, ``"stt"`` or ``"realtime"``.
        make_fake: Builds the (not yet started) fake.
        make_service: Builds the service for a started fake (``fake.url``, ``fake.api_key``).
            Give it short bounds: the suite expects a hung request to fail within
            ``timeout_secs`` and retries to back off for tens of milliseconds.
        timeout_secs: Bound on each wait of the suite.
        input_sample_rate: STT (and realtime) input rate.
    """

    kind: str
    make_fake: Callable[[], FakeProvider]
    make_service: Callable[[FakeProvider], FrameProcessor]
    timeout_secs: float = 5.0
    input_sample_rate: int = 16000


@dataclass(frozen=True)
class Scenario:
    """One conformance scenario."""

    name: str
    kinds: tuple[str, ...]
    run: Callable[[_Session], Awaitable[None]] = field(repr=False)
    setup: Callable[[_Session], None] | None = field(default=None, repr=False)
    """Called once the service is built, before the pipeline starts."""

    def __str__(self) -> str:
        return self.name


class _KeyLeakHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.task_failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string is not our concern here
            msg = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            msg += " | " + repr(record.exc_info[1])
        self.lines.append(msg)
        if "background task" in msg and "failed" in msg:
            self.task_failures.append(msg)


class _Session:
    """One pipeline ``capture-up → service → capture-down`` and the fake behind it."""

    def __init__(self, target: ConformanceTarget, fake: FakeProvider) -> None:
        self.target = target
        self.fake = fake
        self.kind = target.kind
        self.service = target.make_service(fake)
        self.up = CaptureProcessor(UP, name="conformance-up")
        self.down = CaptureProcessor(DOWN, name="conformance-down")
        self.task = PipelineTask(
            Pipeline([self.up, self.service, self.down]),
            params=PipelineParams(enable_metrics=True, enable_usage_metrics=True,
                                  audio_in_sample_rate=target.input_sample_rate),
        )
        self.runner: asyncio.Task[None] | None = None
        self.exchanges = 0

    async def start(self) -> None:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        self.runner = asyncio.get_running_loop().create_task(self.task.run())
        await asyncio.wait_for(started.wait(), self.target.timeout_secs)

    # ----------------------------------------------------------- inputs

    def inputs(self) -> list[Frame]:
        if self.kind == "llm":
            return [LLMContextFrame(LLMContext([{"role": "user", "content": "Say hello."}]))]
        if self.kind == "tts":
            return [TTSSpeakFrame("Hello there.")]
        rate = self.target.input_sample_rate
        if self.kind == "realtime":
            return realtime_inputs(rate)
        chunk = b"\x10\x00" * (rate // 50)
        audio: list[Frame] = [InputAudioRawFrame(chunk, rate) for _ in range(10)]
        return [VADUserStartedSpeakingFrame(), *audio, VADUserStoppedSpeakingFrame()]

    def done_type(self) -> type[Frame]:
        return {"llm": LLMFullResponseEndFrame, "tts": TTSStoppedFrame, "stt": TranscriptionFrame,
                "realtime": LLMFullResponseEndFrame}[self.kind]

    def output_type(self) -> type[Frame]:
        return {"llm": LLMTextFrame, "tts": TTSAudioRawFrame, "stt": TranscriptionFrame,
                "realtime": TTSAudioRawFrame}[self.kind]

    def output(self, frames: list[Frame]) -> Any:
        if self.kind == "realtime":
            return realtime_output(frames)
        if self.kind == "tts":
            return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))
        if self.kind == "llm":
            return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))
        return " ".join(f.text for f in frames if isinstance(f, TranscriptionFrame))

    def expected(self) -> Any:
        if self.kind == "realtime":
            return self.fake.expected_text.lower()
        return self.fake.expected_audio if self.kind == "tts" else self.fake.expected_text

    # ------------------------------------------------------------ waits

    def count(self, t: type[Frame], direction: FrameDirection = DOWN) -> int:
        frames = self.down.frames if direction is DOWN else self.up.frames
        return sum(1 for f in frames if isinstance(f, t))

    async def until(self, cond: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.target.timeout_secs
        while not cond():
            if loop.time() > end:
                raise AssertionError(f"{self.target.kind}: timed out waiting for {what}")
            await asyncio.sleep(0.005)

    async def exchange(self, *, expect_error: bool = False) -> list[Frame]:
        """Send one input; wait until it is answered (or failed); return the frames it produced."""
        start = len(self.down.frames)
        done0, err0 = self.count(self.done_type()), self.count(ErrorFrame, UP)
        for f in self.inputs():
            await self.task.queue_frame(f)
        if expect_error:
            await self.until(lambda: self.count(ErrorFrame, UP) > err0, "an ErrorFrame")
        else:
            await self.until(lambda: self.count(self.done_type()) > done0, self.done_type().__name__)
        if self.kind != "stt":
            await self.until(lambda: self.count(self.done_type()) > done0, "the end of the response")
        self.exchanges += 1
        return self.down.frames[start:]

    def errors(self) -> list[ErrorFrame]:
        return [f for f in self.up.frames if isinstance(f, ErrorFrame)]

    async def end(self) -> None:
        await self.task.queue_frame(_end_frame())
        assert self.runner is not None
        await asyncio.wait_for(self.runner, self.target.timeout_secs)


def _end_frame() -> Frame:
    from ...frames import EndFrame

    return EndFrame()


# ------------------------------------------------------------------ scenarios


async def _happy_path(s: _Session) -> None:
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), f"output {s.output(frames)!r} != {s.expected()!r}"
    assert not s.errors(), [e.error for e in s.errors()]
    data = [d for f in frames if isinstance(f, MetricsFrame) for d in f.data]
    assert any(isinstance(d, TTFBMetricsData) and d.value >= 0 for d in data), "no TTFB metric"
    if s.kind == "llm":
        assert any(isinstance(d, LLMUsageMetricsData) for d in data), "no usage metric"
    if s.kind == "tts":
        assert any(isinstance(d, TTSUsageMetricsData) for d in data), "no usage metric"
    assert s.fake.auth_failures == 0, "the key was not presented as the vendor expects"


async def _retry_then_succeed(s: _Session, status: int) -> None:
    s.fake.set(Behaviour.STATUS, failures=2, status=status)
    frames = await s.exchange()
    assert s.output(frames) == s.expected()
    assert s.fake.requests == 3, f"{s.fake.requests} requests: {status} must be retried with backoff"
    assert not s.errors(), [e.error for e in s.errors()]


async def _retry_5xx(s: _Session) -> None:
    await _retry_then_succeed(s, 503)


async def _retry_429(s: _Session) -> None:
    await _retry_then_succeed(s, 429)


async def _client_error_not_retried(s: _Session, status: int) -> None:
    s.fake.set(Behaviour.STATUS, failures=-1, status=status)
    await s.exchange(expect_error=True)
    await asyncio.sleep(0.1)
    assert s.fake.requests == 1, f"{s.fake.requests} requests: {status} must not be retried"
    assert all(not e.fatal for e in s.errors())


async def _status_400(s: _Session) -> None:
    await _client_error_not_retried(s, 400)


async def _status_401(s: _Session) -> None:
    await _client_error_not_retried(s, 401)


async def _timeout(s: _Session) -> None:
    s.fake.set(Behaviour.HANG, failures=-1)
    await s.exchange(expect_error=True)
    assert any(isinstance(e.exception, ServiceTimeout) for e in s.errors()), [e.error for e in s.errors()]
    await asyncio.wait_for(s.fake.aborted.wait(), s.target.timeout_secs)


async def _disconnect(s: _Session) -> None:
    s.fake.set(Behaviour.DISCONNECT, failures=1)
    await s.exchange(expect_error=True)
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "the service did not recover after a disconnect"


def _on_a_socket(s: _Session) -> bool:
    caps = getattr(s.service, "capabilities", None)
    return s.kind == "stt" or getattr(caps, "transport", "") == "websocket"


async def _malformed(s: _Session) -> None:
    s.fake.set(Behaviour.MALFORMED, failures=1)
    if _on_a_socket(s):
        # On a socket one bad message is logged, counted and skipped; the stream goes on.
        await s.exchange()
        assert getattr(s.service, "bad_messages", 1) >= 1, "the malformed message was not counted"
    else:
        await s.exchange(expect_error=True)
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "the service did not survive a malformed payload"


async def _interruption(s: _Session) -> None:
    s.fake.set(Behaviour.SLOW, failures=1)
    out = s.output_type()
    n0 = s.count(out)
    for f in s.inputs():
        await s.task.queue_frame(f)
    await s.until(lambda: s.count(out) > n0, "the first output")
    await s.task.queue_frame(InterruptionFrame())
    await asyncio.wait_for(s.fake.aborted.wait(), s.target.timeout_secs)
    await asyncio.sleep(0.1)
    idx = max(i for i, f in enumerate(s.down.frames) if isinstance(f, InterruptionFrame))
    late = [f for f in s.down.frames[idx:] if isinstance(f, out)]
    assert not late, f"{len(late)} output frame(s) of the interrupted stream after the interruption"
    frames = await s.exchange()
    assert s.output(frames) == s.expected(), "the service did not answer normally after an interruption"


async def _close_during_stream(s: _Session) -> None:
    s.fake.set(Behaviour.SLOW, failures=-1)
    out = InputAudioRawFrame if s.kind == "stt" else s.output_type()
    n0 = s.count(out)
    for f in s.inputs():
        await s.task.queue_frame(f)
    await s.until(lambda: s.count(out) > n0, "the first output")
    if s.kind == "stt":
        await asyncio.sleep(0.1)  # let the audio reach the fake
    await s.task.cancel()
    assert s.runner is not None
    await asyncio.wait_for(s.runner, s.target.timeout_secs)
    await asyncio.wait_for(s.fake.aborted.wait(), s.target.timeout_secs)


_ALL = ("llm", "tts", "stt")
_STREAMED = ("llm", "tts")

_SCENARIOS = [
    Scenario("happy_path_and_metrics", _ALL, _happy_path),
    Scenario("retry_5xx_with_backoff", _ALL, _retry_5xx),
    Scenario("retry_429_with_backoff", _ALL, _retry_429),
    Scenario("status_400_not_retried", _ALL, _status_400),
    Scenario("status_401_not_retried", _ALL, _status_401),
    Scenario("timeout", _STREAMED, _timeout),
    Scenario("server_disconnect", _ALL, _disconnect),
    Scenario("malformed_payload", _ALL, _malformed),
    Scenario("interruption_mid_stream", _STREAMED, _interruption),
    Scenario("close_during_stream", _ALL, _close_during_stream),
    *realtime_scenarios(),
]


def scenarios(kind: str) -> list[Scenario]:
    """The scenarios that apply to a provider of ``kind`` (``"llm"``, ``"tts"``, ``"stt"``, ``"realtime"``)."""
    return [s for s in _SCENARIOS if kind in s.kinds]


async def run_scenario(target: ConformanceTarget, scenario: Scenario) -> None:
    """Run one scenario against a fresh fake and service, with the key-leak checks."""
    from ...services import close_http_sessions

    handler = _KeyLeakHandler()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    fake = target.make_fake()
    await fake.start()
    session = _Session(target, fake)
    if scenario.setup is not None:
        scenario.setup(session)
    try:
        await session.start()
        await scenario.run(session)
        if session.runner is not None and not session.runner.done():
            await session.end()
    finally:
        if session.runner is not None and not session.runner.done():
            await session.task.cancel()
            await asyncio.wait({session.runner}, timeout=target.timeout_secs)
        await close_http_sessions()
        await fake.close()
        root.removeHandler(handler)
        root.setLevel(old_level)
    key = fake.api_key
    assert key, "a conformance fake needs an api_key"
    leaks = [line for line in handler.lines if key in line]
    assert not leaks, f"the API key appears in {len(leaks)} log line(s), e.g. {leaks[0][:200]!r}"
    leaked_errors = [e.error for e in session.errors() if key in e.error or key in repr(e.exception)]
    assert not leaked_errors, "the API key appears in an ErrorFrame"
    assert not handler.task_failures, handler.task_failures
