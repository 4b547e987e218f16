"""Processors for in-band DTMF: detect keys in input audio, synthesise keys as output audio."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...frames import (
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
    OutputDTMFFrame,
    OutputDTMFUrgentFrame,
)
from ...runtime import FrameDirection, FrameProcessor
from ._goertzel import GoertzelDTMFDetector
from ._tone import DTMFToneGenerator

__all__ = ["DTMFToneInjector", "InbandDTMFDetector"]


class InbandDTMFDetector(FrameProcessor):
    """Detects keypad tones in :class:`~flowcat.frames.InputAudioRawFrame` audio.

    Every input audio frame passes on unchanged; when a press becomes certain an
    :class:`~flowcat.frames.InputDTMFFrame` follows it downstream (once per press).
    Multi-channel audio is analysed on its first channel. Put it after any jitter
    buffer: reordered frames make in-band detectors repeat digits.

    Args:
        detector_params: Keyword arguments for :class:`GoertzelDTMFDetector`
            (thresholds, block size, hang-over).
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    def __init__(self, *, detector_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._params = dict(detector_params or {})
        self._detector: GoertzelDTMFDetector | None = None

    @property
    def detector(self) -> GoertzelDTMFDetector | None:
        """The detector in use (made on the first audio frame, remade if the rate changes)."""
        return self._detector

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass every frame on; after input audio, push any key it completed."""
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            det = self._detector
            if det is None or det.sample_rate != frame.sample_rate:
                det = self._detector = GoertzelDTMFDetector(frame.sample_rate, **self._params)
            audio = frame.audio
            if frame.num_channels > 1:
                audio = np.frombuffer(audio, dtype="<i2")[:: frame.num_channels].tobytes()
            for key in det.process(audio):
                await self.push_frame(InputDTMFFrame(button=key), direction)


class DTMFToneInjector(FrameProcessor):
    """Plays DTMF in-band for transports that cannot send RFC 4733 events.

    Consumes :class:`~flowcat.frames.OutputDTMFFrame` and
    :class:`~flowcat.frames.OutputDTMFUrgentFrame` and pushes the key's tone
    (then its gap of silence) as :class:`~flowcat.frames.OutputAudioRawFrame`
    at the pipeline's output rate (``StartFrame.audio_out_sample_rate``).

    Args:
        duration_ms: Tone length, milliseconds.
        gap_ms: Silence after each tone, milliseconds.
        amplitude_dbfs: Peak level of the two-tone sum, dBFS.
        chunk_ms: Split each key's audio into frames of this many milliseconds
            (None: one frame per key).
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    def __init__(
        self,
        *,
        duration_ms: int = 100,
        gap_ms: int = 60,
        amplitude_dbfs: float = -10.0,
        chunk_ms: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.duration_ms = duration_ms
        self.gap_ms = gap_ms
        self.amplitude_dbfs = amplitude_dbfs
        self.chunk_ms = chunk_ms
        self._generator: DTMFToneGenerator | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Replace output DTMF frames with tone audio; pass everything else on."""
        await super().process_frame(frame, direction)
        if not isinstance(frame, (OutputDTMFFrame, OutputDTMFUrgentFrame)):
            await self.push_frame(frame, direction)
            return
        start = self.start_frame
        rate = start.audio_out_sample_rate if start is not None else 24000
        gen = self._generator
        if gen is None or gen.sample_rate != rate:
            gen = self._generator = DTMFToneGenerator(rate)
        audio = gen.tone(frame.button, self.duration_ms, self.gap_ms, self.amplitude_dbfs)
        if not self.chunk_ms:
            await self.push_frame(OutputAudioRawFrame(audio=audio, sample_rate=rate), direction)
            return
        step = 2 * rate * self.chunk_ms // 1000
        for i in range(0, len(audio), step):
            await self.push_frame(OutputAudioRawFrame(audio=audio[i : i + step], sample_rate=rate), direction)
