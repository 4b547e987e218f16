"""Streaming sample-rate conversion of 16-bit PCM with per-stream soxr state."""

from __future__ import annotations

import numpy as np
import soxr

from ..errors import ConfigError

__all__ = ["StreamResampler"]

_I16 = np.dtype("<i2")


class StreamResampler:
    """Resample a continuous 16-bit PCM stream chunk by chunk.

    One instance per stream (per call leg): the soxr filter state carries across
    chunks, so consecutive chunks join without clicks. The default soxr ``MQ``
    recipe (16-bit precision, flat to ~0.9 of the lower Nyquist, ~86 dB alias
    rejection) matches int16 audio; ``HQ`` costs more latency for 8 <-> 48 kHz.
    soxr works in blocks, so output arrives in bursts: some calls return nothing
    and the stream lags the input by up to ~40 ms (16/24/48 kHz pairs) or
    ~75-120 ms (pairs with 8 kHz); see ``docs/audio.md``. Re-chunk the output with
    :class:`AudioChunker` when fixed frame sizes are needed, or use
    :class:`LowLatencyResampler` for audio that is already paced. :meth:`flush`
    releases what is held at the end of a stream. Equal rates pass through
    untouched. Partial samples (odd byte counts) are carried to the next call.

    Args:
        in_rate: Input sample rate in Hz.
        out_rate: Output sample rate in Hz.
        num_channels: Interleaved channels per sample frame.
        quality: soxr quality recipe (``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"``, ``"VHQ"``).
    """

    __slots__ = ("_carry", "_frame_bytes", "_stream", "in_rate", "num_channels", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, num_channels: int = 1, quality: str = "MQ") -> None:
        if in_rate <= 0 or out_rate <= 0 or num_channels <= 0:
            raise ConfigError("rates and num_channels must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.num_channels = num_channels
        self.quality = quality
        self._frame_bytes = 2 * num_channels
        self._carry = b""
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(
                in_rate, out_rate, num_channels, dtype="int16", quality=quality
            )

    @property
    def passthrough(self) -> bool:
        """True when input and output rates are equal (no conversion)."""
        return self._stream is None

    def resample(self, pcm: bytes) -> bytes:
        """Convert the next chunk of the stream.

        Args:
            pcm: Signed 16-bit little-endian interleaved samples at ``in_rate``.

        Returns:
            Samples at ``out_rate``; over a long stream the output length tracks
            ``len(pcm) * out_rate / in_rate`` (minus the filter delay until flushed).
        """
        # Per audio frame: this carry-over of a partial sample is repeated in
        # _low_latency.py on purpose (a shared helper would add a call per frame).
        if self._carry:
            pcm = self._carry + pcm
            self._carry = b""
        extra = len(pcm) % self._frame_bytes
        if extra:
            self._carry = pcm[-extra:]
            pcm = pcm[:-extra]
        stream = self._stream
        if stream is None or not pcm:
            return pcm
        x = np.frombuffer(pcm, dtype=_I16)
        if self.num_channels > 1:
            x = x.reshape(-1, self.num_channels)
        return stream.resample_chunk(x).tobytes()

    def flush(self) -> bytes:
        """End the stream: return the samples still held in the filter.

        The resampler is ready for a new stream afterwards.

        Returns:
            The remaining output samples (16-bit little-endian).
        """
        self._carry = b""
        stream = self._stream
        if stream is None:
            return b""
        shape = (0, self.num_channels) if self.num_channels > 1 else (0,)
        out = stream.resample_chunk(np.zeros(shape, dtype=_I16), last=True).tobytes()
        stream.clear()
        return out

    def reset(self) -> None:
        """Drop all buffered state (e.g. after an interruption), discarding held samples."""
        self._carry = b""
        if self._stream is not None:
            self._stream.clear()
