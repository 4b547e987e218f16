"""Strategy bundles with pipecat's names, for the user context aggregator's params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ExternalUserTurnStrategies", "UserTurnStrategies"]


@dataclass
class UserTurnStrategies:
    """Start and stop strategies (None: :class:`~flowcat.turns.UserTurnProcessor`'s defaults).

    Attributes:
        start: Start strategies, tried in order.
        stop: Stop strategies; any one ends the turn.
    """

    start: list[Any] | None = None
    stop: list[Any] | None = None


@dataclass
class ExternalUserTurnStrategies(UserTurnStrategies):
    """Turns are decided elsewhere: follow the ``UserStarted/StoppedSpeakingFrame`` that arrive.

    Use it when a :class:`~flowcat.turns.UserTurnProcessor` (or an STT service that
    reports turns) sits earlier in the pipeline, so turn logic does not run twice.
    """
