"""Per-direction audio conversion: carrier codec and rate ⇄ pipeline PCM16.

One :class:`AudioDecoder` (caller → pipeline) and one :class:`AudioEncoder`
(pipeline → carrier) per call; each keeps its own stream resampler so that
chunk boundaries do not click. ``L16`` means 16-bit little-endian PCM.
"""

from __future__ import annotations

from collections.abc import Callable

from ..audio import (
    LowLatencyResampler,
    StreamResampler,
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from ..frames import InputAudioRawFrame

__all__ = ["CODECS", "INPUT_QUALITY", "AudioDecoder", "AudioEncoder", "bytes_per_sample"]

INPUT_QUALITY = "QQ"
"""soxr recipe for upsampling caller audio. The block-based recipes (``MQ``) hold
8 kHz input back for ~100 ms and release it in bursts, which would delay VAD and
turn detection on every call; the quick cubic recipe returns each 20 ms packet at
once, and upsampling band-limited telephone audio does not alias. Caller audio at a
higher rate than the pipeline's is downsampled by a
:class:`~flowcat.audio.LowLatencyResampler` (each packet at once, and filtered
against aliasing, which the cubic recipe is not)."""

_DECODE: dict[str, Callable[[bytes], bytes] | None] = {
    "PCMU": ulaw_to_pcm16,
    "PCMA": alaw_to_pcm16,
    "L16": None,
}
_ENCODE: dict[str, Callable[[bytes], bytes] | None] = {
    "PCMU": pcm16_to_ulaw,
    "PCMA": pcm16_to_alaw,
    "L16": None,
}
CODECS = frozenset(_DECODE)
"""Codecs the serializers convert: ``PCMU`` (μ-law), ``PCMA`` (A-law), ``L16`` (PCM16 LE)."""


def bytes_per_sample(codec: str) -> int:
    """Bytes one sample takes on the wire in ``codec``."""
    return 2 if codec == "L16" else 1


class AudioDecoder:
    """Caller audio in ``codec`` at ``carrier_rate`` → PCM16 frames at ``pipeline_rate``."""

    __slots__ = ("_convert", "_resampler", "codec", "out_rate")

    def __init__(self, codec: str, carrier_rate: int, pipeline_rate: int) -> None:
        self.codec = codec
        self.out_rate = pipeline_rate
        self._convert = _DECODE[codec]
        self._resampler: StreamResampler | LowLatencyResampler | None = None
        if carrier_rate < pipeline_rate:
            self._resampler = StreamResampler(carrier_rate, pipeline_rate, quality=INPUT_QUALITY)
        elif carrier_rate > pipeline_rate:
            self._resampler = LowLatencyResampler(carrier_rate, pipeline_rate)

    def frame(self, payload: bytes) -> InputAudioRawFrame | None:
        """Decode one payload; None while the resampler is still filling."""
        conv = self._convert
        pcm = conv(payload) if conv is not None else payload
        rs = self._resampler
        if rs is not None:
            pcm = rs.resample(pcm)
        if not pcm:
            return None
        return InputAudioRawFrame(pcm, self.out_rate, 1)


class AudioEncoder:
    """Bot PCM16 at ``pipeline_rate`` → ``codec`` bytes at ``carrier_rate``.

    The transport calls the serializer with audio it has already paced at real time
    (one chunk per 20 ms), so the resampler must not hold any back: a
    :class:`~flowcat.audio.LowLatencyResampler` turns each chunk into its exact share
    at the carrier rate (20 ms in, 20 ms out), delaying the signal by its ~2 ms
    filter delay. soxr's block recipes would release it in 60–110 ms bursts.
    """

    __slots__ = ("_carrier_rate", "_convert", "_resampler", "codec", "in_rate")

    def __init__(self, codec: str, pipeline_rate: int, carrier_rate: int) -> None:
        self.codec = codec
        self.in_rate = pipeline_rate
        self._carrier_rate = carrier_rate
        self._convert = _ENCODE[codec]
        self._resampler = (
            LowLatencyResampler(pipeline_rate, carrier_rate) if pipeline_rate != carrier_rate else None
        )

    def reset(self) -> None:
        """Forget resampler state (after an interruption the old tail must not play)."""
        if self._resampler is not None:
            self._resampler.reset()

    def encode(self, pcm: bytes) -> bytes:
        """Encode one chunk (its exact share at the carrier rate, give or take a sample)."""
        rs = self._resampler
        if rs is not None:
            pcm = rs.resample(pcm)
        conv = self._convert
        return conv(pcm) if conv is not None and pcm else pcm
