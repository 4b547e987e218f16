"""BaseInputTransport: user audio and peer messages into the pipeline.

The reader of a connection calls :meth:`BaseInputTransport.push_input_frame` (or
:meth:`~BaseInputTransport.push_audio`) synchronously for every message it
decoded. Frames go into the call's scheduler with ``submit``, which never
blocks and never awaits, so the reader is never held up by the pipeline. Audio
of any chunk size is accepted; it is resampled to the pipeline rate if needed,
passed through the optional input filter and, if ``audio_in_chunk_ms`` is set,
re-chunked. A single timer (not one per frame) warns once when no audio arrived
for ``audio_in_warn_secs``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..audio import AudioChunker, StreamResampler
from ..frames import (
    CancelFrame,
    CancelTaskFrame,
    EndFrame,
    EndTaskFrame,
    FilterControlFrame,
    Frame,
    InputAudioRawFrame,
    StartFrame,
)
from ..runtime import FrameDirection, FrameProcessor
from ._drive import Pending, drive
from ._params import TransportParams

__all__ = ["BaseInputTransport"]

logger = logging.getLogger("flowcat.transports.input")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM


class BaseInputTransport(FrameProcessor):
    """Input side of a transport (see the module docstring).

    Args:
        params: Transport parameters.
        name: Processor name.
    """

    # What each received frame reads, in the object (see BaseOutputTransport).
    __slots__ = ("audio_passthrough", "_rate", "_channels", "audio_frames_in", "_running", "_params")

    def __init__(self, params: TransportParams, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self._params = params
        self._rate = params.audio_in_sample_rate or 16000
        self._channels = params.audio_in_channels
        self._running = False
        self._started_fut: asyncio.Future[None] | None = None
        self._resampler: StreamResampler | None = None
        self._chunker: AudioChunker | None = None
        self._filter = params.audio_in_filter
        self._filter_async = False
        self._filter_enabled = True
        self._last_audio = 0.0
        self._seen_audio = 0
        self.audio_passthrough = False
        """Whether input audio at :attr:`sample_rate` and :attr:`num_channels` goes into
        the pipeline as received (audio enabled, no input filter, no re-chunking): set
        at start, cleared at stop/cancel. Read-only for others (see :meth:`audio_submitter`)."""
        self._warn_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.audio_frames_in = 0
        """Audio messages received."""

    # ----------------------------------------------------------------- state

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) of the audio pushed into the pipeline."""
        return self._rate

    @property
    def num_channels(self) -> int:
        """Channels of the audio pushed into the pipeline."""
        return self._channels

    @property
    def running(self) -> bool:
        """True between the StartFrame and End/Cancel."""
        return self._running

    def started_future(self) -> asyncio.Future[None]:
        """A future done when the StartFrame has reached this processor."""
        if self._started_fut is None:
            self._started_fut = asyncio.get_running_loop().create_future()
        return self._started_fut

    # ------------------------------------------------------------- lifecycle

    async def start(self, frame: StartFrame) -> None:
        p = self._params
        self._rate = p.audio_in_sample_rate or frame.audio_in_sample_rate
        if p.audio_in_chunk_ms:
            self._chunker = AudioChunker(self._rate, p.audio_in_chunk_ms, self._channels)
        flt = self._filter
        if flt is not None:
            self._filter_async = inspect.iscoroutinefunction(flt.filter)
            if hasattr(flt, "start"):
                res = flt.start(self._rate)
                if inspect.isawaitable(res):
                    await res
        loop = self._loop = asyncio.get_running_loop()
        self._last_audio = loop.time()
        warn = p.audio_in_warn_secs
        if warn and p.audio_in_enabled:
            self._warn_timer = loop.call_later(warn, self._check_audio)
        self.audio_passthrough = p.audio_in_enabled and flt is None and self._chunker is None
        self._running = True
        fut = self.started_future()
        if not fut.done():
            fut.set_result(None)

    async def stop(self, frame: EndFrame) -> None:
        self._halt()

    async def cancel(self, frame: CancelFrame) -> None:
        self._halt()

    async def cleanup(self) -> None:
        self._halt()
        flt = self._filter
        if flt is not None and hasattr(flt, "stop"):
            res = flt.stop()
            if inspect.isawaitable(res):
                await res

    def _halt(self) -> None:
        self._running = False
        self.audio_passthrough = False
        if self._warn_timer is not None:
            self._warn_timer.cancel()
            self._warn_timer = None
        fut = self._started_fut
        if fut is not None and not fut.done():
            fut.cancel()

    # Frames passing through (upstream to the task, mostly) go inline.
    inline_frames = (Frame,)

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        if self._filter is not None and isinstance(frame, FilterControlFrame):
            return NotImplemented
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, FilterControlFrame) and self._filter is not None:
            await self._filter_control(frame)
        await self.push_frame(frame, direction)

    async def _filter_control(self, frame: FilterControlFrame) -> None:
        enable = getattr(frame, "enable", None)
        if enable is not None:
            self._filter_enabled = bool(enable)
        handler = getattr(self._filter, "process_frame", None)
        if handler is not None:
            res = handler(frame)
            if inspect.isawaitable(res):
                await res

    # ------------------------------------------------------ from the reader

    def push_input_frame(self, frame: Frame) -> None:
        """Push a frame decoded by the reader (never blocks, never awaits)."""
        if isinstance(frame, InputAudioRawFrame):
            if (
                self.audio_passthrough
                and frame.sample_rate == self._rate
                and frame.num_channels == self._channels
            ):
                self.audio_frames_in += 1
                self._sched.submit_input(self, frame)  # type: ignore[union-attr]
                return
            if self._running and self._params.audio_in_enabled:
                self.push_audio(frame.audio, frame.sample_rate)
            return
        if self._running:
            self._submit(frame, DOWNSTREAM)

    def audio_submitter(self) -> Callable[[FrameProcessor, Frame], None] | None:
        """The call scheduler's entry for input audio, called as ``submit(input, frame)``;
        None before a task attached this input.

        For a transport that builds input frames itself: while :attr:`audio_passthrough`
        holds, ``submit(self, InputAudioRawFrame(audio, sample_rate, num_channels))`` is
        what :meth:`push_input_frame` does with that frame, without its checks (count it in
        :attr:`audio_frames_in`). Ask again after each start.
        """
        sched = self._sched
        return None if sched is None else sched.submit_input

    def push_audio(self, audio: bytes, sample_rate: int | None = None) -> None:
        """Push raw PCM16 user audio of any size (never blocks, never awaits)."""
        if not self._running or not self._params.audio_in_enabled:
            return
        self.audio_frames_in += 1
        if sample_rate is not None and sample_rate != self._rate:
            rs = self._resampler
            if rs is None or rs.in_rate != sample_rate:
                rs = self._resampler = StreamResampler(sample_rate, self._rate, self._channels)
            audio = rs.resample(audio)
        flt = self._filter
        if flt is not None and self._filter_enabled and audio:
            if self._filter_async:
                res = drive(flt.filter(audio), "input filter")
                if isinstance(res, Pending):
                    res.task.add_done_callback(self._filtered_late)
                    return
                audio = res
            else:
                audio = flt.filter(audio)
        self._deliver(audio)

    def _filtered_late(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is None and self._running:
            self._deliver(task.result())

    def _deliver(self, audio: bytes) -> None:
        chunker = self._chunker
        if chunker is None:
            if audio:
                self._submit(
                    InputAudioRawFrame(audio, self._rate, self._channels),
                    DOWNSTREAM,
                )
            return
        for chunk in chunker.push(audio):
            self._submit(
                InputAudioRawFrame(chunk, self._rate, self._channels),
                DOWNSTREAM,
            )

    def _submit(self, frame: Frame, direction: FrameDirection) -> None:
        sched = self._sched
        if sched is not None:
            sched.submit(self, frame, direction)

    def peer_closed(self, end: bool = False, reason: str = "peer closed the connection") -> None:
        """The connection closed: ask the task to end (EndFrame) or cancel (default)."""
        if not self._running:
            return
        self._running = False
        if end:
            self._submit(EndTaskFrame(reason=reason), UPSTREAM)
        else:
            self._submit(CancelTaskFrame(reason=reason), UPSTREAM)

    # -------------------------------------------------------------- warning

    def _check_audio(self) -> None:
        self._warn_timer = None
        loop = self._loop
        warn = self._params.audio_in_warn_secs
        if loop is None or not warn or not self._running:
            return
        # Audio is counted, not timestamped, per frame: a check that sees no new
        # frame since the last one warns (at most ``warn`` s late).
        now = loop.time()
        if self.audio_frames_in != self._seen_audio:
            self._seen_audio = self.audio_frames_in
            self._last_audio = now
        idle = now - self._last_audio
        if idle >= warn:
            logger.warning("%s: no input audio received for %.1f s", self, idle)
            return
        self._warn_timer = loop.call_later(max(warn - idle, warn / 4), self._check_audio)
