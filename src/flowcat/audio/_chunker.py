"""Re-chunk a 16-bit PCM stream into frames of exactly ``chunk_ms``."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["AudioChunker"]


class AudioChunker:
    """Cut arbitrary-sized 16-bit PCM input into fixed-duration chunks.

    Input that is already exactly one chunk with nothing buffered is returned
    as-is (no copy).

    Args:
        sample_rate: Sample rate in Hz.
        chunk_ms: Chunk duration in milliseconds (typically 10, 20 or 40); must
            give a whole number of samples.
        num_channels: Interleaved channels.
    """

    __slots__ = ("_buf", "chunk_bytes", "chunk_ms", "num_channels", "sample_rate")

    def __init__(self, sample_rate: int, chunk_ms: int = 20, num_channels: int = 1) -> None:
        samples, rem = divmod(sample_rate * chunk_ms, 1000)
        if chunk_ms <= 0 or sample_rate <= 0 or num_channels <= 0 or rem:
            raise ConfigError("chunk_ms must be positive and give a whole number of samples")
        self.sample_rate = sample_rate
        self.chunk_ms = chunk_ms
        self.num_channels = num_channels
        self.chunk_bytes = 2 * num_channels * samples
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for a full chunk."""
        return len(self._buf)

    def push(self, pcm: bytes) -> list[bytes]:
        """Add input and return the complete chunks now available.

        Args:
            pcm: Signed 16-bit little-endian samples, any length.

        Returns:
            Zero or more chunks of exactly ``chunk_bytes`` bytes, in order.
        """
        size = self.chunk_bytes
        buf = self._buf
        if not buf and len(pcm) == size:
            return [pcm]
        buf += pcm
        n = len(buf) // size
        if n == 0:
            return []
        view = memoryview(buf)
        out = [bytes(view[i * size : (i + 1) * size]) for i in range(n)]
        view.release()
        del buf[: n * size]
        return out

    def flush(self, pad: bool = True) -> list[bytes]:
        """Return what is buffered and empty the buffer.

        Args:
            pad: Pad the remainder with silence to a full chunk; otherwise return
                it as a short chunk (whole samples only).

        Returns:
            An empty list when nothing is buffered, else one chunk.
        """
        buf = self._buf
        if not buf:
            return []
        if pad:
            out = bytes(buf) + bytes(self.chunk_bytes - len(buf))
        else:
            out = bytes(buf[: len(buf) & ~1])
        buf.clear()
        return [out]

    def reset(self) -> None:
        """Drop buffered input."""
        self._buf.clear()
