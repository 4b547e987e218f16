"""What an output's send queue holds besides plain audio chunks and frames:
uninterruptible audio and the audio class of the chunks that follow."""

from __future__ import annotations

from typing import Any

from ..frames import Frame, OutputAudioRawFrame

__all__ = ["AudioClass", "Kept", "cut_kept", "keeps_through_interruption"]


class Kept(bytes):
    """A queued chunk of uninterruptible audio: an interruption does not drop it."""

    __slots__ = ()


class AudioClass:
    """Queue marker: the chunks after it are sent (and passed on) as frames of ``cls``
    (a chunk keeps the class of the audio it was cut from, e.g. TTSAudioRawFrame)."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[OutputAudioRawFrame]) -> None:
        self.cls = cls


def cut_kept(
    head: bytes, head_kept: bool, audio: bytes, kept: bool, size: int
) -> tuple[list[bytes], bytes, bool]:
    """Cut ``head + audio`` into chunks of ``size`` when some of it is uninterruptible
    (``audio`` if ``kept``, the partial chunk ``head`` if ``head_kept``): a chunk
    holding any of it is :class:`Kept`. Returns the chunks, the new partial chunk and
    whether that holds uninterruptible audio."""
    data = head + audio
    n = len(data) // size
    chunks: list[bytes] = []
    for i in range(n):
        chunk = data[i * size : (i + 1) * size]
        chunks.append(Kept(chunk) if kept or (head_kept and i * size < len(head)) else chunk)
    rest = data[n * size :]
    return chunks, rest, bool(rest) and (kept or (head_kept and n == 0))


def keeps_through_interruption(item: Any) -> bool:
    """Whether a queue entry survives an interruption: uninterruptible audio and
    frames, and the audio class marks (which the kept audio may need)."""
    cls = item.__class__
    if cls is Kept or cls is AudioClass:
        return True
    return isinstance(item, Frame) and not item.interruptible
