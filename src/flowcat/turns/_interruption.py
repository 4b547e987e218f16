"""Barge-in judging: does user speech over the bot interrupt it, or was it a backchannel?

Protocol with the output transport (see ``docs/turns.md``):

1. A user turn starts while the bot speaks → the bot is **paused**
   (``BotSpeechPauseFrame``: the output transport holds queued bot audio, sends
   silence, discards nothing). The user turn is *not* announced yet.
2. The speech **qualifies** once the user spoke ``min_duration`` s in total
   (VAD time, counting the VAD's ``start_secs``) **and** the transcriptions hold
   ``min_words`` words → the user turn starts and exactly one
   ``InterruptionFrame`` is broadcast (queued bot audio is discarded).
3. It is a **false interruption** if it has not qualified ``false_interruption_timeout``
   s after the later of the pause and the user's last VAD stop → ``BotSpeechResumeFrame``:
   the bot goes on where it stopped, no interruption, no user turn (its
   transcriptions are dropped).

:class:`BargeIn` is the pure state machine (time passed in); the processor acts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BargeIn", "InterruptionParams"]

NONE = 0
COMMIT = 1
RESUME = 2
_EPS = 1e-9  # float slack when a timer fires exactly at a threshold


@dataclass(slots=True)
class InterruptionParams:
    """When user speech over the bot counts as an interruption.

    Defaults follow livekit's interruption options, with a shorter resume wait.
    """

    min_duration: float = 0.5
    """User speech (s) before it interrupts the bot. Default 0.5 (livekit's)."""
    min_words: int = 0
    """Transcribed words before it interrupts (0: no transcript needed). Default 0."""
    false_interruption_timeout: float = 1.0
    """Seconds the bot stays paused past the later of the pause and the user's last
    VAD stop before unqualified speech is judged a backchannel and the bot resumes.
    Default 1.0: covers a final transcript's usual lag (0.3–0.4 s after the VAD stop
    with a local Whisper) and a short VAD flap; livekit uses 2.0."""
    vad_stop_secs: float = 0.2
    """The VAD's ``stop_secs`` (s): while the VAD still reports speech, the speech may
    have ended this long ago, so ongoing speech counts only past this hang-over (a
    0.4 s "uh huh" is not held to be 0.6 s long). Updated from each VAD stop frame.
    Default 0.2 (the VAD's default)."""
    resume_false_interruption: bool = True
    """Pause the bot at once and resume it after a false interruption. If False, the
    bot keeps talking until the speech qualifies (no Pause/Resume frames)."""


class BargeIn:
    """One possible barge-in at a time. Methods return ``NONE``, ``COMMIT`` or ``RESUME``.

    Attributes:
        pending: Whether speech over the bot is being judged.
        deadline: Loop time (s) of the next decision, or None.
    """

    __slots__ = (
        "_acc",
        "_hangover",
        "_resume_at",
        "_since",
        "_words_final",
        "_words_interim",
        "deadline",
        "params",
        "pending",
    )

    def __init__(self, params: InterruptionParams) -> None:
        self.params = params
        self.pending = False
        self.deadline: float | None = None
        self._acc = 0.0  # speech time (s) of finished VAD segments
        self._hangover = params.vad_stop_secs
        self._since: float | None = None  # start of the current VAD segment, if speaking
        self._resume_at: float | None = None
        self._words_final = 0
        self._words_interim = 0

    def speech_secs(self, now: float) -> float:
        """User speech (s) so far in this barge-in."""
        since = self._since
        return self._acc + (max(0.0, now - since - self._hangover) if since is not None else 0.0)

    def words(self) -> int:
        """Words transcribed so far (finals + the latest interim)."""
        return self._words_final + self._words_interim

    def begin(self, now: float, speech_start: float | None, words_final: int, words_interim: int) -> int:
        """User speech started over the bot.

        Args:
            now: Loop time (s).
            speech_start: When the current speech segment began (s; VAD start time
                minus ``start_secs``), or None if the VAD hears nothing now.
            words_final: Words of final transcriptions already received for it.
            words_interim: Words of the latest interim transcription.
        """
        self.pending = True
        self._acc = 0.0
        self._since = speech_start
        self._words_final = words_final
        self._words_interim = words_interim
        return self._decide(now, rearm_resume=True)

    def speech_started(self, now: float, speech_start: float) -> int:
        """The VAD hears the user again."""
        self._since = speech_start
        return self._decide(now)

    def speech_stopped(self, now: float, stop_secs: float = 0.0) -> int:
        """The VAD stopped hearing the user: the resume countdown restarts.

        Args:
            now: Loop time (s).
            stop_secs: Silence the VAD waited before saying so (s): the speech
                ended that long ago.
        """
        since = self._since
        if stop_secs > 0:
            self._hangover = stop_secs
        if since is not None:
            self._acc += max(0.0, now - stop_secs - since)
            self._since = None
        return self._decide(now, rearm_resume=True)

    def transcription(self, now: float, words: int, final: bool) -> int:
        """A transcription arrived with ``words`` words."""
        if final:
            self._words_final += words
            self._words_interim = 0
        else:
            self._words_interim = words
        return self._decide(now)

    def poll(self, now: float) -> int:
        """The deadline passed."""
        return self._decide(now)

    def reset(self) -> None:
        """Forget the current barge-in."""
        self.pending = False
        self.deadline = None
        self._since = None
        self._resume_at = None

    def _decide(self, now: float, rearm_resume: bool = False) -> int:
        p = self.params
        speech = self.speech_secs(now)
        if speech >= p.min_duration - _EPS and self.words() >= p.min_words:
            self.reset()
            return COMMIT
        if rearm_resume or self._resume_at is None:
            self._resume_at = now + p.false_interruption_timeout
        elif now >= self._resume_at - _EPS:
            self.reset()
            return RESUME
        deadline = self._resume_at
        if self._since is not None and speech < p.min_duration - _EPS:
            # Wake when the duration would qualify if the user keeps speaking
            # (past the VAD's hang-over: only then is the speech known to be that long).
            deadline = min(deadline, self._since + self._hangover + (p.min_duration - self._acc))
        self.deadline = deadline
        return NONE
