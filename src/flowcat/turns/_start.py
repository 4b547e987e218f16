"""User-turn **start** strategies: when does the user's turn begin?

A start strategy is a small, pure object: :class:`~flowcat.turns.UserTurnProcessor`
hands it every relevant frame with the bot's speaking state and it answers
whether the user's turn starts now. Strategies are tried in order; the first that
says yes starts the turn. Default (as pipecat): ``[VADUserTurnStartStrategy(),
TranscriptionUserTurnStartStrategy()]`` — the VAD starts turns, and a
transcription starts one the VAD missed.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..frames import (
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
)

__all__ = [
    "MinWordsUserTurnStartStrategy",
    "TranscriptionUserTurnStartStrategy",
    "UserTurnStartStrategy",
    "VADUserTurnStartStrategy",
]


class UserTurnStartStrategy:
    """Base class: decides whether a frame starts the user's turn.

    Subclasses set :attr:`triggers` (the frame types they look at; others are
    never shown to them) and override :meth:`process`.
    """

    triggers: tuple[type[Frame], ...] = ()
    """Frame types this strategy reacts to."""
    immediate = False
    """If True, a turn this strategy starts while the bot speaks interrupts at once
    (no barge-in judging by :class:`~flowcat.turns.InterruptionParams`); it is also
    shown transcriptions while a barge-in started by another strategy is judged."""
    announce = True
    """Whether the processor broadcasts ``UserStartedSpeakingFrame`` (and the
    interruption) for a turn this strategy starts; False adopts a turn announced
    upstream. Read right after :meth:`process` said yes."""
    consumes: tuple[type[Frame], ...] = ()
    """Trigger types the processor does not pass on once they started a turn."""

    def process(self, frame: Frame, bot_speaking: bool) -> bool:
        """Return True if ``frame`` starts the user's turn.

        Args:
            frame: A frame of one of the :attr:`triggers` types.
            bot_speaking: Whether the bot is speaking now.
        """
        return False

    def reset(self) -> None:
        """The user's turn started or stopped: forget per-turn state."""


class VADUserTurnStartStrategy(UserTurnStartStrategy):
    """The turn starts when the VAD detects speech (``VADUserStartedSpeakingFrame``)."""

    triggers = (VADUserStartedSpeakingFrame,)

    def process(self, frame: Frame, bot_speaking: bool) -> bool:
        """Any VAD speech start starts the turn."""
        return True


class TranscriptionUserTurnStartStrategy(UserTurnStartStrategy):
    """The turn starts when a transcription arrives (speech the VAD did not catch).

    Args:
        use_interim: Interim transcriptions count too. Default True.
    """

    triggers = (TranscriptionFrame, InterimTranscriptionFrame)

    def __init__(self, *, use_interim: bool = True) -> None:
        self.use_interim = use_interim

    def process(self, frame: Frame, bot_speaking: bool) -> bool:
        """A final (or, with ``use_interim``, interim) transcription starts the turn."""
        return self.use_interim or type(frame) is not InterimTranscriptionFrame


class MinWordsUserTurnStartStrategy(UserTurnStartStrategy):
    """The turn starts once the transcription has enough words.

    While the bot speaks, ``min_words`` words are needed (a short "mm-hm" does
    not take the turn); while it is silent, one word is enough. Use it in place
    of :class:`VADUserTurnStartStrategy` to ignore sounds that are not words.
    As in pipecat, the count met while the bot speaks starts the turn and
    interrupts at once (an interim counts, with ``use_interim``); placed after
    :class:`VADUserTurnStartStrategy`, it ends the barge-in judging the VAD start
    began as soon as the count is met.

    Args:
        min_words: Words needed while the bot speaks (>= 1).
        use_interim: Count words of interim transcriptions too. Default True.
    """

    triggers = (TranscriptionFrame, InterimTranscriptionFrame)
    immediate = True

    def __init__(self, min_words: int, *, use_interim: bool = True) -> None:
        if min_words < 1:
            raise ConfigError(f"min_words must be >= 1, got {min_words!r}")
        self.min_words = min_words
        self.use_interim = use_interim

    def process(self, frame: Frame, bot_speaking: bool) -> bool:
        """True when the transcription's word count reaches the threshold."""
        if not self.use_interim and type(frame) is InterimTranscriptionFrame:
            return False
        needed = self.min_words if bot_speaking else 1
        return count_words(frame.text, needed) >= needed  # type: ignore[attr-defined]


def count_words(text: str, enough: int = 1 << 30) -> int:
    """Whitespace-separated words in ``text``, counting no further than ``enough``."""
    n = 0
    in_word = False
    for ch in text:
        if ch.isspace():
            in_word = False
        elif not in_word:
            in_word = True
            n += 1
            if n >= enough:
                return n
    return n
