"""Strategy bundles with pipecat 1.14's names (``user_turn_strategies=...``)."""

from __future__ import annotations

from dataclasses import dataclass

from ._external import ExternalUserTurnStartStrategy, ExternalUserTurnStopStrategy
from ._start import TranscriptionUserTurnStartStrategy, UserTurnStartStrategy, VADUserTurnStartStrategy
from ._stop import SpeechTimeoutUserTurnStopStrategy, UserTurnStopStrategy

__all__ = [
    "ExternalUserTurnStrategies",
    "UserTurnStrategies",
    "default_user_turn_start_strategies",
    "default_user_turn_stop_strategies",
]


def default_user_turn_start_strategies() -> list[UserTurnStartStrategy]:
    """``[VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()]`` (pipecat's default)."""
    return [VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()]


def default_user_turn_stop_strategies() -> list[UserTurnStopStrategy]:
    """``[SpeechTimeoutUserTurnStopStrategy()]``.

    Pipecat's default is smart-turn; flowcat's needs no model (pass
    ``[TurnAnalyzerUserTurnStopStrategy(SmartTurnAnalyzer())]`` for smart-turn).
    """
    return [SpeechTimeoutUserTurnStopStrategy()]


@dataclass
class UserTurnStrategies:
    """Start and stop strategies for :class:`~flowcat.turns.UserTurnProcessor`.

    Attributes:
        start: Start strategies, tried in order (None or empty: the defaults).
        stop: Stop strategies; any one ends the turn (None or empty: the defaults).
    """

    start: list[UserTurnStartStrategy] | None = None
    stop: list[UserTurnStopStrategy] | None = None

    def __post_init__(self) -> None:
        if not self.start:
            self.start = default_user_turn_start_strategies()
        if not self.stop:
            self.stop = default_user_turn_stop_strategies()


@dataclass
class ExternalUserTurnStrategies(UserTurnStrategies):
    """Turns are decided by a service (STT with its own turn detection) or upstream.

    ``start=[ExternalUserTurnStartStrategy(enable_interruptions=...)]``,
    ``stop=[ExternalUserTurnStopStrategy()]``.

    Attributes:
        enable_interruptions: Whether a proposed turn start interrupts the bot.
    """

    enable_interruptions: bool = True

    def __post_init__(self) -> None:
        self.start = [ExternalUserTurnStartStrategy(enable_interruptions=self.enable_interruptions)]
        self.stop = [ExternalUserTurnStopStrategy()]
