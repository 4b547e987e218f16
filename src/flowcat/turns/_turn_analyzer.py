"""Stop strategy driven by an end-of-turn model (smart-turn v3)."""

from __future__ import annotations

from ..frames import Frame, VADUserStartedSpeakingFrame
from ._smart_turn import SmartTurnAnalyzer, TurnPrediction
from ._stop import UserTurnStopStrategy

__all__ = ["TurnAnalyzerUserTurnStopStrategy"]

_MAX_SECS = 8.0  # the model sees the last 8 s


class TurnAnalyzerUserTurnStopStrategy(UserTurnStopStrategy):
    """The turn ends when the smart-turn model says the user finished.

    At each VAD stop the last 8 s of the user's audio (from ``pre_speech_secs``
    plus the VAD's ``start_secs`` before the speech start) go to the shared,
    batched :class:`SmartTurnAnalyzer`. "Complete" ends the turn as soon as the
    result is back (~10–100 ms); "incomplete" keeps it open until the user speaks
    again or ``analyzer.stop_secs`` (default 3 s) of silence pass — the
    wall-clock fallback, which also covers a failed or slow check. Speech after
    a check voids its result. With ``wait_for_transcript`` (default, as pipecat
    1.14) either way also needs the turn's final transcript (see
    :class:`~flowcat.turns.UserTurnStopStrategy`).

    Per-call state is only the audio buffer (PCM16, at most ~8.5 s).

    Args:
        analyzer: The (shareable) analyzer.
        wait_for_transcript: Require a final transcript. Default True; False when
            no STT feeds the processor.

    Attributes:
        last_prediction: The latest check's result for this call, if any.
    """

    wants_audio = True

    def __init__(self, analyzer: SmartTurnAnalyzer, *, wait_for_transcript: bool = True) -> None:
        super().__init__(wait_for_transcript=wait_for_transcript)
        self.analyzer = analyzer
        self.last_prediction: TurnPrediction | None = None
        self._buf = bytearray()
        self._sample_rate = 16000
        self._cap = 0
        self._keep_idle = 0
        self._seq = 0
        self._result: TurnPrediction | None = None
        self._set_rate(16000)

    def _set_rate(self, sample_rate: int) -> None:
        self._sample_rate = sample_rate
        bps = 2 * sample_rate  # bytes per second, mono PCM16
        self._cap = int((_MAX_SECS + self.analyzer.pre_speech_secs) * bps)
        self._keep_idle = int((self.analyzer.pre_speech_secs + 0.5) * bps)

    def append_audio(self, audio: bytes, sample_rate: int) -> None:
        """Buffer input audio: ~1 s before speech, up to ~8.5 s during a turn."""
        if sample_rate != self._sample_rate:
            self._buf.clear()
            self._set_rate(sample_rate)
        buf = self._buf
        buf += audio
        cap = self._cap if (self.turn_active or self.user_speaking) else self._keep_idle
        if len(buf) > cap + (cap >> 2):  # trim in amortised steps, not every frame
            del buf[: len(buf) - cap]

    def process(self, frame: Frame, now: float) -> bool:
        """Track speech; a VAD start marks where this turn's audio begins."""
        if type(frame) is VADUserStartedSpeakingFrame and not self.turn_active:
            keep = int((self.analyzer.pre_speech_secs + frame.start_secs) * 2 * self._sample_rate)
            keep -= keep & 1
            if len(self._buf) > keep:
                del self._buf[: len(self._buf) - keep]
        return super().process(frame, now)

    def on_speech_started(self, frame: Frame, now: float) -> None:
        """Void any check in flight."""
        self._seq += 1
        self._result = None

    def on_speech_stopped(self, frame: Frame, now: float) -> bool:
        """Ask the model (during a turn); fall back after ``stop_secs``."""
        if self.turn_active:
            self._check(now)
        return False

    def _check(self, now: float) -> None:
        self._seq += 1
        self._result = None
        self._ready_at = now + self.analyzer.stop_secs
        self._own_done = False
        if not self._buf:
            return
        seq = self._seq

        def _on_result(prediction: TurnPrediction | None) -> None:
            if seq != self._seq or prediction is None:
                return
            self._result = self.last_prediction = prediction
            self._wake()

        self.analyzer.request(bytes(self._buf), self._sample_rate, _on_result)

    def own_ready(self, now: float) -> bool:
        """A "complete" result, or the fallback deadline."""
        result = self._result
        if result is not None:
            self._result = None
            if result.is_complete:
                return True
        return super().own_ready(now)

    def turn_started(self, now: float, user_speaking: bool) -> None:
        """A turn that starts in silence (late transcription) is checked at once."""
        super().turn_started(now, user_speaking)
        if not user_speaking:
            self._check(now)

    def turn_stopped(self) -> None:
        """Void checks; keep only the idle pre-speech window of audio."""
        super().turn_stopped()
        self._seq += 1
        self._result = None
        if len(self._buf) > self._keep_idle:
            del self._buf[: len(self._buf) - self._keep_idle]
