"""External turn strategies: an STT (or other service) that reports turns itself.

Pipecat 1.14's ``ExternalUserTurnStartStrategy`` / ``ExternalUserTurnStopStrategy``.
Two signals, from upstream:

* ``ProposedUserStarted/StoppedSpeakingFrame``: the service proposes; the
  processor decides, broadcasts the turn frames (and the interruption) and does
  not pass the proposal on;
* ``UserStarted/StoppedSpeakingFrame``: the turn was announced upstream (e.g. a
  shared turn processor); the processor adopts it, passes the frame on and
  announces nothing itself.
"""

from __future__ import annotations

from ..frames import (
    Frame,
    InterimTranscriptionFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ._start import UserTurnStartStrategy
from ._stop import UserTurnStopStrategy

__all__ = ["ExternalUserTurnStartStrategy", "ExternalUserTurnStopStrategy"]

_EPS = 1e-9


class ExternalUserTurnStartStrategy(UserTurnStartStrategy):
    """The turn starts when a service proposes it, or when a turn announced upstream arrives.

    A proposal starts the turn at once, even over the bot (the service judged it).

    Args:
        enable_interruptions: Whether a proposal interrupts the bot (ignored when
            adopting: the announcer interrupted). Default True.
    """

    triggers = (ProposedUserStartedSpeakingFrame, UserStartedSpeakingFrame)
    immediate = True
    consumes = (ProposedUserStartedSpeakingFrame,)

    def __init__(self, *, enable_interruptions: bool = True) -> None:
        self.enable_interruptions = enable_interruptions
        self.announce = True

    def process(self, frame: Frame, bot_speaking: bool) -> bool:
        """Either frame starts the turn; only a proposal is announced."""
        self.announce = type(frame) is ProposedUserStartedSpeakingFrame
        return True


class ExternalUserTurnStopStrategy(UserTurnStopStrategy):
    """The turn ends when a service proposes it (or a turn end announced upstream arrives).

    With ``wait_for_transcript`` (default) the end also needs a final transcript
    of the turn and no interim pending: if the proposal comes first, the turn ends
    ``timeout`` s after the last final transcript (later ones are taken in).

    Args:
        timeout: Seconds after a late final transcript before the turn ends. Default 0.5.
        wait_for_transcript: Require a final transcript. Default True.

    Attributes:
        announce: Whether the processor broadcasts ``UserStoppedSpeakingFrame``
            for the turn end (False when adopting one announced upstream).
    """

    triggers = (
        ProposedUserStartedSpeakingFrame,
        ProposedUserStoppedSpeakingFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        TranscriptionFrame,
        InterimTranscriptionFrame,
    )

    def __init__(self, *, timeout: float = 0.5, wait_for_transcript: bool = True) -> None:
        super().__init__(wait_for_transcript=wait_for_transcript)
        self.timeout = timeout
        self.announce = True
        self._stopped = False  # the service said the user stopped
        self._interim = False  # an interim is pending (a final will follow)
        self._late_at: float | None = None

    @property
    def deadline(self) -> float | None:
        """When a late transcript's grace period ends."""
        return self._late_at

    def process(self, frame: Frame, now: float) -> bool:
        """Track the service's turn signals and the transcripts."""
        cls = type(frame)
        if cls is ProposedUserStartedSpeakingFrame or cls is UserStartedSpeakingFrame:
            self.user_speaking = True
            self._stopped = False
            self._late_at = None
            return False
        if cls is ProposedUserStoppedSpeakingFrame or cls is UserStoppedSpeakingFrame:
            self.user_speaking = False
            self._stopped = True
            self.announce = cls is ProposedUserStoppedSpeakingFrame
            return self._ready()
        if cls is InterimTranscriptionFrame:
            self._interim = True
            return False
        self._interim = False
        if frame.text.strip():  # type: ignore[attr-defined]
            self._text_seen = True
        if self._stopped and self.turn_active:
            self._late_at = now + self.timeout
        return False

    def _ready(self) -> bool:
        if not self.turn_active or not self._stopped:
            return False
        return not self.wait_for_transcript or (self._text_seen and not self._interim)

    def poll(self, now: float) -> bool:
        """A late transcript's grace period passed."""
        at = self._late_at
        if at is None or now < at - _EPS:
            return False
        self._late_at = None
        return self._ready()

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """A turn began: it is open until the service says it stopped."""
        super().turn_started(now, True)
        self._stopped = False
        self._late_at = None

    def turn_stopped(self) -> None:
        """Reset."""
        super().turn_stopped()
        self._stopped = False
        self._interim = False
        self._late_at = None
        self.announce = True
