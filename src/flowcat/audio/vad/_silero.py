"""SileroVADAnalyzer: Silero VAD on the shared, batched process-wide model."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Protocol

from ...errors import PipelineStateError
from ._analyzer import QUIET, VADAnalyzer
from ._batcher import SileroBatcher
from ._params import VADParams
from ._silero_model import SileroLane, SileroModel
from ._volume import mean_square, quick_mean_square

__all__ = ["PreGate", "SileroVADAnalyzer"]

# Pipecat's model-reset policy: the recurrent state drifts during long non-speech
# (music, noise) and then under-reports speech; clear it every ~2 s of audio, but
# only while the VAD is quiet and the last 5 windows were all clearly non-speech.
_RESET_INTERVAL_SECS = 2.0
_RESET_MAX_CONFIDENCE = 0.1
_RESET_LOW_WINDOWS = 5
# skip_quiet: the last quiet windows the model did not see are run (state only) before the
# next window that reaches it, so it meets speech with the recent silence in its state.
_REPLAY_WINDOWS = 2


class PreGate(Protocol):
    """A cheap per-stream detector consulted before the model (see :class:`WebRTCVADGate`)."""

    def is_speech(self, window: bytes, sample_rate: int) -> bool:
        """Whether ``window`` (PCM16 mono) may contain speech."""
        ...


class SileroVADAnalyzer(VADAnalyzer):
    """Silero VAD: 512-sample windows at 16 kHz (32 ms), 256 at 8 kHz.

    Every analyzer in the process shares one ``InferenceSession``
    (:meth:`SileroModel.shared`); per stream it keeps only a slot of recurrent state
    and context (~1.3 KB). With :meth:`feed` its windows are batched with every other
    stream's by the loop's :class:`SileroBatcher`; :meth:`analyze_audio_sync` runs them
    one by one on the calling thread.

    Args:
        sample_rate: Fixed rate (8000 or 16000), or None for the pipeline's.
        params: State-machine thresholds.
        pre_gate: Optional cheap detector (e.g. :class:`WebRTCVADGate`): while QUIET,
            windows it calls non-speech score 0 without running the model.
        skip_quiet: While QUIET, score a window 0 without running the model when it can
            not count as voiced anyway: the window itself is below ``min_volume`` and so
            is the smoothed volume after it (the state machine needs both confidence and
            volume). Loud windows always run, so the model is warm when speech starts.
            Saves most model calls on a line that is quiet while the caller listens.
        model: The model (default: the shared one).
    """

    supported_sample_rates = (8000, 16000)

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        params: VADParams | None = None,
        pre_gate: PreGate | None = None,
        skip_quiet: bool = True,
        model: SileroModel | None = None,
    ) -> None:
        self._model = model or SileroModel.shared()
        self._lane: SileroLane | None = None
        self._slot = -1
        self._finalizer: weakref.finalize[..., object] | None = None
        self._fifo: deque[bytes] = deque()
        # skip_quiet: while > 0, the first _replays - 1 windows of _fifo run for the model's state
        # only, and the one after them was let through the gate already
        self._replays = 0
        self._batcher: SileroBatcher | None = None
        self._epoch = 0  # the batcher's rate period in which this stream last submitted
        self._gate = pre_gate
        self.skip_quiet = skip_quiet
        # The quiet windows skipped since the model last ran (or was reset), the last
        # _REPLAY_WINDOWS of them, plus the one before those for its context tail.
        self._skipped: deque[bytes] = deque(maxlen=_REPLAY_WINDOWS + 1)
        self._since_reset = 0
        self._low_windows = 0
        self._reset_windows = 1
        self.gated_windows = 0
        """Windows scored as silence without running the model (pre-gate or ``skip_quiet``)."""
        super().__init__(sample_rate=sample_rate, params=params)

    def num_frames_required(self) -> int:
        """512 samples at 16 kHz, 256 at 8 kHz."""
        return 512 if self._sample_rate == 16000 else 256

    @property
    def pending(self) -> int:
        """Windows fed and not yet scored."""
        return len(self._fifo)

    @property
    def behind(self) -> bool:
        """Whether another whole window is queued behind the one being scored: the stream is a
        window or more late, and a batching scorer runs it without waiting for rows."""
        return len(self._fifo) > 1

    def _on_sample_rate(self, sample_rate: int) -> None:
        self._release()
        self._fifo.clear()
        self._replays = 0
        self._skipped.clear()
        lane = self._lane = self._model.lane(sample_rate)
        self._slot = lane.acquire()
        self._finalizer = weakref.finalize(self, lane.release, self._slot)
        self._since_reset = self._low_windows = 0
        self._reset_windows = round(_RESET_INTERVAL_SECS * sample_rate / self.num_frames_required())

    def _release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # releases the slot exactly once
            self._finalizer = None
        self._slot = -1

    def close(self) -> None:
        """Give the state slot back and drop pending windows (idempotent)."""
        super().close()
        self._release()
        self._fifo.clear()
        self._replays = 0
        self._wake_drain()

    def restart(self) -> None:
        """Start a new stream on the same slot (model state cleared)."""
        super().restart()
        self._fifo.clear()
        self._replays = 0
        self._skipped.clear()
        if self._lane is not None and self._slot >= 0:
            self._lane.reset(self._slot)
        self._since_reset = self._low_windows = 0
        self._wake_drain()

    # ------------------------------------------------------------ scoring

    def _gated(self, window: bytes) -> bool:
        """Whether the window was scored 0 without the model (QUIET, and the pre-gate calls
        it non-speech or ``skip_quiet`` finds it too quiet to count as voiced).

        A gated window is scored here: QUIET stays QUIET on an unvoiced window and emits
        nothing, so only its volume is recorded.
        """
        if self._state is not QUIET:
            return False
        gate = self._gate
        if gate is not None:
            if gate.is_speech(window, self._sample_rate):
                return False
            self._volume.update(mean_square(window))  # type: ignore[union-attr]
        elif self.skip_quiet and self._params.min_volume > 0.0:
            if not self._volume.update_if_below(quick_mean_square(window), self._params.min_volume):  # type: ignore[union-attr]
                return False
        else:
            return False
        self._scored += 1
        self._skipped.append(window)  # the model's context is brought up to date on replay
        self.gated_windows += 1
        return True

    def voice_confidence(self, buffer: bytes) -> float:
        """Score one window now on this thread (batch of one); updates the stream state."""
        if self._slot < 0:
            raise PipelineStateError("SileroVADAnalyzer: closed or no sample rate set")
        gate = self._gate  # (skip_quiet applies to fed windows only: here the caller scores)
        if self._state is QUIET and gate is not None and not gate.is_speech(buffer, self._sample_rate):
            self._lane.skip(self._slot, buffer)  # type: ignore[union-attr]
            self.gated_windows += 1
            p = 0.0
        else:
            p = float(self._lane.run_sync([self._slot], [buffer])[0])  # type: ignore[union-attr]
        self._maybe_reset(p)
        return p

    def _maybe_reset(self, p: float) -> None:
        self._since_reset += 1
        self._low_windows = self._low_windows + 1 if p < _RESET_MAX_CONFIDENCE else 0
        if (
            self._since_reset >= self._reset_windows
            and self._state is QUIET
            and self._low_windows >= _RESET_LOW_WINDOWS
        ):
            self._lane.reset(self._slot)  # type: ignore[union-attr]
            self._skipped.clear()
            self._since_reset = 0

    def _submit(self, window: bytes) -> None:
        if self._slot < 0:
            return
        fifo = self._fifo
        fifo.append(window)
        if len(fifo) == 1:
            self._advance()
        elif len(fifo) == 2 and self._batcher is not None and self.behind:
            self._batcher.hurry()  # the queued window fell a window behind while it waited

    def _queue_replay(self) -> None:
        """Put the quiet windows skipped since the last reset ahead of the front window, to run
        in the batches like any other (state only): a replay costs a batch row, not an ONNX call."""
        skipped = self._skipped
        if len(skipped) > _REPLAY_WINDOWS:  # older windows were dropped: take the context of the last one
            self._lane.skip(self._slot, skipped.popleft())  # type: ignore[union-attr]
        self._replays = len(skipped) + 1  # ... and the window that needs them, already let through
        self._fifo.extendleft(reversed(skipped))
        skipped.clear()

    def _advance(self) -> None:
        """Send the front window to the batcher, scoring pre-gated ones on the way."""
        fifo = self._fifo
        while fifo:
            window = fifo[0]
            if self._replays or not self._gated(window):
                if self._skipped:  # (the front window stays ungated: it is not looked at again)
                    self._queue_replay()
                batcher = self._batcher
                if batcher is None:
                    batcher = self._batcher = SileroBatcher.for_loop(asyncio.get_running_loop())
                batcher.submit(self)
                return
            fifo.popleft()
            self._maybe_reset(0.0)
        self._wake_drain()

    def _on_probability(self, p: float, ms: float) -> None:
        """Batcher callback: the front window's probability and mean square (LSB²)."""
        if self._slot < 0 or not self._fifo:
            return
        self._fifo.popleft()
        replays = self._replays
        if replays:
            self._replays = replays - 1
            if replays > 1:  # a replayed quiet window: its state is kept, its score is not
                self._advance()
                return
        self._maybe_reset(p)
        self._score(p, ms)
        self._advance()
