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
:func:`~flowcat.transports.drive`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from typing import Any

from ..audio import StreamResampler
from ..frames import (
    CONTROL,
    SYSTEM,
    BotSpeakingFrame,
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    MixerControlFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from ..runtime import FrameDirection, FrameProcessor
from ._clock import IDLE, AudioClock
from ._drive import drive
from ._params import TransportParams

__all__ = ["BaseOutputTransport", "OutputStats"]

logger = logging.getLogger("flowcat.transports.output")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM


class _Silence:
    """Queue marker: one chunk of silence (end silence); not bot speech."""

    __slots__ = ()


_SILENCE = _Silence()


class OutputStats:
    """Counters of one output."""

    __slots__ = ("bot_bytes_sent", "chunks_sent", "clears_sent", "dropped_chunks", "silence_chunks_sent")

    def __init__(self) -> None:
        self.chunks_sent = 0
        self.bot_bytes_sent = 0
        self.silence_chunks_sent = 0
        self.clears_sent = 0
        self.dropped_chunks = 0


class BaseOutputTransport(FrameProcessor):
    """Output side of a transport (see the module docstring).

    Args:
        params: Transport parameters.
        name: Processor name.
    """

    def __init__(self, params: TransportParams, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self._params = params
        self._queue: deque[Any] = deque()
        self._pending = b""
        self._rate = params.audio_out_sample_rate or 24000
        self._channels = params.audio_out_channels
        self._period = params.audio_out_chunk_ms / 1000.0
        self._chunk_bytes = 0
        self._inv_bps = 0.0
        self._ahead = params.audio_out_send_ahead_chunks * self._period
        self._slack = self._period * 0.25
        self._clock: AudioClock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = False
        self._always = params.audio_out_continuous or params.audio_out_mixer is not None
        self._paused = False
        self._closed = False
        self._discard_audio = False
        self._play_end = 0.0
        self._speaking = False
        self._last_sent = 0.0
        self._last_speaking = 0.0
        self._resampler: StreamResampler | None = None
        self._outbox: list[tuple[Frame, FrameDirection]] = []
        self._end_timer: asyncio.TimerHandle | None = None
        self._ending: EndFrame | None = None
        self._silence = b""
        self._mixer = params.audio_out_mixer
        self._push_sent = True
        self.stats = OutputStats()

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
        self._silence = bytes(self._chunk_bytes)
        self._loop = asyncio.get_running_loop()
        self._clock = AudioClock.for_loop(self._period, self._loop)
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

    def _shutdown(self) -> None:
        self._closed = True
        self._queue.clear()
        self._pending = b""
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None
        if self._clock is not None:
            self._clock.discard(self)
        self._active = False

    # ------------------------------------------------------------ the chain

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM and isinstance(frame, OutputAudioRawFrame):
            self._enqueue_audio(frame)  # no lifecycle bookkeeping applies to audio
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
        elif cls is BotSpeechResumeFrame:
            if self._paused:
                self._paused = False
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

    # -------------------------------------------------------------- queueing

    def _enqueue_audio(self, frame: OutputAudioRawFrame) -> None:
        if self._closed or self._discard_audio or self._ending is not None or not self._chunk_bytes:
            return
        audio = frame.audio
        if frame.sample_rate == self._rate:
            # Fast path (echo, streaming TTS in real time): a whole chunk, nothing
            # queued, the window open — send it now, as the frame it came in.
            if (
                self._active
                and len(audio) == self._chunk_bytes
                and not self._pending
                and not self._queue
                and not self._paused
                and self._mixer is None
                and frame.num_channels == self._channels
            ):
                now = self._loop.time()  # type: ignore[union-attr]
                if self._play_end - now + self._period <= self._ahead + self._slack:
                    self._send(audio, now, True, frame)
                    if now - self._last_speaking >= self._params.bot_speaking_period_secs:
                        self._last_speaking = now
                        self._broadcast(BotSpeakingFrame)
                    if self._outbox:
                        self._flush_outbox()
                    return
        else:
            rs = self._resampler
            if rs is None or rs.in_rate != frame.sample_rate:
                rs = self._resampler = StreamResampler(frame.sample_rate, self._rate, self._channels)
            audio = rs.resample(audio)
        if self._pending:
            audio = self._pending + audio
        size = self._chunk_bytes
        n = len(audio) // size
        q = self._queue
        if n == 1 and len(audio) == size:
            q.append(audio)
            self._pending = b""
        else:
            for i in range(n):
                q.append(audio[i * size : (i + 1) * size])
            self._pending = audio[n * size :]
        self._activate()

    def _flush_partial(self) -> None:
        rs = self._resampler
        tail = rs.flush() if rs is not None else b""
        if tail:
            self._pending += tail
            size = self._chunk_bytes
            while len(self._pending) >= size:
                self._queue.append(self._pending[:size])
                self._pending = self._pending[size:]
        pending = self._pending
        if pending:
            if self._params.audio_out_pad_last_chunk:
                pending += bytes(self._chunk_bytes - len(pending))
            self._queue.append(pending)
            self._pending = b""

    def _activate(self) -> None:
        if self._closed or self._clock is None:
            return
        if self._active:
            # Already on the clock: send now whatever the send-ahead window allows
            # instead of waiting up to a period for the next tick (an echo or a
            # streaming TTS would otherwise gain up to 20 ms per chunk).
            if not self._paused:
                busy = self.on_clock(self._loop.time())  # type: ignore[union-attr]
                if not busy:
                    self._clock.discard(self)
                elif busy is True:
                    self._clock.add(self)
            return
        self._active = True
        self._clock.add(self)
        assert self._loop is not None
        self._loop.call_soon(self._kick)

    def _kick(self) -> None:
        if self._active and self._clock is not None and not self.on_clock(self._loop.time()):  # type: ignore[union-attr]
            self._clock.discard(self)

    # ------------------------------------------------------------ the clock

    def on_clock(self, now: float) -> bool | int:
        """Send what the window allows at ``now`` (called by the clock).

        Returns True while audio waits (serve every tick), ``IDLE`` while the bot
        counts as speaking with nothing queued (a few ticks apart is enough to see
        it stop), False when there is nothing more to do.
        """
        if self._closed:
            self._active = False
            return False
        q = self._queue
        ahead = self._ahead + self._slack
        inv_bps = self._inv_bps
        bot_sent = False
        if not self._paused:
            while True:
                if q:
                    item = q[0]
                    is_audio = type(item) is bytes
                    if is_audio or item is _SILENCE:
                        dur = len(item) * inv_bps if is_audio else self._period
                        if self._play_end - now + dur > ahead:
                            break
                        q.popleft()
                        if is_audio:
                            self._send(item, now, True)
                            bot_sent = True
                        else:
                            self._send(self._silence, now, False)
                        continue
                    q.popleft()
                    self._release(item)
                    if self._closed:
                        self._flush_outbox()
                        return False
                    continue
                if self._pending and not self._discard_audio:
                    pending = self._pending
                    if self._play_end - now + len(pending) * inv_bps > ahead:
                        break
                    self._pending = b""
                    self._send(pending, now, True)
                    bot_sent = True
                break
        if self._always and (self._paused or not q):
            while self._play_end - now + self._period <= ahead:
                self._send(self._silence, now, False)
        if self._speaking:
            if bot_sent:
                if now - self._last_speaking >= self._params.bot_speaking_period_secs:
                    self._last_speaking = now
                    self._broadcast(BotSpeakingFrame)
            elif not self._paused and now - self._last_sent >= self._params.bot_stopped_speaking_secs:
                # A paused bot (barge-in being judged) has not stopped speaking.
                self._stopped_speaking()
        if self._outbox:
            self._flush_outbox()
        if self._queue or (self._pending and not self._paused) or self._always:
            return True
        if self._speaking and not self._paused:
            return IDLE
        self._active = False
        return False

    def _send(self, chunk: bytes, now: float, bot: bool, frame: OutputAudioRawFrame | None = None) -> None:
        if frame is None:
            mixer = self._mixer
            if mixer is not None:
                chunk = mixer.mix(chunk)
            frame = OutputAudioRawFrame(audio=chunk, sample_rate=self._rate, num_channels=self._channels)
        try:
            self.write_audio(frame)
        except Exception:
            logger.exception("%s: write_audio failed", self)
        start = self._play_end if self._play_end > now else now
        self._play_end = start + len(chunk) * self._inv_bps
        stats = self.stats
        stats.chunks_sent += 1
        if not bot:
            stats.silence_chunks_sent += 1
            return
        stats.bot_bytes_sent += len(chunk)
        self._last_sent = now
        if not self._speaking:
            self._speaking = True
            self._last_speaking = now
            self._broadcast(BotStartedSpeakingFrame)
        if self._push_sent:
            self._outbox.append((frame, DOWNSTREAM))

    def _release(self, frame: Frame) -> None:
        """A queued frame reached the head of the queue: send it, pass it on."""
        if isinstance(frame, EndFrame):
            self._finish_end(frame)
            return
        self.write_frame(frame)
        self._outbox.append((frame, DOWNSTREAM))

    def _broadcast(self, cls: type[Frame]) -> None:
        down = cls()
        up = cls()
        down.broadcast_sibling_id = up.id
        up.broadcast_sibling_id = down.id
        self._outbox.append((down, DOWNSTREAM))
        self._outbox.append((up, UPSTREAM))

    def _stopped_speaking(self) -> None:
        self._speaking = False
        self._broadcast(BotStoppedSpeakingFrame)

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
        if q:
            kept = [i for i in q if isinstance(i, Frame) and not i.interruptible]
            self.stats.dropped_chunks += sum(1 for i in q if type(i) is bytes)
            q.clear()
            q.extend(kept)
        self._pending = b""
        if self._resampler is not None:
            self._resampler.reset()
        self._paused = False
        self.write_frame(frame)
        self.stats.clears_sent += 1
        if self._loop is not None:
            self._play_end = self._loop.time()
        if self._speaking:
            self._stopped_speaking()
            self._flush_outbox()
        if q:
            self._activate()

    def _end(self, frame: EndFrame) -> bool:
        """Queue ``frame`` behind the bot audio; False if it should simply pass on."""
        if self._closed or self._ending is not None:
            return False
        self._ending = frame
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

    def _finish_end(self, frame: EndFrame) -> None:
        if self._speaking:
            self._stopped_speaking()
        self._shutdown()
        self.write_frame(frame)
        self.close_transport(frame)
        self._outbox.append((frame, DOWNSTREAM))

    def _mixer_control(self, frame: MixerControlFrame) -> None:
        mixer = self._mixer
        handler = getattr(mixer, "process_frame", None) if mixer is not None else None
        if handler is not None:
            res = handler(frame)
            if inspect.iscoroutine(res):
                drive(res, "mixer control")
