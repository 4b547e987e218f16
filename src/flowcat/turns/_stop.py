"""User-turn **stop** strategies: when has the user finished?

A stop strategy is a pure, clock-injected object. :class:`~flowcat.turns.UserTurnProcessor`
shows it the frames of an active turn with the current loop time (``now``, in
seconds) and asks it to :meth:`~UserTurnStopStrategy.poll` when its
:attr:`~UserTurnStopStrategy.deadline` passes (or when it calls its ``wake``
callback, e.g. with a model result). The processor owns the only timer. Every
strategy has a wall-clock fallback, so no turn waits forever on a transcript or
a model.
"""

from __future__ import annotations

from collections.abc import Callable

from ..frames import (
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

__all__ = [
    "SpeechTimeoutUserTurnStopStrategy",
    "TranscriptionUserTurnStopStrategy",
    "UserTurnStopStrategy",
]


def _no_wake() -> None:
    return None


class UserTurnStopStrategy:
    """Base class: decides when the user's active turn ends.

    :meth:`process` sees every VAD and transcription frame, in or out of a turn
    (so it knows whether the user speaks); its answer only counts during a turn.

    Attributes:
        deadline: Loop time (s) at which :meth:`poll` must run, or None.
        user_speaking: Whether the VAD hears the user now.
        turn_active: Whether a user turn is in progress.
    """

    triggers: tuple[type[Frame], ...] = (
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
        TranscriptionFrame,
        InterimTranscriptionFrame,
    )
    """Frame types shown to :meth:`process`."""
    wants_audio = False
    """Whether :meth:`append_audio` must see the user's input audio."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.user_speaking = False
        self.turn_active = False
        self._wake: Callable[[], None] = _no_wake

    def bind(self, wake: Callable[[], None]) -> None:
        """Give the strategy a way to ask for a :meth:`poll` outside any frame."""
        self._wake = wake

    def append_audio(self, audio: bytes, sample_rate: int) -> None:
        """Input audio (PCM16), for strategies with :attr:`wants_audio`."""

    def process(self, frame: Frame, now: float) -> bool:
        """Look at a frame during the turn; True ends the turn now."""
        cls = type(frame)
        if cls is VADUserStartedSpeakingFrame:
            self.user_speaking = True
            self.deadline = None
            self.on_speech_started(frame, now)
        elif cls is VADUserStoppedSpeakingFrame:
            self.user_speaking = False
            return self.on_speech_stopped(frame, now)
        else:
            return self.on_transcription(frame, now)
        return False

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """The VAD heard speech again (pending decisions are void)."""

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """The VAD stopped hearing speech; True ends the turn now."""
        return False

    def on_transcription(self, frame: Frame, now: float) -> bool:
        """A (final or interim) transcription arrived; True ends the turn now."""
        return False

    def poll(self, now: float) -> bool:
        """Deadline reached or woken: True ends the turn now."""
        return self.deadline is not None and now >= self.deadline and not self.user_speaking

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """A turn began (``user_speaking``: the VAD hears speech now)."""
        self.user_speaking = user_speaking
        self.turn_active = True
        self.deadline = None

    def turn_stopped(self) -> None:
        """The turn ended: forget per-turn state."""
        self.turn_active = False
        self.deadline = None


class SpeechTimeoutUserTurnStopStrategy(UserTurnStopStrategy):
    """The turn ends ``timeout`` s after the VAD stops hearing speech.

    The VAD's own ``stop_secs`` of silence come before its stop frame, so the
    total silence before the turn ends is ``stop_secs + timeout``. A turn started
    by a transcription without VAD speech ends ``timeout`` s after the last
    transcription.

    Args:
        timeout: Seconds after the VAD stop (or last VAD-less transcription). Default 0.6.
    """

    def __init__(self, timeout: float = 0.6) -> None:
        super().__init__()
        self.timeout = timeout
        self._vad_seen = False

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """Speech again: the countdown is void."""
        self._vad_seen = True

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """Start the countdown."""
        self._vad_seen = True
        self.deadline = now + self.timeout
        return False

    def on_transcription(self, frame: Frame, now: float) -> bool:
        """Without VAD activity in this turn, a transcription restarts the countdown."""
        if not self._vad_seen and not self.user_speaking:
            self.deadline = now + self.timeout
        return False

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """Count down at once if the user is already silent."""
        super().turn_started(now, user_speaking)
        self._vad_seen = user_speaking
        if not user_speaking:
            self.deadline = now + self.timeout

    def turn_stopped(self) -> None:
        """Reset."""
        super().turn_stopped()
        self._vad_seen = False


class TranscriptionUserTurnStopStrategy(UserTurnStopStrategy):
    """The turn ends when the final transcription arrives after the VAD stopped.

    * A :class:`~flowcat.frames.TranscriptionFrame` while the VAD hears no speech
      ends the turn at once (after a VAD stop, or in a turn with no VAD at all).
    * If the last transcription before the VAD stop was already final (no interim
      since), the turn ends at the VAD stop.
    * Fallback: the turn ends ``timeout`` s after the VAD stop even if no final
      transcription came (STT slow, silent or down).

    Args:
        timeout: Wall-clock fallback (s) after the VAD stop. Default 2.0.
    """

    def __init__(self, timeout: float = 2.0) -> None:
        super().__init__()
        self.timeout = timeout
        self._final_is_latest = False

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """Speech again: a final from before is not the last word."""
        self._final_is_latest = False

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """End now if the STT already finalised, else wait (bounded)."""
        if self._final_is_latest:
            return True
        self.deadline = now + self.timeout
        return False

    def on_transcription(self, frame: Frame, now: float) -> bool:
        """A final transcription during silence ends the turn."""
        if type(frame) is InterimTranscriptionFrame:
            self._final_is_latest = False
            return False
        self._final_is_latest = True
        return not self.user_speaking

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """A turn started by a transcription during silence still gets the fallback."""
        super().turn_started(now, user_speaking)
        self._final_is_latest = False
        if not user_speaking:
            self.deadline = now + self.timeout

    def turn_stopped(self) -> None:
        """Reset."""
        super().turn_stopped()
        self._final_is_latest = False
