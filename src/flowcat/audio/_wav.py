"""Minimal streaming WAV (RIFF, PCM16) writer and a reader built on stdlib ``wave``."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["WavWriter", "read_wav"]

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_HEADER_SIZE = _HEADER.size  # 44 bytes
_MAX_DATA = 0xFFFFFFFF - 36


class WavWriter:
    """Append 16-bit PCM to a WAV file, keeping memory flat for any length.

    The header is written at open with zero sizes; :meth:`patch` (called by
    :meth:`close`) rewrites the RIFF and data sizes for what has been written, so a
    file patched periodically stays readable even if the process dies.

    Args:
        path: Output file, created or truncated.
        sample_rate: Sample rate in Hz.
        num_channels: Interleaved channels.
    """

    __slots__ = ("_f", "_patched", "data_bytes", "num_channels", "path", "sample_rate")

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, num_channels: int = 1) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.data_bytes = 0
        self._patched = 0
        self._f: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(self._header(0))

    def _header(self, data_bytes: int) -> bytes:
        block = 2 * self.num_channels
        return _HEADER.pack(
            b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, self.num_channels,
            self.sample_rate, self.sample_rate * block, block, 16, b"data", data_bytes,
        )  # fmt: skip

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._f is None

    @property
    def duration_s(self) -> float:
        """Seconds of audio written so far."""
        return self.data_bytes / (2 * self.num_channels * self.sample_rate)

    def write(self, pcm: bytes) -> None:
        """Append samples (whole sample frames; the file grows, memory does not).

        Args:
            pcm: Signed 16-bit little-endian interleaved samples.
        """
        f = self._f
        if f is None or not pcm:
            return
        if self.data_bytes + len(pcm) > _MAX_DATA:
            raise ValueError("WAV data would exceed 4 GiB")
        f.write(pcm)
        self.data_bytes += len(pcm)

    def patch(self) -> None:
        """Rewrite the header sizes for the data written so far and flush to the OS."""
        f = self._f
        if f is None or self._patched == self.data_bytes:
            return
        f.seek(0)
        f.write(self._header(self.data_bytes))
        f.seek(0, os.SEEK_END)
        f.flush()
        self._patched = self.data_bytes

    def close(self) -> None:
        """Patch the header and close the file (idempotent)."""
        if self._f is None:
            return
        self.patch()
        self._f.close()
        self._f = None


def read_wav(path: str | os.PathLike[str]) -> tuple[bytes, int, int]:
    """Read a PCM WAV file as 16-bit samples.

    Args:
        path: WAV file with 8-, 16-, 24- or 32-bit integer PCM.

    Returns:
        ``(pcm16, sample_rate_hz, num_channels)``; wider samples are truncated to
        their top 16 bits, 8-bit (unsigned) samples are re-centred and scaled.
    """
    with wave.open(str(path), "rb") as w:
        width = w.getsampwidth()
        rate = w.getframerate()
        channels = w.getnchannels()
        raw = w.readframes(w.getnframes())
    if width == 2:
        return raw, rate, channels
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8
        return x.astype("<i2").tobytes(), rate, channels
    if width in (3, 4):
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
        return np.ascontiguousarray(b[:, width - 2 :]).tobytes(), rate, channels
    raise ValueError(f"unsupported WAV sample width: {width} bytes")
