"""The realtime-service mode of the context aggregator pair (``docs/agent.md``).

A speech-to-speech service decides the turns itself and reports its transcripts late
(the user's after the model started answering, sometimes), and some report no turn
frames at all. So in this mode the pair writes the context *trailing*: the user's
message when the assistant's first content arrives (``LLMFullResponseStartFrame``, or a
``TTSStartedFrame`` opening a turn), the assistant's message when the next user
transcript arrives after its turn, both halves at ``EndFrame``. Turn-end strategies stop
waiting for transcripts. The two halves coordinate through one lock and back references
set by the pair; the writes go through each half's existing write path
(``_write_user_turn``, ``push_aggregation``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ._assistant import LLMAssistantAggregator
    from ._user import LLMUserAggregator

__all__ = ["RealtimeServiceModeConfig", "recommend_realtime_mode"]

logger = logging.getLogger("flowcat.agent")
_recommended = False


@dataclass(frozen=True)
class RealtimeServiceModeConfig:
    """How the pair writes the context when a speech-to-speech service drives the call.

    Attributes:
        context_writes_await_turns: Write each message when its turn ends, as in the
            cascade (False, default: trailing writes, see the module).
        turns_await_transcripts: Turn-end strategies wait for a final transcript, as in
            the cascade (False, default: the turn ends on the audio alone).

    Raises:
        ConfigError: ``context_writes_await_turns`` without ``turns_await_transcripts``:
            a message written at the end of a turn that did not wait for its transcript
            would be written before its text exists.
    """

    context_writes_await_turns: bool = False
    turns_await_transcripts: bool = False

    def __post_init__(self) -> None:
        if self.context_writes_await_turns and not self.turns_await_transcripts:
            raise ConfigError(
                "RealtimeServiceModeConfig: context_writes_await_turns=True needs turns_await_transcripts=True "
                "(a message written when its turn ends needs the turn to wait for its transcript)"
            )

    @property
    def trailing(self) -> bool:
        """Whether messages are written trailing (not at the end of their turn)."""
        return not self.context_writes_await_turns


class RealtimeLink:
    """What both halves share in realtime-service mode: the config, the lock, each other."""

    __slots__ = ("assistant", "config", "lock", "user")

    def __init__(self, config: RealtimeServiceModeConfig, user: LLMUserAggregator,
                 assistant: LLMAssistantAggregator) -> None:
        self.config = config
        self.lock = asyncio.Lock()
        self.user = user
        self.assistant = assistant

    def detach(self) -> None:
        """Drop the back references (the call ended)."""
        self.user = self.assistant = None  # type: ignore[assignment]


def recommend_realtime_mode(service_name: str) -> None:
    """Log, once per process, that a realtime service runs without the pair's realtime mode."""
    global _recommended
    if _recommended:
        return
    _recommended = True
    logger.info(
        "%s is a speech-to-speech service: consider LLMContextAggregatorPair(..., "
        "realtime_service_mode=RealtimeServiceModeConfig()) so the context is written from its "
        "transcripts rather than from turn frames (docs/agent.md)", service_name or "a realtime service",
    )


def _reset_recommendation() -> None:
    """Tests: log the recommendation again."""
    global _recommended
    _recommended = False
