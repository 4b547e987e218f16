"""The send queue of an output transport, released on the shared audio clock.

Bot audio is resampled to the transport rate (by a
:class:`~flowcat.audio.LowLatencyResampler`: each frame's exact share comes out at
once, ~1–2 ms filter delay, so a real-time stream at another rate stays whole
chunks on time), cut into ``audio_out_chunk_ms`` chunks and queued; data and control frames that arrive behind queued audio wait
in the same queue. The process's :class:`~flowcat.transports.AudioClock` calls
:meth:`OutputQueue.on_clock`, which sends chunks so that at most
``audio_out_send_ahead_chunks`` are ahead of real time on the wire, and releases
each queued frame (written if the protocol carries it, then pushed downstream)
once the audio before it has been sent. A whole chunk arriving with nothing
queued and the window open is sent at once, as the frame it came in. Sent chunks
are pushed downstream too, so a recorder after the output hears what the peer
heard, and bot started/speaking/stopped frames are derived from the sends. An
EndFrame reaching the head of the queue closes the transport.

:class:`~flowcat.transports.BaseOutputTransport` builds on this: it routes the
frames and handles the lifecycle, interruptions, pauses and the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..audio import LowLatencyResampler
from ..frames import (
    BotSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    OutputAudioRawFrame,
)
from ..runtime import FrameDirection
from ._clock import IDLE, AudioClock
from ._output_marks import AudioClass, Kept, cut_kept
from ._params import TransportParams

if TYPE_CHECKING:
    from ..frames import CancelFrame

__all__ = ["OutputQueue", "OutputStats"]

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


class OutputQueue:
    """Queue and clock-driven sending of :class:`~flowcat.transports.BaseOutputTransport`.

    A mix-in listed after :class:`~flowcat.FrameProcessor` in the bases, so that
    ``super()`` calls on the frame path reach the processor without an extra hop.
    It holds the output's state. The subclass API it calls
    (``write_audio``, ``write_frame``, ``close_transport``) and the push of what it
    produced into the chain (``_flush_outbox``) are ``BaseOutputTransport``'s.
    """

    if TYPE_CHECKING:

        def _flush_outbox(self) -> None: ...

        _write_chunk: Callable[[OutputAudioRawFrame], None] | None

        def write_audio(self, frame: OutputAudioRawFrame) -> None: ...

        def write_frame(self, frame: Frame) -> None: ...

        def close_transport(self, frame: EndFrame | CancelFrame) -> None: ...

        def _finish_end(self, frame: EndFrame) -> None: ...

    def __init__(self, params: TransportParams) -> None:
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
        self._catch_up = max(0, params.audio_out_catch_up_chunks) * self._period
        self._stretch = 0.0
        self._always = params.audio_out_continuous or params.audio_out_mixer is not None
        self._hold = self._catch_up if self._always else 0.0
        """How long a continuous output lets a steady real-time stream run late before
        silence fills in for it (see :meth:`on_clock`); 0 for an output that sends
        nothing while the bot is quiet."""
        self._idle_gap = 0.0  # between two looks of the clock at an idle output (set at start)
        self._steady = 0
        """Whole chunks in a row that came as a real-time stream does: each sent on
        arrival, or queued but arriving at least the timer slack after the one before
        (not part of a burst). See ``BaseOutputTransport.process_inline``."""
        self._last_in = 0.0  # when the last whole chunk arrived
        self._window = self._ahead + self._slack
        """How far ahead of real time the peer's buffer may end: the send-ahead
        window, the timer slack and the catch-up stretch (see ``_send``)."""
        self._clock: AudioClock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = False
        self._paused = False
        self._closed = False
        self._discard_audio = False
        self._play_end = 0.0
        self._speaking = False
        self._last_sent = 0.0
        self._last_speaking = 0.0
        self._resampler: LowLatencyResampler | None = None
        self._outbox: list[tuple[Frame, FrameDirection]] = []
        self._end_timer: asyncio.TimerHandle | None = None
        self._ending: EndFrame | None = None
        self._silence = b""
        # The frame class of the audio being queued and of the chunks being sent
        # (chunks keep the class of the audio they were cut from, e.g. TTSAudioRawFrame).
        self._queued_cls: type[OutputAudioRawFrame] = OutputAudioRawFrame
        self._send_cls: type[OutputAudioRawFrame] = OutputAudioRawFrame
        self._pending_kept = False  # the partial chunk holds uninterruptible audio
        self._mixer = params.audio_out_mixer
        self._push_sent = True
        self._stats = OutputStats()
        # The two counters every chunk bumps live in the output itself (see ``stats``).
        self._n_chunks = 0
        self._n_bot_bytes = 0
        self._n_direct = 0  # whole chunks sent on arrival (folded into the two above by stats)
        self._chunk_secs = 0.0  # the play time of a whole chunk
        self._speaking_period = params.bot_speaking_period_secs
        self._stop_secs = params.bot_stopped_speaking_secs
        self._direct = -1
        """The chunk size while a whole chunk may be sent on arrival (on the clock, not
        paused, closing, ending or mixing), else -1: one read on the per-chunk path.
        Kept by :meth:`_sync_direct` wherever one of those changes."""

    def _fold_direct(self) -> None:
        """Count the chunks sent on arrival into the totals (before the chunk size changes)."""
        n = self._n_direct
        if n:
            self._n_direct = 0
            self._n_chunks += n
            self._n_bot_bytes += n * self._chunk_bytes

    def _sync_direct(self) -> None:
        self._direct = (
            self._chunk_bytes
            if self._active
            and not self._closed
            and not self._discard_audio
            and self._ending is None
            and not self._paused
            and self._mixer is None
            else -1
        )

    @property
    def stats(self) -> OutputStats:
        """This output's counters (up to date when read)."""
        self._fold_direct()
        st = self._stats
        st.chunks_sent = self._n_chunks
        st.bot_bytes_sent = self._n_bot_bytes
        return st

    # -------------------------------------------------------------- queueing

    def _queue_audio(self, frame: OutputAudioRawFrame) -> None:
        if self._closed or self._discard_audio or self._ending is not None or not self._chunk_bytes:
            return
        audio = frame.audio
        if frame.sample_rate != self._rate:
            rs = self._resampler
            if rs is None or rs.in_rate != frame.sample_rate:
                rs = self._resampler = LowLatencyResampler(frame.sample_rate, self._rate, self._channels)
            audio = rs.resample(audio)
        if len(audio) == self._chunk_bytes and not self._pending:
            # A whole chunk queued: still a real-time stream if it did not come in a
            # burst (so that a stream queued once, e.g. behind frames fed together at
            # the start, goes back to sending on arrival instead of lagging a tick).
            now = self._loop.time()  # type: ignore[union-attr]
            if now - self._last_in > self._slack:
                self._steady += 1
                if self._steady > 3 and self._queue and self._speaking and self._stretch < self._catch_up:
                    # A real-time stream with chunks still queued before this one: that
                    # backlog is lag the stream can never make up by itself (it comes no
                    # faster than it plays), like a late burst's. Let the window take it.
                    self._late(self._period)
            else:
                self._steady = 0
            self._last_in = now
        else:
            self._steady = 0
        q = self._queue
        cls = frame.__class__
        if cls is not self._queued_cls:
            self._queued_cls = cls
            q.append(AudioClass(cls))
        kept = not frame.interruptible
        if kept or self._pending_kept:
            chunks, self._pending, self._pending_kept = cut_kept(
                self._pending, self._pending_kept, audio, kept, self._chunk_bytes
            )
            q.extend(chunks)
            self._activate()
            return
        if self._pending:
            audio = self._pending + audio
        size = self._chunk_bytes
        n = len(audio) // size
        if n == 1 and len(audio) == size:
            q.append(audio)
            self._pending = b""
        else:
            for i in range(n):
                q.append(audio[i * size : (i + 1) * size])
            self._pending = audio[n * size :]
        self._activate()

    def _flush_partial(self) -> None:
        # The resampler holds no samples back, only its filter delay (~1-2 ms of the
        # signal): that stays in its state, so audio continuing after a control frame
        # joins without a click, rather than going out as a (padded) chunk of its own.
        pending = self._pending
        if pending:
            if self._params.audio_out_pad_last_chunk:
                pending += bytes(self._chunk_bytes - len(pending))
            self._queue.append(Kept(pending) if self._pending_kept else pending)
            self._pending = b""
            self._pending_kept = False

    def _activate(self) -> None:
        if self._closed or self._clock is None:
            return
        if self._active:
            # Already on the clock: send now whatever the send-ahead window allows
            # instead of waiting up to a period for the next tick (an echo or a
            # streaming TTS would otherwise gain up to 20 ms per chunk).
            if not self._paused:
                now = self._loop.time()  # type: ignore[union-attr]
                q = self._queue
                if q:
                    head = q[0]
                    if type(head) is bytes and self._play_end - now + len(head) * self._inv_bps > self._window:
                        # The window is shut: the next tick sends the head chunk.
                        self._clock.add(self)
                        return
                busy = self.on_clock(now)
                if not busy:
                    self._clock.discard(self)
                elif busy is True:
                    self._clock.add(self)
            return
        self._active = True
        self._sync_direct()
        self._clock.add(self)
        assert self._loop is not None  # noqa: S101 - set when the run started
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
        if (
            self._steady >= 3
            and self._speaking
            and self._hold > 0.0
            and not self._queue
            and not self._pending
            and not self._paused
            and not self._outbox
            and not self._closed
            and now - self._play_end + self._idle_gap < self._hold
            and now - self._last_sent + self._idle_gap < self._stop_secs
        ):
            # A continuous output carrying a steady real-time stream sent on arrival: nothing
            # to send before the hold could run out (see below), so a look now and then will
            # do, made busy again in time for it (at 500 calls the look every tick cost
            # about a tenth of the worker's CPU).
            return IDLE
        if (
            self._speaking
            and not self._queue
            and not self._pending
            and not self._paused
            and not self._always
            and not self._outbox
            and not self._closed
            and now - self._last_sent < self._stop_secs
        ):
            return IDLE  # the common look at an idle client: still speaking, nothing to send
        if self._closed:
            self._active = False
            self._direct = -1
            return False
        q = self._queue
        ahead = self._window
        inv_bps = self._inv_bps
        bot_sent = False
        if not self._paused:
            while True:
                if q:
                    item = q[0]
                    is_audio = type(item) is bytes or type(item) is Kept
                    if is_audio or item is _SILENCE:
                        dur = len(item) * inv_bps if is_audio else self._period
                        if self._play_end - now + dur > ahead:
                            break
                        q.popleft()
                        if is_audio:
                            self._send(item if type(item) is bytes else bytes(item), now, True)
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
                    self._pending_kept = False
                    self._send(pending, now, True)
                    bot_sent = True
                break
        if self._always and (self._paused or not q):
            # A steady real-time stream (an echo, a relayed call) late by less than the
            # hold gets no silence in its gap: silence sent now would push its late audio
            # back a chunk for the rest of the turn (the stream comes no faster than it
            # plays) and keep it queued behind the clock. The late audio goes out the
            # moment it comes instead, on the stream's own timeline (see ``_catching_up``).
            held = self._catching_up() and not self._paused and not self._pending
            if held and now - self._play_end >= self._hold:
                held = False
                self._steady = 0  # later than the hold: the stream stopped; silence as after speech
            if not held:
                # Silence tops the peer's buffer up to the plain window, never into the
                # catch-up stretch (that room is for late bot audio).
                base = self._ahead + self._slack
                while self._play_end - now + self._period <= base:
                    self._send(self._silence, now, False)
        if self._speaking:
            if bot_sent:
                if now - self._last_speaking >= self._speaking_period:
                    self._last_speaking = now
                    self._broadcast(BotSpeakingFrame)
            elif not self._paused and now - self._last_sent >= self._stop_secs:
                # A paused bot (barge-in being judged) has not stopped speaking.
                self._stopped_speaking()
        if self._outbox:
            self._flush_outbox()
        if self._queue or (self._pending and not self._paused) or self._always:
            return True
        if self._speaking and not self._paused:
            return IDLE
        self._active = False
        self._direct = -1
        return False

    def _send(self, chunk: bytes, now: float, bot: bool, frame: OutputAudioRawFrame | None = None) -> None:
        if frame is None:
            mixer = self._mixer
            if mixer is not None:
                chunk = mixer.mix(chunk)
            frame = (self._send_cls if bot else OutputAudioRawFrame)(chunk, self._rate, self._channels)
        try:
            self._write_chunk(frame)  # type: ignore[misc]
        except Exception:
            logger.exception("%s: write_audio failed", self)
        start = self._play_end
        if start < now and not (bot and self._catching_up()):
            if bot and self._speaking and now - start > self._slack and self._stretch < self._catch_up:
                self._late(now - start)
            start = now
        self._play_end = start + len(chunk) * self._inv_bps
        self._n_chunks += 1
        if not bot:
            self._stats.silence_chunks_sent += 1
            return
        self._n_bot_bytes += len(chunk)
        self._last_sent = now
        if not self._speaking:
            self._speaking = True
            self._last_speaking = now
            self._broadcast(BotStartedSpeakingFrame)
        if self._push_sent:
            self._outbox.append((frame, DOWNSTREAM))

    def _catching_up(self) -> bool:
        """Whether late bot audio continues the stream's own timeline (True) instead of
        restarting it at now. So on a continuous output for a steady real-time stream:
        its gaps get no silence before the hold runs out (see :meth:`on_clock`), so on
        the wire it is only late, not pushed back; its late audio goes out at once (up
        to the window past the lateness) and the stream is on time again, instead of a
        chunk or more behind the clock for the rest of the turn."""
        return self._hold > 0.0 and self._steady >= 3 and self._speaking

    def _late(self, lateness: float) -> None:
        """Mid-speech the peer ran dry: the stream is late. Let the window grow by
        the lateness (capped), so a late burst catches up."""
        self._stretch = min(self._catch_up, self._stretch + lateness)
        self._window = self._ahead + self._slack + self._stretch

    def _release(self, frame: Frame | AudioClass) -> None:
        """A queued frame reached the head of the queue: send it, pass it on."""
        if isinstance(frame, AudioClass):
            self._send_cls = frame.cls
            return
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
        self._steady = 0
        self._stretch = 0.0
        self._window = self._ahead + self._slack
        self._broadcast(BotStoppedSpeakingFrame)
