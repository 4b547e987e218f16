"""BaseOutputTransport: queues bot audio per call and sends it on the shared clock.

Bot audio (any :class:`~flowcat.frames.OutputAudioRawFrame`) is resampled to the
transport rate, cut into ``audio_out_chunk_ms`` chunks and queued. The process's
:class:`~flowcat.transports.AudioClock` releases chunks so that at most
``audio_out_send_ahead_chunks`` are ahead of real time on the wire. Data and
control frames that arrive behind queued audio wait in the same queue and are
released (sent if the protocol carries them, then pushed downstream) when the
audio before them has been sent. Sent chunks are pushed downstream too, so a
recorder after the output hears what the peer heard.

* :class:`~flowcat.frames.InterruptionFrame` empties the queue (uninterruptible
  frames survive) and writes the protocol's clear message at once.
* :class:`~flowcat.frames.BotSpeechPauseFrame` holds the queue; nothing is
  discarded and nothing (or silence, if continuous) is sent until
  :class:`~flowcat.frames.BotSpeechResumeFrame`.
* Bot started/speaking/stopped frames are derived from chunks actually sent.
* :class:`~flowcat.frames.EndFrame` waits behind the queued audio (bounded by the
  task's hook timeout) before the transport closes; :class:`~flowcat.frames.CancelFrame`
  closes at once.

Subclasses implement :meth:`write_audio`, :meth:`write_frame` and
:meth:`close_transport`, all synchronous (start async work with
:func:`~flowcat.transports.drive`). The queue and the clock-driven sending are
:class:`~flowcat.transports._output_queue.OutputQueue`, a mix-in of this class.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..frames import (
    CONTROL,
    SYSTEM,
    BotSpeakingFrame,
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    BotStartedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    MixerControlFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from ..runtime import FrameDirection, FrameProcessor
from ._clock import AudioClock
from ._drive import drive
from ._output_marks import keeps_through_interruption
from ._output_queue import _SILENCE, OutputQueue, OutputStats
from ._params import TransportParams
from ._requeue import requeue

__all__ = ["BaseOutputTransport", "OutputStats"]

logger = logging.getLogger("flowcat.transports.output")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM


class BaseOutputTransport(FrameProcessor, OutputQueue):
    """Output side of a transport (see the module docstring).

    Args:
        params: Transport parameters.
        name: Processor name.
    """

    # The state the per-chunk path reads, side by side in the object (a few cache
    # lines) rather than spread over the instance dict.
    __slots__ = (
        "_closed", "_discard_audio", "_ending", "_chunk_bytes", "_rate", "_active", "_pending",
        "_queue", "_paused", "_mixer", "_channels", "_loop", "_play_end", "_period", "_window",
        "_last_speaking", "_params", "_outbox", "_inv_bps", "_stats", "_last_sent",
        "_speaking", "_push_sent", "_write_chunk", "_n_chunks", "_n_bot_bytes", "_speaking_period",
        "_stop_secs", "_always", "_steady", "_direct", "_n_direct", "_chunk_secs", "_last_in", "_hold", "_idle_gap",
        "_catch_up", "_stretch", "_slack",
    )

    def __init__(self, params: TransportParams, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        OutputQueue.__init__(self, params)
        self._write_chunk: Callable[[OutputAudioRawFrame], None] | None = None
        """What a chunk is written with: ``write_audio``, or the writer given to
        :meth:`set_audio_writer`."""

    # ------------------------------------------------------------ subclass API

    def write_audio(self, frame: OutputAudioRawFrame) -> None:
        """Put one chunk of audio on the wire now (synchronous)."""

    def write_frame(self, frame: Frame) -> None:
        """Put the protocol message for ``frame`` on the wire, if it has one (synchronous).

        Called for interruptions (the clear message), queued data/control frames
        when reached, urgent system frames, and End/Cancel before closing.
        """

    def close_transport(self, frame: EndFrame | CancelFrame) -> None:
        """Close the connection (synchronous; finish async work with ``drive``)."""

    def set_audio_writer(self, writer: Callable[[OutputAudioRawFrame], None]) -> None:
        """Write each chunk with ``writer(frame)`` instead of :meth:`write_audio`.

        For a transport that fuses serializing and writing a chunk into one call (see
        ``WebsocketTransport``): the writer must do what ``write_audio`` would, never
        raise for a gone peer, and be set before the StartFrame reaches this output.
        """
        self._write_chunk = writer

    # ----------------------------------------------------------------- state

    @property
    def sample_rate(self) -> int:
        """The wire sample rate (known after the StartFrame)."""
        return self._rate

    @property
    def chunk_bytes(self) -> int:
        """Bytes per full chunk."""
        return self._chunk_bytes

    @property
    def queued_bytes(self) -> int:
        """Bot audio bytes waiting to be sent (queue plus partial chunk)."""
        return sum(len(i) for i in self._queue if type(i) is bytes) + len(self._pending)

    @property
    def bot_speaking(self) -> bool:
        """Whether the bot is speaking (as derived from sends)."""
        return self._speaking

    @property
    def paused(self) -> bool:
        """Whether bot audio is held by a BotSpeechPauseFrame."""
        return self._paused

    def peer_gone(self) -> None:
        """The peer went away: drop queued audio and stop pacing (frames still flow)."""
        self._discard_audio = True
        self._direct = -1
        q = self._queue
        if q:
            kept = [i for i in q if isinstance(i, Frame)]
            self.stats.dropped_chunks += len(q) - len(kept)
            q.clear()
            q.extend(kept)
        self._pending = b""
        if q:
            self._activate()

    # ------------------------------------------------------------ lifecycle

    async def start(self, frame: StartFrame) -> None:
        p = self._params
        self._rate = p.audio_out_sample_rate or frame.audio_out_sample_rate
        self._chunk_bytes = max(2, self._rate * p.audio_out_chunk_ms // 1000) * 2 * self._channels
        self._inv_bps = 1.0 / (self._rate * 2 * self._channels)
        self._chunk_secs = self._chunk_bytes * self._inv_bps
        self._silence = bytes(self._chunk_bytes)
        self._sync_direct()
        self._loop = asyncio.get_running_loop()
        self._clock = AudioClock.for_loop(self._period, self._loop)
        self._idle_gap = self._clock.idle_every * self._period
        if self._write_chunk is None:
            self._write_chunk = self.write_audio
        # Whether sent chunks go on downstream: decided once, when the call starts.
        nxt = self._down
        self._push_sent = nxt is not None and nxt.wants_sent_audio
        mixer = self._mixer
        if mixer is not None and hasattr(mixer, "start"):
            res = mixer.start(self._rate)
            if inspect.isawaitable(res):
                await res
        if self._always:
            self._activate()

    def set_sample_rate(self, rate: int) -> None:
        """Send bot audio at ``rate`` Hz from now on (a wire format that changes mid-call).

        Before the StartFrame this sets the rate the output starts at. After it, the
        chunk size, pacing and silence follow ``rate``, audio already queued is
        resampled to it (frames keep their places in the queue), and later bot audio
        is resampled from its own rate straight to it. A mixer is restarted at it.
        """
        old = self._rate
        if not self._chunk_bytes:
            self._params.audio_out_sample_rate = rate  # start() reads it
            return
        if rate == old:
            return
        ch = self._channels
        self._fold_direct()
        self._rate = rate
        self._chunk_bytes = size = max(2, rate * self._params.audio_out_chunk_ms // 1000) * 2 * ch
        self._inv_bps = 1.0 / (rate * 2 * ch)
        self._chunk_secs = size * self._inv_bps
        self._silence = bytes(size)
        self._sync_direct()
        rs = self._resampler
        self._resampler = None  # rebuilt for the new rate by the next frame
        tail = rs.flush() if rs is not None else b""
        self._queue, self._pending = requeue(self._queue, self._pending + tail, old, rate, size, ch)
        mixer = self._mixer
        if mixer is not None and hasattr(mixer, "start"):
            res = mixer.start(rate)
            if inspect.iscoroutine(res):
                drive(res, "mixer start")

    async def cancel(self, frame: CancelFrame) -> None:
        self._shutdown()
        self.write_frame(frame)
        self.close_transport(frame)

    async def cleanup(self) -> None:
        self._shutdown()
        mixer = self._mixer
        if mixer is not None and hasattr(mixer, "stop"):
            res = mixer.stop()
            if inspect.isawaitable(res):
                await res

    def _detach(self) -> None:
        super()._detach()
        self._shutdown()
        self._write_chunk = None  # a bound method (of this output or its transport): a cycle

    # ------------------------------------------------------------ the chain

    # Bot audio is queued inline (a plain call from the processor before, no coroutine).
    # Input audio that reached the output (every stage passes it on, as in pipecat) has no
    # message on the wire: it goes on to whatever follows with a plain call too.
    inline_frames = (OutputAudioRawFrame, InputAudioRawFrame)

    def process_inline(self, frame: OutputAudioRawFrame, direction: FrameDirection = DOWNSTREAM) -> Any:  # type: ignore[override]
        """Bot audio going downstream: queued, or sent at once (returns None: taken).
        Input audio: passed on. Upstream: NotImplemented (``process_frame`` passes it on)."""
        if direction is not DOWNSTREAM:
            return NotImplemented
        if isinstance(frame, InputAudioRawFrame):
            return frame
        audio = frame.audio
        if (
            len(audio) == self._direct
            and frame.sample_rate == self._rate
            and not self._pending
            and not self._queue
            and frame.num_channels == self._channels
        ):
            # Fast path (echo, streaming TTS in real time): a whole chunk, nothing
            # queued, the window open — send it now, as the frame it came in.
            now = self._loop.time()  # type: ignore[union-attr]
            start = self._play_end
            ahead = start - now
            # A steady real-time stream (3+ chunks in a row, see ``_steady``) may
            # overshoot the window by one chunk: frames read in pairs off a busy
            # socket would otherwise queue one chunk and lag it for the whole turn.
            if ahead + self._period <= self._window or (self._steady >= 3 and ahead <= self._window):
                self._steady += 1
                self._last_in = now
                # ``_send(audio, now, True, frame)``, inlined: this runs for
                # every chunk of every call.
                try:
                    self._write_chunk(frame)  # type: ignore[misc]
                except Exception:
                    logger.exception("%s: write_audio failed", self)
                if start < now and not self._catching_up():
                    if now - start > self._slack and self._speaking and self._stretch < self._catch_up:
                        self._late(now - start)
                    start = now
                self._play_end = start + self._chunk_secs
                self._n_direct += 1
                self._last_sent = now
                # (The outbox is empty here: every path that fills it flushes it.)
                if not self._speaking:
                    self._speaking = True
                    self._last_speaking = now
                    self._broadcast(BotStartedSpeakingFrame)
                elif now - self._last_speaking >= self._speaking_period:
                    self._last_speaking = now
                    self._broadcast(BotSpeakingFrame)
                elif not self._push_sent:
                    return None  # the common case: nothing to pass on
                if self._push_sent:
                    self._outbox.append((frame, DOWNSTREAM))
                self._flush_outbox()
                return None
        self._queue_audio(frame)
        return None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM and isinstance(frame, OutputAudioRawFrame):
            self.process_inline(frame, direction)  # no lifecycle bookkeeping applies to audio
            return
        await super().process_frame(frame, direction)
        if direction is UPSTREAM:
            await self.push_frame(frame, direction)
            return
        cls = frame.__class__
        if cls is InterruptionFrame:
            self._interrupt(frame)  # type: ignore[arg-type]
        elif cls is BotSpeechPauseFrame:
            self._paused = True
            self._direct = -1
            self._wake()
        elif cls is BotSpeechResumeFrame:
            if self._paused:
                self._paused = False
                self._sync_direct()
                if self._queue or self._pending or self._speaking:
                    self._activate()
        elif isinstance(frame, EndFrame):
            if self._end(frame):
                return
        elif frame.kind != SYSTEM and not self._closed:
            if isinstance(frame, MixerControlFrame):
                self._mixer_control(frame)
            if self._queue or self._pending:
                if frame.kind == CONTROL:
                    self._flush_partial()
                self._queue.append(frame)
                self._activate()
                return
            self.write_frame(frame)
        elif cls is not StartFrame and cls is not CancelFrame:
            self.write_frame(frame)  # urgent messages, DTMF
        await self.push_frame(frame, direction)

    def _wake(self) -> None:
        """A continuous output served now and then (a held stream, see ``on_clock``) is
        served every tick again: its silence must follow a state change at once."""
        clock = self._clock
        if self._always and self._active and clock is not None and not self._closed:
            clock.add(self)

    def _flush_outbox(self) -> None:
        out = self._outbox
        if not out:
            return
        self._outbox = []
        sched = self._sched
        for frame, direction in out:
            if sched is not None:
                sched.submit(self, frame, direction)
            else:
                drive(self.push_frame(frame, direction), "push")

    # ------------------------------------------------- interruption and end

    def _interrupt(self, frame: InterruptionFrame) -> None:
        q = self._queue
        kept_audio = self._pending_kept
        if q:
            # Uninterruptible frames and audio stay (and play), with the audio's class marks.
            kept = [i for i in q if keeps_through_interruption(i)]
            self.stats.dropped_chunks += sum(1 for i in q if type(i) is bytes)
            q.clear()
            q.extend(kept)
            kept_audio = kept_audio or any(isinstance(i, bytes) for i in kept)
        if not self._pending_kept:
            self._pending = b""
            if self._resampler is not None:
                self._resampler.reset()
        self._paused = False
        self._sync_direct()
        self.write_frame(frame)
        self.stats.clears_sent += 1
        self._wake()
        if self._loop is not None:
            self._play_end = self._loop.time()
        if self._speaking and not kept_audio:  # still speaking while kept audio plays
            self._stopped_speaking()
            self._flush_outbox()
        if q or self._pending:
            self._activate()

    def _end(self, frame: EndFrame) -> bool:
        """Queue ``frame`` behind the bot audio; False if it should simply pass on."""
        if self._closed or self._ending is not None:
            return False
        self._ending = frame
        self._direct = -1
        if not self._discard_audio:
            self._flush_partial()
            silence = self._params.audio_out_end_silence_secs
            if silence > 0 and self._chunk_bytes:
                n = max(1, round(silence / self._period))
                self._queue.extend([_SILENCE] * n)
        self._queue.append(frame)
        sched = self._sched
        timeout = sched.hook_timeout if sched is not None else 10.0
        if self._loop is not None:
            self._end_timer = self._loop.call_later(timeout, self._end_timeout, timeout)
        if self._clock is None:  # never started: close now
            self._queue.clear()
            self._finish_end(frame)
            self._flush_outbox()
            return True
        self._activate()
        return True

    def _end_timeout(self, timeout: float) -> None:
        self._end_timer = None
        frame = self._ending
        if frame is None or self._closed:
            return
        logger.warning(
            "%s: EndFrame waited %g s for queued audio; %d bytes dropped", self, timeout, self.queued_bytes
        )
        self._queue.clear()
        self._pending = b""
        self._finish_end(frame)
        self._flush_outbox()

    def _mixer_control(self, frame: MixerControlFrame) -> None:
        mixer = self._mixer
        handler = getattr(mixer, "process_frame", None) if mixer is not None else None
        if handler is not None:
            res = handler(frame)
            if inspect.iscoroutine(res):
                drive(res, "mixer control")

    # -------------------------------------------------------------- closing

    def _shutdown(self) -> None:
        self._closed = True
        self._direct = -1
        self._queue.clear()
        self._pending = b""
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None
        if self._clock is not None:
            self._clock.discard(self)
        self._active = False

    def _finish_end(self, frame: EndFrame) -> None:
        if self._speaking:
            self._stopped_speaking()
        self._shutdown()
        self.write_frame(frame)
        self.close_transport(frame)
        self._outbox.append((frame, DOWNSTREAM))
