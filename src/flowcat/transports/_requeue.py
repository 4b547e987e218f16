"""Resampling an output queue to a new rate (an output whose wire rate changes mid-call)."""

from __future__ import annotations

from collections import deque
from typing import Any

from ..audio import StreamResampler

__all__ = ["requeue"]


def requeue(
    queue: deque[Any], pending: bytes, old: int, new: int, size: int, channels: int
) -> tuple[deque[Any], bytes]:
    """An output queue of ``old``-rate chunks, and the partial chunk after it, at ``new``.

    Frames and markers keep their places. Each run of audio between them is
    resampled as one stream and cut into ``size``-byte chunks; a run that ends
    before a frame keeps its short last chunk, as the output's own flush does. The
    partial chunk continues the last run; the remainder is the new partial chunk.
    """
    out: deque[Any] = deque()
    run: list[bytes] = []

    def convert(tail: bytes = b"") -> bytes:
        data = b"".join(run) + tail
        run.clear()
        if not data:
            return b""
        rs = StreamResampler(old, new, channels)
        data = rs.resample(data) + rs.flush()
        n = len(data) // size
        out.extend(data[i * size : (i + 1) * size] for i in range(n))
        return data[n * size :]

    for item in queue:
        if isinstance(item, bytes):  # (uninterruptible chunks become ordinary ones)
            run.append(item)
            continue
        if run and (rest := convert()):
            out.append(rest)
        out.append(item)
    return out, convert(pending)
