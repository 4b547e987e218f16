"""User-turn **stop** strategies: when has the user finished?

A stop strategy is a pure, clock-injected object. :class:`~flowcat.turns.UserTurnProcessor`
shows it the frames of an active turn with the current loop time (``now``, in
seconds) and asks it to :meth:`~UserTurnStopStrategy.poll` when its
:attr:`~UserTurnStopStrategy.deadline` passes (or when it calls its ``wake``
callback, e.g. with a model result). The processor owns the only timer.

As in pipecat 1.14, a strategy built with ``wait_for_transcript=True`` ends a turn
only once it holds a final transcript of it, and, after a VAD stop, once that
transcript is finalized (``TranscriptionFrame.finalized``) or the STT's p99
latency (``STTMetadataFrame.ttfs_p99_latency``, less the VAD's ``stop_secs``) has
passed — the safety net for an STT that lags the VAD (pipecat #4279). A turn
whose transcript never comes is ended by the processor's ``user_turn_stop_timeout``.
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

_EPS = 1e-9


def _no_wake() -> None:
    return None


class UserTurnStopStrategy:
    """Base class: decides when the user's active turn ends.

    :meth:`process` sees every VAD and transcription frame, in or out of a turn
    (so it knows whether the user speaks); its answer only counts during a turn.
    Subclasses decide their own criterion (:meth:`own_ready`, usually a timer in
    ``_ready_at``); the base adds the transcript wait.

    Args:
        wait_for_transcript: End a turn only with a final transcript in hand (and
            finalized, or the STT's p99 latency passed, after a VAD stop).

    Attributes:
        user_speaking: Whether the VAD hears the user now.
        turn_active: Whether a user turn is in progress.
        stt_timeout: The STT's p99 time (s) from end of speech to final transcript
            (from ``STTMetadataFrame``; 0 until one arrives).
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
    speculative = True
    """Whether the processor may predict this strategy's turn end (preemptive
    generation) once the user is silent with a final transcript in hand."""

    def __init__(self, *, wait_for_transcript: bool = False) -> None:
        self.wait_for_transcript = wait_for_transcript
        self.user_speaking = False
        self.turn_active = False
        self.stt_timeout = 0.0
        self._wake: Callable[[], None] = _no_wake
        self._ready_at: float | None = None  # own criterion's timer
        self._own_done = False  # own criterion met (timer passed, model said complete)
        self._text_seen = False  # a final transcript with text in this turn
        self._finalized = False  # the latest transcript was finalized (no interim since)
        self._stt_at: float | None = None  # end of the STT wait after a VAD stop

    # ------------------------------------------------------------ plumbing

    def bind(self, wake: Callable[[], None]) -> None:
        """Give the strategy a way to ask for a :meth:`poll` outside any frame."""
        self._wake = wake

    def unbind(self) -> None:
        """Forget the processor's wake-up (it is done with this strategy)."""
        self._wake = _no_wake

    def append_audio(self, audio: bytes, sample_rate: int) -> None:
        """Input audio (PCM16), for strategies with :attr:`wants_audio`."""

    @property
    def deadline(self) -> float | None:
        """Loop time (s) at which :meth:`poll` must run, or None."""
        if self.user_speaking:
            return None
        at = None if self._own_done else self._ready_at
        stt = self._stt_at
        if stt is not None and self.wait_for_transcript and not self._finalized and (at is None or stt < at):
            at = stt
        return at

    @property
    def transcript_in_hand(self) -> bool:
        """Whether a final transcript of this turn has arrived."""
        return self._text_seen

    def transcript_ready(self, now: float) -> bool:
        """The transcript condition: always true without ``wait_for_transcript``."""
        if not self.wait_for_transcript:
            return True
        if not self._text_seen:
            return False
        stt = self._stt_at
        return self._finalized or stt is None or now >= stt - _EPS

    # -------------------------------------------------------------- frames

    def process(self, frame: Frame, now: float) -> bool:
        """Look at a frame during the turn; True ends the turn now."""
        cls = type(frame)
        if cls is VADUserStartedSpeakingFrame:
            self.user_speaking = True
            self._ready_at = None
            self._own_done = False
            self._finalized = False
            self._stt_at = None
            self.on_speech_started(frame, now)
            return False
        if cls is VADUserStoppedSpeakingFrame:
            self.user_speaking = False
            if not self._finalized:
                wait = self.stt_timeout - frame.stop_secs  # type: ignore[attr-defined]
                self._stt_at = now + wait if wait > 0 else None
            own = self.on_speech_stopped(frame, now)
        elif cls is TranscriptionFrame:
            if frame.text.strip():  # type: ignore[attr-defined]
                self._text_seen = True
            self._finalized = bool(frame.finalized)  # type: ignore[attr-defined]
            own = self.on_transcription(frame, now)
        else:
            self._finalized = False  # more is coming
            own = self.on_transcription(frame, now)
        if own:
            self._own_done = True
        return not self.user_speaking and self._own_done and self.transcript_ready(now)

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """The VAD heard speech again (pending decisions are void)."""

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """The VAD stopped hearing speech; True: the own criterion is met now."""
        return False

    def on_transcription(self, frame: Frame, now: float) -> bool:
        """A (final or interim) transcription arrived; True: the own criterion is met now."""
        return False

    def own_ready(self, now: float) -> bool:
        """Whether the strategy's own criterion is met (default: its timer passed)."""
        at = self._ready_at
        return at is not None and now >= at - _EPS

    def poll(self, now: float) -> bool:
        """Deadline reached or woken: True ends the turn now."""
        if self.user_speaking:
            return False
        if not self._own_done and self.own_ready(now):
            self._own_done = True
            self._ready_at = None
        return self._own_done and self.transcript_ready(now)

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """A turn began (``user_speaking``: the VAD hears speech now).

        Transcripts seen since the last turn ended (e.g. the one that started
        this turn) are kept.
        """
        self.user_speaking = user_speaking
        self.turn_active = True
        self._ready_at = None
        self._own_done = False

    def turn_stopped(self) -> None:
        """The turn ended: forget per-turn state."""
        self.turn_active = False
        self._ready_at = None
        self._own_done = False
        self.discard_transcripts()

    def discard_transcripts(self) -> None:
        """Forget the transcripts seen (they were dropped outside any turn)."""
        self._text_seen = False
        self._finalized = False
        self._stt_at = None


class SpeechTimeoutUserTurnStopStrategy(UserTurnStopStrategy):
    """The turn ends ``user_speech_timeout`` s after the VAD stops hearing speech.

    The VAD's own ``stop_secs`` of silence come before its stop frame, so the
    silence before the turn ends is at least ``stop_secs + user_speech_timeout``.
    With ``wait_for_transcript`` (default, as pipecat 1.14) the turn also needs a
    final transcript (finalized, or the STT's p99 latency passed); one arriving
    late ends the turn at once. A turn started by a transcription without VAD
    speech ends ``user_speech_timeout`` s after the last transcription.

    Args:
        user_speech_timeout: Seconds after the VAD stop. Default 0.6.
        wait_for_transcript: Require a final transcript (see the module). Default
            True; pass False when no STT feeds the processor (e.g. speech-to-speech).
        timeout: Former name of ``user_speech_timeout`` (flowcat < 0.2).
    """

    def __init__(
        self,
        user_speech_timeout: float = 0.6,
        *,
        wait_for_transcript: bool = True,
        timeout: float | None = None,
    ) -> None:
        super().__init__(wait_for_transcript=wait_for_transcript)
        self.user_speech_timeout = user_speech_timeout if timeout is None else timeout
        self._vad_seen = False

    @property
    def timeout(self) -> float:
        """Alias of :attr:`user_speech_timeout`."""
        return self.user_speech_timeout

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """Speech again: the countdown is void."""
        self._vad_seen = True

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """Start the countdown."""
        self._vad_seen = True
        self._ready_at = now + self.user_speech_timeout
        self._own_done = False
        return False

    def on_transcription(self, frame: Frame, now: float) -> bool:
        """Without VAD activity in this turn, a transcription restarts the countdown."""
        if not self._vad_seen and not self.user_speaking:
            self._ready_at = now + self.user_speech_timeout
            self._own_done = False
        return False

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """Count down at once if the user is already silent."""
        super().turn_started(now, user_speaking)
        self._vad_seen = user_speaking
        if not user_speaking:
            self._ready_at = now + self.user_speech_timeout

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

    speculative = False  # it ends the turn at the final transcript anyway

    def __init__(self, timeout: float = 2.0) -> None:
        super().__init__(wait_for_transcript=False)
        self.timeout = timeout
        self._final_is_latest = False

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """Speech again: a final from before is not the last word."""
        self._final_is_latest = False

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """End now if the STT already finalised, else wait (bounded)."""
        if self._final_is_latest:
            return True
        self._ready_at = now + self.timeout
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
            self._ready_at = now + self.timeout

    def turn_stopped(self) -> None:
        """Reset."""
        super().turn_stopped()
        self._final_is_latest = False
