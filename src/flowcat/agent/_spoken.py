"""Which timed words of a TTS reply have been played, judged from the audio sent before them."""

from __future__ import annotations

from collections import deque

from ..frames import OutputAudioRawFrame
from ._aggregator import TextParts

__all__ = ["SpokenWords"]


class SpokenWords:
    """Holds word ``TTSTextFrame``s until the audio of their context reaches their ``pts``.

    A TTS with word timestamps stamps each word with its start (``pts``, ns from the
    first audio of its TTS context); the words may arrive before their audio. The
    assistant half sees the bot audio the output transport has sent (chunks pass it
    after they went out) and counts it from the context's ``TTSStartedFrame``; a word
    counts as said once that much audio has gone out. An interruption drops the words
    not reached; the end of the context (or of the reply) releases the rest.
    """

    __slots__ = ("_pending", "played_ns")

    def __init__(self) -> None:
        self.played_ns = 0
        self._pending: deque[tuple[int, str, bool]] = deque()

    def start_context(self, parts: TextParts) -> None:
        """A new TTS context begins: earlier held words are released, the count restarts."""
        self.release_all(parts)
        self.played_ns = 0

    def add(self, pts: int | None, text: str, parts: TextParts, spaced: bool = False) -> None:
        """A spoken word: into ``parts`` now if reached (and nothing is held before it), else held.

        ``spaced``: the text carries its own spacing (joined as it is, not by a space)."""
        at = pts or 0
        if not self._pending and at <= self.played_ns:
            parts.append(text, spaced=spaced)
        else:
            self._pending.append((at, text, spaced))

    def audio(self, frame: OutputAudioRawFrame, parts: TextParts) -> None:
        """Bot audio went out: count it and release the words it reached."""
        rate = frame.sample_rate * frame.num_channels
        if rate > 0:
            self.played_ns += len(frame.audio) * 500_000_000 // rate  # 2 bytes a sample
        pending = self._pending
        while pending and pending[0][0] <= self.played_ns:
            _, text, spaced = pending.popleft()
            parts.append(text, spaced=spaced)

    def release_all(self, parts: TextParts) -> None:
        """The context's audio is all out: every held word was said."""
        while self._pending:
            _, text, spaced = self._pending.popleft()
            parts.append(text, spaced=spaced)

    def drop(self) -> int:
        """Interrupted: the held words were never said. Returns how many."""
        n = len(self._pending)
        self._pending.clear()
        return n
