"""TTSService: text in, ordered audio and text frames out.

A provider implements :meth:`TTSService.run_tts`, an async generator of
:class:`TTSAudio` (PCM16 at :attr:`TTSService.sample_rate`, any chunking) and
optionally :class:`TTSWords` (word timestamps). The base:

* aggregates ``TextFrame`` s (LLM tokens) into units with a pluggable
  :class:`~flowcat.services.BaseTextAggregator` (sentences by default) and flushes
  the rest on ``LLMFullResponseEndFrame``; ``TTSSpeakFrame`` is spoken at once as
  its own utterance;
* pushes, per utterance (one LLM response, or one ``TTSSpeakFrame``)::

      AggregatedTextFrame → TTSStartedFrame → (TTSAudioRawFrame | TTSTextFrame)+
      [AggregatedTextFrame → (TTSAudioRawFrame | TTSTextFrame)+]* → TTSStoppedFrame

  with a ``TTSTextFrame`` per word (``pts`` from the word timestamps) when the
  provider gives timestamps, else one per unit after its audio
  (``push_text_frames=True``); ``LLMFullResponseEndFrame`` and any frame behind an
  utterance leave after its ``TTSStoppedFrame`` (the service holds them while it
  synthesizes: synthesis runs in a call-owned task, never in ``process_frame``);
* tags audio with the utterance's context id; an interruption cancels the
  synthesis, calls :meth:`TTSService.on_context_interrupted` (a WebSocket provider
  sends its cancel) and nothing of the old context is pushed afterwards;
* reports TTFB (text sent to first audio) and characters as usage; retries
  retryable failures that happen before a unit's first audio.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ServiceError, ServiceTimeout
from ..frames import (
    AggregatedTextFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from ..runtime import FrameDirection
from ._ai_service import AIService, ServiceCapabilities, ServiceSettings
from ._backoff import Backoff, ChunkTimer, Deadline, retry_call
from ._text_aggregator import BaseTextAggregator, SentenceAggregator

__all__ = ["TTSAudio", "TTSChunk", "TTSService", "TTSSettings", "TTSWords"]

logger = logging.getLogger("flowcat.services.tts")

UPSTREAM = FrameDirection.UPSTREAM
_context_ids = itertools.count(1)


@dataclass
class TTSSettings(ServiceSettings):
    """TTS settings: the voice and the language."""

    voice: str | None = None
    language: str | None = None


@dataclass(slots=True)
class TTSAudio:
    """A chunk of synthesized PCM16 mono audio at the service's sample rate."""

    audio: bytes


@dataclass(slots=True)
class TTSWords:
    """Word timestamps: ``(word, start seconds)`` from the start of this unit's audio."""

    words: Sequence[tuple[str, float]]


TTSChunk = TTSAudio | TTSWords | bytes


class TTSService(AIService):
    """Base of the TTS services.

    Args:
        sample_rate: Output sample rate (None: the StartFrame's ``audio_out_sample_rate``).
        text_aggregator: How tokens become units (default :class:`SentenceAggregator`).
        push_text_frames: Push a ``TTSTextFrame`` per unit when the provider gives no
            word timestamps.
        request_timeout_secs: Bound from sending a unit to its first audio (all attempts).
        chunk_timeout_secs: Bound on the wait for each following chunk.
        retry: Backoff for retryable failures before a unit's first audio.
        **kwargs: :class:`~flowcat.services.AIService` arguments.
    """

    inline_frames: ClassVar[tuple[type[Frame], ...]] = (InputAudioRawFrame,)
    """Input audio (50 frames/s per call) passes this service with a plain call. A subclass
    that overrides ``handle_frame`` (a speech-to-speech service consuming audio) sees it there."""

    inline_passes_input_audio: ClassVar[bool] = True
    """Its ``process_inline`` only passes input audio on: a subclass that overrides
    ``handle_frame`` without its own ``process_inline`` gets no inline frames (its
    ``handle_frame`` sees the audio, as a speech-to-speech service needs)."""

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        """Pass input audio on untouched."""
        return frame

    settings_frame_type = TTSUpdateSettingsFrame
    capabilities = ServiceCapabilities(streaming=True, transport="http")

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        text_aggregator: BaseTextAggregator | None = None,
        push_text_frames: bool = True,
        request_timeout_secs: float = 10.0,
        chunk_timeout_secs: float = 10.0,
        retry: Backoff | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("settings", TTSSettings())
        super().__init__(**kwargs)
        self._init_sample_rate = sample_rate
        self.sample_rate = sample_rate or 0
        self.aggregator = text_aggregator or SentenceAggregator()
        self.push_text_frames = push_text_frames
        self.request_timeout_secs = request_timeout_secs
        self.chunk_timeout_secs = chunk_timeout_secs
        self.retry = retry if retry is not None else Backoff()
        self._turn_ctx: str | None = None  # the open utterance of the LLM response
        self._turn_started = False
        self._speaking_ctx: str | None = None
        self._ctx_bytes = 0  # audio bytes pushed in the current context (word pts)
        self._synth_task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------- provider seam

    def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        """Synthesize ``text``; yield its audio (and word timestamps) until it is complete.

        Closing the generator (interruption) must stop the request; a WebSocket
        provider also gets :meth:`on_context_interrupted`.
        """
        raise NotImplementedError

    async def on_context_interrupted(self, context_id: str) -> None:
        """Hook: the utterance ``context_id`` was interrupted (send the provider's cancel)."""

    async def on_context_finished(self, context_id: str) -> None:
        """Hook: the utterance ``context_id`` is complete (its ``TTSStoppedFrame`` was pushed):
        a WebSocket provider ends the vendor's context (Cartesia's ``continue: false``)."""

    def new_context_id(self) -> str:
        """A fresh context id for an utterance."""
        return f"{self.name}-ctx{next(_context_ids)}"

    # ------------------------------------------------------------- lifecycle

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self.sample_rate = self._init_sample_rate or frame.audio_out_sample_rate

    async def on_interruption(self) -> None:
        self.aggregator.reset()
        ctx = self._speaking_ctx or self._turn_ctx
        self._turn_ctx = None
        self._turn_started = False
        self._speaking_ctx = None
        if ctx is not None:
            await self.on_context_interrupted(ctx)

    # ------------------------------------------------------------- frames

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is UPSTREAM:
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, TTSSpeakFrame):
            self._synthesize([frame.text], self.new_context_id(), False, close=True, after=())
        elif isinstance(frame, TextFrame) and not isinstance(
            frame, (TTSTextFrame, TranscriptionFrame, InterimTranscriptionFrame)
        ):
            if frame.skip_tts:
                await self.push_frame(frame, direction)
                return
            if isinstance(frame, AggregatedTextFrame):
                units = [frame.text]
            else:
                units = self.aggregator.aggregate(frame.text)
            if units:
                ctx = self._turn_context()
                started, self._turn_started = self._turn_started, True
                self._synthesize(units, ctx, started, close=False, after=())
        elif isinstance(frame, LLMFullResponseEndFrame):
            rest = self.aggregator.flush()
            turn, started = self._turn_ctx, self._turn_started
            self._turn_ctx = None
            self._turn_started = False
            if rest:
                self._synthesize([rest], turn or self.new_context_id(), started, close=True, after=(frame,))
                return
            if turn is not None and started:
                await self.push_frame(TTSStoppedFrame(context_id=turn))
                await self._context_finished(turn)
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._turn_ctx = None
            self._turn_started = False
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    def _turn_context(self) -> str:
        if self._turn_ctx is None:
            self._turn_ctx = self.new_context_id()
            self._turn_started = False
        return self._turn_ctx

    def _synthesize(
        self, units: list[str], ctx: str, started: bool, *, close: bool, after: Sequence[Frame]
    ) -> None:
        """Speak ``units`` in ``ctx`` in a task; frames arriving meanwhile wait behind it.

        ``started``: whether ``ctx``'s TTSStartedFrame was already pushed.
        """
        if self._sched is not None:
            self.pause_processing_frames()
        task = self._synth_task = self.create_task(
            self._run_synthesis(units, ctx, started, close, after), "tts_synthesis", cancel_on_interruption=True
        )
        task.add_done_callback(self._synthesis_done)

    def _synthesis_done(self, task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its ``finally``: release
        # the frames held behind it here, or the service stays paused for good.
        if self._synth_task is task:
            self._synth_task = None
            self._resume_held_frames()

    async def _run_synthesis(
        self, units: list[str], ctx: str, started: bool, close: bool, after: Sequence[Frame]
    ) -> None:
        try:
            if ctx != self._speaking_ctx:
                self._speaking_ctx = ctx
                self._ctx_bytes = 0
            for unit in units:
                # announced ahead of its audio; the context gets the spoken text (TTSTextFrame), as pipecat
                await self.push_frame(AggregatedTextFrame(unit, append_to_context=False))
                if not started:
                    started = True
                    await self.push_frame(TTSStartedFrame(context_id=ctx))
                try:
                    await self._speak(unit, ctx)
                except ServiceError as exc:
                    await self.push_service_error(exc, "synthesis failed")
            if close and started:
                await self.push_frame(TTSStoppedFrame(context_id=ctx))
                self._speaking_ctx = None
                await self._context_finished(ctx)
            for f in after:
                await self.push_frame(f)
        finally:
            self._synth_task = None
            self._resume_held_frames()

    async def _context_finished(self, ctx: str) -> None:
        try:
            await self.on_context_finished(ctx)
        except ServiceError as exc:
            logger.debug("%s: ending context %s: %s", self.name, ctx, self.redact(str(exc)))

    async def _speak(self, text: str, ctx: str) -> None:
        await self.start_tts_usage_metrics(text)
        deadline = Deadline(self.request_timeout_secs)
        words_seen = False
        base_bytes = self._ctx_bytes

        async def attempt(n: int) -> None:
            nonlocal words_seen
            emitted = False
            odd = b""
            self._ctx_bytes = base_bytes
            await self.start_ttfb_metrics()
            # Once output went downstream the attempt is not retried (never replay half a response).
            with self._attempt_errors(lambda: emitted):
                async with aclosing(self.run_tts(text, ctx)) as agen:
                    # The chunk loop with its first-answer and between-chunk timeouts is
                    # repeated in _llm.py (LLMService._stream) on purpose: a shared async generator would
                    # add a layer per chunk, and TTS chunks are the bot's audio.
                    it = agen.__aiter__()
                    timer = ChunkTimer()
                    try:
                        async with timer:
                            while True:
                                timer.expect(self.chunk_timeout_secs if emitted else deadline.remaining())
                                try:
                                    chunk = await it.__anext__()
                                except StopAsyncIteration:
                                    return
                                timer.pause()
                                if isinstance(chunk, TTSWords):
                                    words_seen = True
                                    await self._push_words(chunk, ctx, base_bytes)
                                    continue
                                audio = chunk.audio if isinstance(chunk, TTSAudio) else chunk
                                if odd:
                                    audio = odd + audio
                                    odd = b""
                                if len(audio) & 1:
                                    odd = audio[-1:]
                                    audio = audio[:-1]
                                if not audio:
                                    continue
                                if not emitted:
                                    emitted = True
                                    await self.stop_ttfb_metrics()
                                self._ctx_bytes += len(audio)
                                await self.push_frame(TTSAudioRawFrame(audio, self.sample_rate, 1, ctx))
                    except TimeoutError:
                        what = "audio" if emitted else "answer"
                        raise ServiceTimeout(f"{self.name}: no {what}{timer.within()}") from None

        await retry_call(attempt, backoff=self.retry, deadline=deadline, what=self.name)
        if not words_seen and self.push_text_frames:
            await self.push_frame(TTSTextFrame(text, aggregated_by="sentence", context_id=ctx))

    async def _push_words(self, chunk: TTSWords, ctx: str, base_bytes: int) -> None:
        rate = self.sample_rate or 1
        base_ns = base_bytes * 500_000_000 // rate  # bytes / 2 / rate seconds, in ns
        for word, start in chunk.words:
            word = word.strip()
            if not word:
                continue
            f = TTSTextFrame(word, aggregated_by="word", context_id=ctx)
            f.pts = base_ns + int(start * 1e9)
            await self.push_frame(f)
