"""The console call: one agent from a configuration, driven from a terminal (``flowcat console``).

No transport and no network of its own: the agent's processors run between a tap that
reports what the caller said and what the agent answered, and a sink that keeps the
agent's audio (to write a WAV) and stands in for the output transport (it pushes
``BotStartedSpeakingFrame`` / ``BotStoppedSpeakingFrame`` around each reply's audio, so
brains' silence timers and :class:`~flowcat.runtime.TurnLatencyObserver` work).

* :meth:`ConsoleCall.say` — a typed turn, without VAD or STT: a ``TranscriptionFrame``
  (a whole turn for a :class:`~flowcat.agent.BrainProcessor`) or, for the LLM brain, an
  ``LLMMessagesAppendFrame`` that runs the LLM; returns the reply's text;
* :meth:`ConsoleCall.play` — caller audio (PCM16 mono) through the full pipeline, at real
  time or as fast as the pipeline takes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..agent import BrainProcessor
from ..config import AgentPipeline
from ..frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSStoppedFrame,
    TurnLatencyMetricsData,
)
from ..runtime import (
    FrameDirection,
    FrameProcessor,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TurnLatencyObserver,
)

__all__ = ["ConsoleCall", "ConsoleEvents"]

logger = logging.getLogger("flowcat.console")

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM
CHUNK_SECS = 0.02


@dataclass
class ConsoleEvents:
    """Callbacks of a console call (each optional)."""

    on_user: Callable[[str], None] | None = None
    on_reply: Callable[[str], None] | None = None
    on_latency: Callable[[TurnLatencyMetricsData], None] | None = None
    on_audio: Callable[[bytes, int], None] | None = None


class _Tap(FrameProcessor):
    """Reports final transcripts (after the STT) or whole replies (before the TTS)."""

    def __init__(self, *, on_user: Callable[[str], None] | None = None,
                 on_reply: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.on_user = on_user
        self.on_reply = on_reply
        self._reply: list[str] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is DOWN:
            if isinstance(frame, TranscriptionFrame) and self.on_user is not None and frame.text.strip():
                self.on_user(frame.text.strip())
            elif self.on_reply is not None:
                if isinstance(frame, LLMFullResponseStartFrame):
                    self._reply = []
                elif isinstance(frame, LLMTextFrame) and self._reply is not None:
                    self._reply.append(frame.text)
                elif isinstance(frame, LLMFullResponseEndFrame) and self._reply is not None:
                    text, self._reply = "".join(self._reply).strip(), None
                    self.on_reply(text)
        await self.push_frame(frame, direction)


class _Sink(FrameProcessor):
    """Keeps the agent's audio; brackets each reply's audio with bot speaking frames."""

    def __init__(self, on_audio: Callable[[bytes, int], None] | None = None) -> None:
        super().__init__()
        self.on_audio = on_audio
        self.audio = bytearray()
        self.sample_rate: int | None = None
        self._speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is DOWN and isinstance(frame, OutputAudioRawFrame):
            if self.sample_rate is None:
                self.sample_rate = frame.sample_rate
            if frame.sample_rate == self.sample_rate and frame.num_channels == 1:
                self.audio += frame.audio
            if self.on_audio is not None:
                self.on_audio(frame.audio, frame.sample_rate)
            if not self._speaking:
                self._speaking = True
                await self.push_frame(BotStartedSpeakingFrame(), UP)
                await self.push_frame(BotStartedSpeakingFrame(), DOWN)
        elif direction is DOWN and isinstance(frame, TTSStoppedFrame | EndFrame) and self._speaking:
            self._speaking = False
            await self.push_frame(BotStoppedSpeakingFrame(), UP)
            await self.push_frame(BotStoppedSpeakingFrame(), DOWN)
        await self.push_frame(frame, direction)  # as an output transport: what was played goes on


@dataclass
class ConsoleCall:
    """One call of an agent in the console.

    Args:
        agent: The call's processors (:func:`flowcat.config.agent_pipeline`).
        text_input: Typed turns (the pipeline was built with ``text_input=True``).
        events: What to report.
        sample_rate: Rate of the caller audio given to :meth:`play`.
    """

    agent: AgentPipeline
    text_input: bool = True
    events: ConsoleEvents = field(default_factory=ConsoleEvents)
    sample_rate: int = 16000
    replies: list[str] = field(default_factory=list)
    latencies: list[TurnLatencyMetricsData] = field(default_factory=list)

    def __post_init__(self) -> None:
        procs = list(self.agent.processors)
        self._reply_evt = asyncio.Event()
        self._last_activity = time.monotonic()
        reply_tap = _Tap(on_reply=self._on_reply)
        tts_at = len(procs) if procs and procs[-1] is self.agent.brain else len(procs) - 1
        procs.insert(tts_at, reply_tap)
        if not self.text_input:
            procs.insert(2, _Tap(on_user=self._on_user))  # after VAD and STT
        self.sink = _Sink(self.events.on_audio)
        self.observer = TurnLatencyObserver(push_metrics=False)
        self.observer.add_event_handler("on_turn_latency", self._on_latency)
        params = PipelineParams(audio_in_sample_rate=self.sample_rate)
        self.task = PipelineTask(Pipeline([*procs, self.sink, *self.agent.after_output]), params=params,
                                 observers=[self.observer], idle_timeout_secs=None)
        self._runner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ reports

    def _on_user(self, text: str) -> None:
        self._last_activity = time.monotonic()
        if self.events.on_user:
            self.events.on_user(text)

    def _on_reply(self, text: str) -> None:
        self._last_activity = time.monotonic()
        self.replies.append(text)
        self._reply_evt.set()
        if self.events.on_reply:
            self.events.on_reply(text)

    async def _on_latency(self, _observer: Any, data: TurnLatencyMetricsData) -> None:
        self.latencies.append(data)
        if self.events.on_latency:
            self.events.on_latency(data)

    # ------------------------------------------------------------ lifecycle

    @property
    def ended(self) -> bool:
        """The call is over (the agent ended it, or :meth:`end` ran)."""
        return self._runner is not None and self._runner.done()

    async def start(self) -> None:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda *_: started.set())
        self._runner = asyncio.ensure_future(self.task.run())
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait((waiter, self._runner), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    async def end(self, timeout: float = 15.0) -> None:
        if self._runner is None:
            return
        if not self._runner.done():
            await self.task.queue_frame(EndFrame())
        try:
            await asyncio.wait_for(asyncio.shield(self._runner), timeout)
        except TimeoutError:
            await self.task.cancel()
            await self._runner

    async def next_reply(self, timeout: float) -> str | None:
        """The next reply's text (None: none within ``timeout`` or the call ended)."""
        count = len(self.replies)
        deadline = time.monotonic() + timeout
        while len(self.replies) == count and not self.ended:
            self._reply_evt.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            waiter = asyncio.ensure_future(self._reply_evt.wait())
            assert self._runner is not None  # noqa: S101 - invariant: the runner is started before replies are awaited
            await asyncio.wait((waiter, self._runner), timeout=left, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        return self.replies[count] if len(self.replies) > count else None

    # ------------------------------------------------------------ input

    async def say(self, text: str, timeout: float = 60.0) -> str | None:
        """A typed user turn; the agent's reply (None when it said nothing in ``timeout``)."""
        if isinstance(self.agent.brain, BrainProcessor):
            frame: Frame = TranscriptionFrame(text=text, user_id="console", timestamp=_now())
        else:
            frame = LLMMessagesAppendFrame(messages=[{"role": "user", "content": text}], run_llm=True)
        count = len(self.replies)
        await self.task.queue_frame(frame)
        reply = await self.next_reply(timeout)
        return reply if len(self.replies) > count else None

    async def play(self, pcm: bytes, *, realtime: bool = False, tail_secs: float = 1.5,
                   settle_secs: float = 2.0, max_wait_secs: float = 30.0) -> None:
        """Caller audio (PCM16 mono at :attr:`sample_rate`), then ``tail_secs`` of silence at
        real time; returns once nothing happened for ``settle_secs`` (at most ``max_wait_secs``)."""
        step = int(self.sample_rate * CHUNK_SECS) * 2
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        silence = b"\x00" * step
        tail = [silence] * int(tail_secs / CHUNK_SECS)
        chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        for n, chunk in enumerate(chunks):
            if self.ended:
                return
            if len(chunk) < step:
                chunk += b"\x00" * (step - len(chunk))
            await self.task.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=self.sample_rate,
                                                           num_channels=1))
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (n + 1) * CHUNK_SECS - loop.time()))
            else:
                await asyncio.sleep(0)
        for chunk in tail:  # the end of the recording, at real time (the turn's timers are)
            if self.ended:
                return
            await self.task.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=self.sample_rate,
                                                           num_channels=1))
            await asyncio.sleep(CHUNK_SECS)
        self._last_activity = time.monotonic()
        deadline = time.monotonic() + max_wait_secs
        while not self.ended and time.monotonic() < deadline:
            if time.monotonic() - self._last_activity >= settle_secs and not self.sink._speaking:
                return
            await asyncio.sleep(0.05)

    def audio(self) -> tuple[bytes, int | None]:
        """The agent's audio so far (PCM16 mono) and its rate."""
        return bytes(self.sink.audio), self.sink.sample_rate


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
