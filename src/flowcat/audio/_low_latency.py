"""Streaming sample-rate conversion that holds nothing back: a polyphase FIR filter.

soxr's recipes (:class:`~flowcat.audio.StreamResampler`) filter in blocks: a 20 ms
chunk in gives nothing, or several chunks' worth, out, and the stream lags by up to
~120 ms. Behind an output that paces audio at real time that turns steady 20 ms
sends into bursts at the peer. This resampler computes every output sample as soon
as the input it depends on has arrived, so each chunk in gives its exact share out
(480 samples at 24 kHz give 160 at 8 kHz, every time) and the only delay is the
filter's group delay, a fixed ~2 ms inside the signal.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..errors import ConfigError

__all__ = ["LowLatencyResampler"]

_F32 = np.dtype(np.float32)
_I16 = np.dtype("<i2")

ATTENUATION_DB = 80.0
"""Stopband attenuation of the anti-alias / anti-image filter."""
TRANSITION = 0.15
"""Half-width of the transition band as a fraction of the lower rate's Nyquist
frequency: flat to 0.85 × Nyquist (3.4 kHz at 8 kHz), ``ATTENUATION_DB`` down from
1.15 × Nyquist (4.6 kHz), whose aliases land at or above the passband edge."""
_GATHER_ABOVE = 8  # interpolation factors above this compute all phases in one gather
_LO = np.float32(-32768.0)
_HI = np.float32(32767.0)


@lru_cache(maxsize=64)
def _design(in_rate: int, out_rate: int) -> tuple[int, int, int, np.ndarray, float]:
    """The polyphase filter for ``in_rate`` → ``out_rate``, shared by every stream.

    Returns:
        ``(up, down, taps_per_phase, phases, delay_secs)``: the reduced ratio, the
        phase filters (``up`` rows, time-reversed, float32, read-only) and the
        group delay in seconds.
    """
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    proto_rate = in_rate * up
    nyquist = min(in_rate, out_rate) / 2
    width = 2 * TRANSITION * nyquist / proto_rate  # transition band, cycles per sample
    # Kaiser's estimates of the length and window shape for the attenuation.
    n = math.ceil((ATTENUATION_DB - 7.95) / (2.285 * 2 * math.pi * width)) + 1
    taps = -(-n // up)  # per phase
    n = taps * up
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    centre = (n - 1) / 2
    cutoff = nyquist / proto_rate  # cycles per sample at the prototype rate
    t = np.arange(n) - centre
    h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(n, beta)
    h *= up / h.sum()  # unity gain at DC per phase
    # Phase p holds h[p], h[p + up], ...; reversed so that a window of input samples
    # (oldest first) dots with it directly.
    phases = np.ascontiguousarray(h.reshape(taps, up).T[:, ::-1], dtype=_F32)
    phases.setflags(write=False)
    return up, down, taps, phases, centre / proto_rate


@lru_cache(maxsize=256)
def _block(in_rate: int, out_rate: int, t: int) -> tuple[int, np.ndarray]:
    """The phase filters of ``up`` consecutive outputs side by side (interpolation).

    For a group of outputs whose first is at position ``t`` (in 1/up input samples),
    returns the index of the first input the group reads and a ``(width, up)``
    matrix: a window of ``width`` inputs times it gives the group's outputs.
    """
    up, down, taps, phases, _ = _design(in_rate, out_rate)
    first = [(t + r * down) // up for r in range(up)]
    block = np.zeros((taps + first[-1] - first[0], up), dtype=_F32)
    for r in range(up):
        at = first[r] - first[0]
        block[at : at + taps, r] = phases[(t + r * down) % up]
    block.setflags(write=False)
    return first[0], block


class LowLatencyResampler:
    """Resample a continuous 16-bit PCM stream with no block latency.

    Same interface as :class:`~flowcat.audio.StreamResampler` (one instance per
    stream; :meth:`resample`, :meth:`flush`, :meth:`reset`; equal rates pass through;
    partial samples are carried). Each call returns every output sample whose input
    has arrived, so a 20 ms chunk gives 20 ms out (exactly, when the chunk holds a
    whole number of the rate ratio's input periods, as every 10 or 20 ms chunk of the
    usual rates does; otherwise the count alternates by one sample). The signal is
    delayed by :attr:`delay_secs` (the filter's group delay, ~2 ms); nothing else is
    held. Use it where the output is already paced, e.g. in a serializer turning
    paced pipeline audio into the carrier's rate. The filter (Kaiser-windowed sinc,
    flat to 0.85 of the lower Nyquist frequency, 80 dB down from 1.15 of it) is
    designed once per rate pair and shared by all streams.

    Args:
        in_rate: Input sample rate in Hz.
        out_rate: Output sample rate in Hz.
        num_channels: Interleaved channels per sample frame.
    """

    __slots__ = (
        "_carry", "_down", "_frame_bytes", "_hist", "_phases", "_t", "_taps", "_up",
        "delay_secs", "in_rate", "num_channels", "out_rate",
    )

    def __init__(self, in_rate: int, out_rate: int, num_channels: int = 1) -> None:
        if in_rate <= 0 or out_rate <= 0 or num_channels <= 0:
            raise ConfigError("rates and num_channels must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.num_channels = num_channels
        self._frame_bytes = 2 * num_channels
        self._carry = b""
        self._t = 0  # next output's position past the newest input, in 1/up input samples
        if in_rate == out_rate:
            self._up = self._down = self._taps = 0
            self._phases = np.zeros((0, 0), dtype=_F32)
            self.delay_secs = 0.0
            self._hist = b""
            return
        self._up, self._down, self._taps, self._phases, self.delay_secs = _design(in_rate, out_rate)
        self._hist = bytes((self._taps - 1) * self._frame_bytes)  # the inputs the next output reads

    @property
    def passthrough(self) -> bool:
        """True when input and output rates are equal (no conversion)."""
        return self._taps == 0

    def resample(self, pcm: bytes) -> bytes:
        """Convert the next chunk of the stream.

        Args:
            pcm: Signed 16-bit little-endian interleaved samples at ``in_rate``.

        Returns:
            Every output sample the input so far determines (16-bit little-endian).
        """
        # Per audio frame: this carry-over of a partial sample is repeated in
        # _resampler.py on purpose (a shared helper would add a call per frame).
        if self._carry:
            pcm = self._carry + pcm
            self._carry = b""
        extra = len(pcm) % self._frame_bytes
        if extra:
            self._carry = pcm[-extra:]
            pcm = pcm[:-extra]
        taps = self._taps
        if not taps or not pcm:
            return pcm
        ch = self.num_channels
        n = len(pcm) // self._frame_bytes
        data = self._hist + pcm
        self._hist = data[len(pcm) :]
        buf = np.frombuffer(data, dtype=_I16).astype(_F32)
        up, down, t = self._up, self._down, self._t
        span = up * n
        count = (span - t + down - 1) // down if t < span else 0
        self._t = t + count * down - span
        if not count:
            return b""
        size = _F32.itemsize
        if up == 1:
            # Output i reads the ``taps`` inputs ending at input t + i * down.
            shape = (count, taps) if ch == 1 else (count, ch, taps)
            strides = (down * ch * size, size) if ch == 1 else (down * ch * size, size, ch * size)
            y = np.dot(np.ndarray(shape, _F32, buf, t * ch * size, strides), self._phases[0])
        elif up > _GATHER_ABOVE or ch > 1:
            pos = t + down * np.arange(count)
            frames = buf.reshape(-1, ch)
            win = frames[(pos // up)[:, None] + np.arange(taps)]  # (count, taps, ch)
            y = np.einsum("ktc,kt->kc", win, self._phases[pos % up])
            if ch == 1:
                y = y.reshape(count)
        else:
            # Each group of ``up`` outputs reads a window starting ``down`` inputs after
            # the previous group's: one product with the phases laid side by side.
            start, block = _block(self.in_rate, self.out_rate, t)
            groups = count // up
            y = np.empty(count, dtype=_F32)
            if groups:
                win = np.ndarray((groups, len(block)), _F32, buf, start * size, (down * size, size))
                np.dot(win, block, out=y[: groups * up].reshape(groups, up))
            for i in range(groups * up, count):
                at = t + i * down
                y[i] = np.dot(buf[at // up : at // up + taps], self._phases[at % up])
        np.rint(y, out=y)
        np.maximum(y, _LO, out=y)
        np.minimum(y, _HI, out=y)
        out: bytes = y.astype(_I16).tobytes()
        return out

    def flush(self) -> bytes:
        """End the stream: return the filter's tail (its group delay's worth of output).

        The resampler is ready for a new stream afterwards.
        """
        self._carry = b""
        if not self._taps:
            return b""
        # Zeros push the last input through the centre of the filter.
        n = math.ceil(self.delay_secs * self.in_rate)
        out = self.resample(bytes(n * self._frame_bytes))
        self.reset()
        return out

    def reset(self) -> None:
        """Drop all buffered state (e.g. after an interruption)."""
        self._carry = b""
        self._t = 0
        if self._taps:
            self._hist = bytes((self._taps - 1) * self._frame_bytes)
