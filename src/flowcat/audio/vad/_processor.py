"""VADProcessor: runs a VAD analyzer on input audio and emits pipecat's VAD frames."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from ...frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    SpeechControlParamsFrame,
    StartFrame,
    UserSpeakingFrame,
    VADParamsUpdateFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from ...runtime import FrameDirection, FrameProcessor
from .._resampler import StreamResampler
from ._analyzer import VADAnalyzer
from ._params import VADEvent, VADParams

__all__ = ["VADProcessor"]

logger = logging.getLogger("flowcat.vad")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM
STARTED = VADEvent.STARTED
STOPPED = VADEvent.STOPPED
_I16 = np.dtype("<i2")


class VADProcessor(FrameProcessor):
    """Voice activity detection in a pipeline (pipecat's ``VADProcessor``).

    Every frame is passed on first, unchanged (input audio immediately). Audio is
    fed to ``vad_analyzer`` (resampled to 16 kHz when its rate is not supported).
    On transitions the processor broadcasts (both directions)
    :class:`~flowcat.frames.VADUserStartedSpeakingFrame` (``start_secs``, ``timestamp``)
    and :class:`~flowcat.frames.VADUserStoppedSpeakingFrame` (``stop_secs``,
    ``timestamp``), and :class:`~flowcat.frames.UserSpeakingFrame` at most every
    ``speech_activity_period`` seconds of audio while speaking.

    ``timestamp`` is the **audio position** of the decision: seconds of this
    stream's audio (at the analyzer's rate) up to the end of the window that
    confirmed the transition; speech began about ``start_secs`` earlier (ended about
    ``stop_secs`` earlier). With Silero the decision arrives after the audio frame
    that carried the window (the batch runs at the end of the loop iteration, or in
    the VAD thread under load), so VAD frames trail the audio by a frame or so; the
    timestamps do not move.

    Args:
        vad_analyzer: The analyzer (one per call; Silero ones share the model).
        speech_activity_period: Seconds of audio between UserSpeakingFrames.
        audio_idle_timeout: Force a stop when no audio arrives for this many seconds
            (event-loop clock) while speaking; 0 disables.
        drain_timeout: Bound (s) on waiting for pending VAD results at EndFrame.
    """

    def __init__(
        self,
        *,
        vad_analyzer: VADAnalyzer,
        speech_activity_period: float = 0.2,
        audio_idle_timeout: float = 1.0,
        drain_timeout: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._analyzer = vad_analyzer
        vad_analyzer.activity_period = speech_activity_period
        vad_analyzer.set_listener(self._on_vad_event)
        self._idle_timeout = audio_idle_timeout
        self._drain_timeout = drain_timeout
        self._in_rate = 0
        self._resampler: StreamResampler | None = None
        self._vad_events: list[tuple[VADEvent, float]] = []
        self._in_chain = False
        self._prefed: Frame | None = None
        self._speaking = False
        self._last_audio = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._clock: Any = None  # the loop's time(), kept while the idle timer runs (no lookup per frame)

    @property
    def vad_analyzer(self) -> VADAnalyzer:
        """The analyzer."""
        return self._analyzer

    @property
    def speaking(self) -> bool:
        """Whether the last event was a start."""
        return self._speaking

    # ------------------------------------------------------------- frames

    # Input audio (50 frames/s per call) is fed with a plain call: no coroutine per frame.
    inline_frames = (InputAudioRawFrame,)

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        """Feed input audio to the analyzer and pass it on.

        When the feed produced VAD events at once (an analyzer that is not batched), the
        frame goes through :meth:`process_frame` instead, which pushes it and then the
        events, in that order (the frame is not fed twice).
        """
        if self._prefed is frame:  # fed already; the delivery retries process_inline before process_frame
            return NotImplemented
        self._in_chain = True
        try:
            self._feed(frame)  # type: ignore[arg-type]
        finally:
            self._in_chain = False
        if self._vad_events:
            self._prefed = frame
            return NotImplemented
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass ``frame`` on, then run VAD on input audio / handle VAD control frames."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            if self._prefed is frame:  # fed by process_inline
                self._prefed = None
            else:
                self._in_chain = True
                try:
                    self._feed(frame)
                finally:
                    self._in_chain = False
            if self._vad_events:
                await self._push_events()
            return
        if isinstance(frame, EndFrame):
            await self._drain()
            self._cancel_idle()
            await self.push_frame(frame, direction)
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._configure(frame.audio_in_sample_rate)
            await self.broadcast_frame(SpeechControlParamsFrame, vad_params=self._analyzer.params)
        elif isinstance(frame, VADParamsUpdateFrame):
            if isinstance(frame.params, VADParams):
                self._analyzer.set_params(frame.params)
                self._speaking = False
                await self.broadcast_frame(SpeechControlParamsFrame, vad_params=frame.params)
            else:
                logger.warning("%s: VADParamsUpdateFrame without VADParams: %r", self, frame.params)
        elif isinstance(frame, CancelFrame):
            self._cancel_idle()

    def _configure(self, in_rate: int) -> None:
        analyzer = self._analyzer
        self._in_rate = in_rate
        if in_rate in analyzer.supported_sample_rates:
            self._resampler = None
            analyzer.set_sample_rate(in_rate)
        else:
            analyzer.set_sample_rate(16000)
            self._resampler = StreamResampler(in_rate, analyzer.sample_rate)
            if analyzer.sample_rate == in_rate:
                self._resampler = None

    def _feed(self, frame: InputAudioRawFrame) -> None:
        audio = frame.audio
        if frame.sample_rate != self._in_rate:
            self._configure(frame.sample_rate)
        if frame.num_channels > 1:
            audio = _downmix(audio, frame.num_channels)
        if self._resampler is not None:
            audio = self._resampler.resample(audio)
        if self._idle_handle is not None:
            self._last_audio = self._clock()
        self._analyzer.feed(audio)

    async def _drain(self) -> None:
        analyzer = self._analyzer
        if not analyzer.pending:
            return
        try:
            await asyncio.wait_for(analyzer.drain(), self._drain_timeout)
        except TimeoutError:
            logger.warning("%s: VAD results still pending at end (%d windows)", self, analyzer.pending)

    # ------------------------------------------------------------- events

    def _on_vad_event(self, event: VADEvent, position: float) -> None:
        if event is STARTED:
            self._speaking = True
            self._arm_idle()
        elif event is STOPPED:
            self._speaking = False
            self._cancel_idle()
        self._vad_events.append((event, position))
        if not self._in_chain:
            self._submit_events()

    def _frames_for(self, event: VADEvent, position: float) -> tuple[Frame, Frame]:
        params = self._analyzer.params
        down: Frame
        up: Frame
        if event is STARTED:
            down = VADUserStartedSpeakingFrame(start_secs=params.start_secs, timestamp=position)
            up = VADUserStartedSpeakingFrame(start_secs=params.start_secs, timestamp=position)
        elif event is STOPPED:
            down = VADUserStoppedSpeakingFrame(stop_secs=params.stop_secs, timestamp=position)
            up = VADUserStoppedSpeakingFrame(stop_secs=params.stop_secs, timestamp=position)
        else:
            down = UserSpeakingFrame()
            up = UserSpeakingFrame()
        down.broadcast_sibling_id = up.id
        up.broadcast_sibling_id = down.id
        return down, up

    async def _push_events(self) -> None:
        events, self._vad_events = self._vad_events, []
        for event, position in events:
            down, up = self._frames_for(event, position)
            await self.push_frame(down, DOWNSTREAM)
            await self.push_frame(up, UPSTREAM)

    def _submit_events(self) -> None:
        """Outside the chain (batch results): hand the frames to the call's scheduler."""
        sched = self._sched
        if sched is None or sched.executing:
            self.create_task(self._push_events(), "vad_events")
            return
        events, self._vad_events = self._vad_events, []
        for event, position in events:
            down, up = self._frames_for(event, position)
            sched.submit(self, down, DOWNSTREAM)
            sched.submit(self, up, UPSTREAM)

    # -------------------------------------------------------- idle audio

    def _arm_idle(self) -> None:
        if self._idle_timeout <= 0 or self._idle_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._last_audio = loop.time()
        self._idle_handle = loop.call_later(self._idle_timeout, self._check_idle)

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _check_idle(self) -> None:
        self._idle_handle = None
        if not self._speaking:
            return
        loop = asyncio.get_running_loop()
        remaining = self._last_audio + self._idle_timeout - loop.time()
        if remaining > 0:
            self._idle_handle = loop.call_later(remaining, self._check_idle)
            return
        logger.warning("%s: no audio for %.1f s while speaking; forcing a stop", self, self._idle_timeout)
        self._analyzer.force_quiet()
        self._on_vad_event(STOPPED, self._analyzer.position)

    async def cleanup(self) -> None:
        """Release the analyzer's per-stream state."""
        self._cancel_idle()
        self._analyzer.close()


def _downmix(audio: bytes, channels: int) -> bytes:
    a = np.frombuffer(audio, dtype=_I16)
    a = a[: a.shape[0] - a.shape[0] % channels].reshape(-1, channels)
    out: bytes = a.mean(axis=1).astype(_I16).tobytes()
    return out
