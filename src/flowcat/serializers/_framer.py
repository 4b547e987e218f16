"""Cut encoded bot audio into the message sizes a carrier accepts."""

from __future__ import annotations

__all__ = ["Framer"]


class Framer:
    """Re-chunk encoded audio into messages of whole ``unit`` frames.

    Args:
        unit: Bytes of one frame; every message is a multiple of it.
        min_bytes: Hold audio back until at least this much is ready.
        max_bytes: Largest message (a multiple of ``unit``).
        silence: The byte that encodes silence (0xFF for μ-law, 0xD5 for A-law, 0 for L16).
        pad_to_min: Pad the final flush up to ``min_bytes`` (not just a whole frame).
    """

    __slots__ = ("_buf", "max_bytes", "min_bytes", "pad_to_min", "silence", "unit")

    def __init__(
        self, unit: int, *, min_bytes: int = 0, max_bytes: int = 0, silence: int = 0, pad_to_min: bool = False
    ) -> None:
        self.unit = unit
        self.min_bytes = max(min_bytes, unit)
        self.max_bytes = max(max_bytes // unit * unit, unit) if max_bytes else 0
        self.silence = silence
        self.pad_to_min = pad_to_min
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back."""
        return len(self._buf)

    def push(self, data: bytes) -> list[bytes]:
        """Add audio; return the messages now complete (possibly none)."""
        buf = self._buf
        if not buf and len(data) == self.unit == self.min_bytes:
            return [data]
        buf += data
        if len(buf) < self.min_bytes:
            return []
        n = len(buf) // self.unit * self.unit
        whole = bytes(buf[:n])
        del buf[:n]
        step = self.max_bytes
        if not step or n <= step:
            return [whole]
        return [whole[i : i + step] for i in range(0, n, step)]

    def flush(self) -> bytes:
        """Everything held back, padded with silence to a whole frame (or ``min_bytes``)."""
        buf = self._buf
        if not buf:
            return b""
        size = -(-len(buf) // self.unit) * self.unit
        if self.pad_to_min and size < self.min_bytes:
            size = self.min_bytes
        buf += bytes([self.silence]) * (size - len(buf))
        out = bytes(buf)
        buf.clear()
        return out

    def reset(self) -> None:
        """Drop held-back audio (interruption)."""
        self._buf.clear()
