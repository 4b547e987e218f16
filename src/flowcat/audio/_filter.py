"""Input audio filters (noise suppression) and the processor that applies them."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from ..errors import MissingExtraError
from ..frames import FilterEnableFrame, Frame, InputAudioRawFrame, StartFrame
from ..runtime import FrameDirection, FrameProcessor
from ._resampler import StreamResampler

__all__ = ["AudioFilterProcessor", "BaseAudioFilter", "RNNoiseFilter"]

logger = logging.getLogger("flowcat.audio")

_I16 = np.dtype("<i2")
_RNN_RATE = 48000
_RNN_FRAME = 480  # 10 ms at 48 kHz


class BaseAudioFilter:
    """Base of input audio filters.

    The input transport (or :class:`AudioFilterProcessor`) calls :meth:`start`
    with the input sample rate, :meth:`filter` for every incoming chunk, forwards
    ``FilterControlFrame`` frames to :meth:`process_frame` and calls :meth:`stop` at
    the end. :meth:`filter` runs on the hot path.
    """

    async def start(self, sample_rate: int) -> None:
        """Prepare for input at ``sample_rate`` Hz."""

    async def stop(self) -> None:
        """Release resources."""

    async def process_frame(self, frame: Frame) -> None:
        """Handle a ``FilterEnableFrame``."""

    def filter(self, audio: bytes) -> bytes:
        """Return the filtered mono 16-bit PCM chunk (length may differ while buffering)."""
        return audio


def _load_rnnoise() -> Any:
    try:
        from pyrnnoise import rnnoise
    except ImportError as exc:
        raise MissingExtraError("RNNoiseFilter", "rnnoise") from exc
    return rnnoise


class RNNoiseFilter(BaseAudioFilter):
    """RNNoise noise suppression (``pyrnnoise`` wheel, extra ``flowcat[rnnoise]``).

    RNNoise runs at 48 kHz on 480-sample (10 ms) frames: input is resampled to
    48 kHz, cut into frames with a carry buffer, denoised, and resampled back.
    Output therefore lags the input (10 ms of framing plus the resamplers' block
    delay, none at 48 kHz input); over a stream the lengths match. One native
    state per filter: use one filter per call.

    Args:
        enabled: Start with filtering on (off returns the input unchanged).
    """

    def __init__(self, enabled: bool = True) -> None:
        self._rnn = _load_rnnoise()
        self._enabled = enabled
        self._state: Any = None
        self._up: StreamResampler | None = None
        self._down: StreamResampler | None = None
        self._carry = np.zeros(0, dtype=np.float32)
        self._frame = np.zeros(_RNN_FRAME, dtype=np.float32)
        self._ptr = self._frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        self.sample_rate = 0
        self.speech_probability = 0.0

    @property
    def enabled(self) -> bool:
        """Whether :meth:`filter` denoises."""
        return self._enabled

    async def start(self, sample_rate: int) -> None:
        """Create the RNNoise state and resamplers for ``sample_rate`` Hz input."""
        self.sample_rate = sample_rate
        if self._state is None:
            self._state = self._rnn.create()
        self._up = StreamResampler(sample_rate, _RNN_RATE)
        self._down = StreamResampler(_RNN_RATE, sample_rate)
        self._carry = np.zeros(0, dtype=np.float32)

    async def stop(self) -> None:
        """Destroy the native state."""
        if self._state is not None:
            self._rnn.destroy(self._state)
            self._state = None

    async def process_frame(self, frame: Frame) -> None:
        """Apply ``FilterEnableFrame``."""
        if isinstance(frame, FilterEnableFrame):
            self._enabled = frame.enable

    def filter(self, audio: bytes) -> bytes:
        """Denoise a chunk of mono 16-bit PCM at the start rate.

        Args:
            audio: Signed 16-bit little-endian samples.

        Returns:
            Denoised samples; a call may return fewer (or more) bytes than given
            while the 10 ms framing and resamplers fill, never drifting over time.
        """
        if not self._enabled or self._state is None or self._up is None or self._down is None:
            return audio
        up = self._up.resample(audio)
        x = np.frombuffer(up, dtype=_I16).astype(np.float32)
        if len(self._carry):
            x = np.concatenate((self._carry, x))
        nframes = len(x) // _RNN_FRAME
        if nframes == 0:
            self._carry = x
            return b""
        used = nframes * _RNN_FRAME
        out = np.empty(used, dtype=np.float32)
        frame, ptr, state, process = self._frame, self._ptr, self._state, self._rnn.lib.rnnoise_process_frame
        prob = 0.0
        for i in range(nframes):
            frame[:] = x[i * _RNN_FRAME : (i + 1) * _RNN_FRAME]
            prob = process(state, ptr, ptr)
            out[i * _RNN_FRAME : (i + 1) * _RNN_FRAME] = frame
        self.speech_probability = float(prob)
        self._carry = x[used:].copy()
        np.rint(out, out=out)
        np.clip(out, -32768, 32767, out=out)
        return self._down.resample(out.astype(_I16).tobytes())

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None:
            self._rnn.destroy(state)
            self._state = None


class AudioFilterProcessor(FrameProcessor):
    """Apply an audio filter to every :class:`~flowcat.frames.InputAudioRawFrame`.

    Each input frame is pushed on with its ``audio`` replaced by the filtered
    audio, same length: filters that buffer (RNNoise frames and resamples) return
    audio in bursts, so output goes through a FIFO; while it runs short at the
    start of a stream the missing part is silence, after which the FIFO holds the
    filter's worst delay and every frame is full. Frame count and timing are
    therefore unchanged. Other frames pass unchanged; ``FilterControlFrame`` frames
    are also forwarded to the filter. The filter is started at StartFrame with
    the pipeline's input sample rate and stopped at End/Cancel.

    Args:
        audio_filter: The filter to apply.
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    def __init__(self, audio_filter: BaseAudioFilter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.audio_filter = audio_filter
        self._filter_rate = 0
        self._fifo = bytearray()

    async def start(self, frame: StartFrame) -> None:
        self._filter_rate = frame.audio_in_sample_rate
        await self.audio_filter.start(self._filter_rate)

    async def stop(self, frame: Any) -> None:
        await self.audio_filter.stop()

    async def cancel(self, frame: Any) -> None:
        await self.audio_filter.stop()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if frame.sample_rate != self._filter_rate:
                logger.warning("%s: restarting filter at %d Hz", self, frame.sample_rate)
                self._filter_rate = frame.sample_rate
                await self.audio_filter.start(frame.sample_rate)
                self._fifo.clear()
            audio = self.audio_filter.filter(frame.audio)
            n = len(frame.audio)
            fifo = self._fifo
            if fifo or len(audio) != n:
                fifo += audio
                if len(fifo) >= n:
                    audio = bytes(fifo[:n])
                    del fifo[:n]
                else:  # filter still priming: silence first, then what it has
                    audio = bytes(n - len(fifo)) + bytes(fifo)
                    fifo.clear()
            frame.audio = audio
        elif isinstance(frame, FilterEnableFrame):
            await self.audio_filter.process_frame(frame)
        await self.push_frame(frame, direction)
