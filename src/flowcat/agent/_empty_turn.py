"""What the user half does when a user turn ends with no transcript."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT", "EmptyUserTurnConfig"]

DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT = (
    "You were cut off: the user spoke over you, but nothing they said was transcribed. "
    "The conversation only holds the part of your reply they heard. Ask them briefly to say it "
    "again, and repeat any question of yours they may have missed."
)


@dataclass
class EmptyUserTurnConfig:
    """Answer user turns that end without a transcript (pipecat's names).

    A turn can start on voice alone and end with nothing transcribed (noise, a cough,
    speech the STT missed). Nothing is written for it and the LLM does not run — unless
    a prompt is set for its case, in which case that prompt is added as a ``developer``
    message and the LLM runs once.

    Attributes:
        interrupted_prompt: For a turn that cut the bot off (it was speaking, a reply
            or tool call was under way, or it had not finished speaking yet). The default
            asks the model to have the user repeat; None leaves the bot silent.
        idle_prompt: For a turn while the bot was waiting for the user. None (default):
            no answer — it may well have been noise.
        max_consecutive_recoveries: Empty turns answered in a row, until the user is
            transcribed again.
    """

    interrupted_prompt: str | None = DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT
    idle_prompt: str | None = None
    max_consecutive_recoveries: int = 1
