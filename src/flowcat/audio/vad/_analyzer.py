"""VADAnalyzer: windows, volume gate and the pipecat VAD state machine.

An analyzer takes 16-bit mono PCM at its sample rate in chunks of any size, cuts it
into windows of :meth:`VADAnalyzer.num_frames_required` samples, gets a voice
confidence for each window from the subclass, and runs the state machine
QUIET → STARTING → SPEAKING → STOPPING → QUIET on ``confidence >= params.confidence
and volume >= params.min_volume``. Transitions are checked after every window.

Two ways to drive it:

* :meth:`VADAnalyzer.analyze_audio_sync` (and the pipecat-style coroutine
  :meth:`VADAnalyzer.analyze_audio`) scores the complete windows and returns the state.
* :meth:`VADAnalyzer.feed` hands windows over without waiting: an analyzer with a
  shared, batched model (Silero) scores them later on the event loop and reports
  :class:`~flowcat.audio.vad.VADEvent` s to the listener, each with the **audio
  position** (seconds of audio since the stream started) at which it happened, so
  event times do not depend on when the batch ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ...errors import ConfigError, PipelineStateError
from ._params import VADEvent, VADParams, VADState
from ._volume import VolumeMeter, mean_square

__all__ = ["VADAnalyzer", "VADListener"]

VADListener = Callable[[VADEvent, float], None]
"""``listener(event, position_secs)``: called on the event loop, never re-entrantly."""

QUIET = VADState.QUIET
STARTING = VADState.STARTING
SPEAKING = VADState.SPEAKING
STOPPING = VADState.STOPPING
STARTED = VADEvent.STARTED
STOPPED = VADEvent.STOPPED
ACTIVITY = VADEvent.ACTIVITY


class VADAnalyzer:
    """Base of every voice activity detector (pipecat's ``VADAnalyzer`` contract).

    Subclasses implement :meth:`num_frames_required` and :meth:`voice_confidence`;
    batched ones also override :meth:`_submit` (and :attr:`pending`, :meth:`close`).

    Args:
        sample_rate: Fixed sample rate in Hz, or None to take the one given to
            :meth:`set_sample_rate` (the pipeline's input rate).
        params: State-machine thresholds (default :class:`VADParams`).
    """

    supported_sample_rates: tuple[int, ...] = (8000, 16000)
    """Rates the analyzer accepts; a processor resamples anything else to 16 kHz."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        self._init_sample_rate = sample_rate
        self._sample_rate = 0
        self._params = params or VADParams()
        self._buf = bytearray()
        self._window_bytes = 0
        self._window_secs = 0.0
        self._start_windows = 0
        self._stop_windows = 0
        self._state = QUIET
        self._starting = 0
        self._stopping = 0
        self._scored = 0
        self._volume: VolumeMeter | None = None
        self._volume_window = 0.0
        self._listener: VADListener | None = None
        self._last_activity = 0.0
        self.activity_period = 0.2
        """Seconds of audio between ACTIVITY events while speaking."""
        self._drain_waiter: asyncio.Future[None] | None = None
        if sample_rate:
            self.set_sample_rate(sample_rate)

    # ----------------------------------------------------------- contract

    def num_frames_required(self) -> int:
        """Samples per analysis window at the current sample rate."""
        raise NotImplementedError

    def voice_confidence(self, buffer: bytes) -> float:
        """Voice probability (0..1) of one window of PCM16 (synchronous)."""
        raise NotImplementedError

    # ------------------------------------------------------ configuration

    @property
    def sample_rate(self) -> int:
        """Current sample rate in Hz (0 until set)."""
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        """Always 1: analyzers take mono audio."""
        return 1

    @property
    def params(self) -> VADParams:
        """The thresholds in force."""
        return self._params

    @property
    def state(self) -> VADState:
        """State after the last scored window."""
        return self._state

    @property
    def position(self) -> float:
        """Seconds of audio scored so far (end of the last scored window)."""
        return self._scored * self._window_secs

    @property
    def window_secs(self) -> float:
        """Duration of one analysis window, in seconds."""
        return self._window_secs

    @property
    def pending(self) -> int:
        """Windows handed over with :meth:`feed` and not yet scored."""
        return 0

    @property
    def decisive(self) -> bool:
        """Whether the next window's score can start or stop speech (it completes a run of
        ``start_secs`` of voice or ``stop_secs`` of quiet): a batching scorer runs such a
        window without waiting for rows, since the turn's end (or a barge-in) waits on it."""
        state = self._state
        if state is STOPPING:
            return self._stopping + 1 >= self._stop_windows
        if state is STARTING:
            return self._starting + 1 >= self._start_windows
        if state is QUIET:
            return self._start_windows <= 1
        return self._stop_windows <= 1

    def set_listener(self, listener: VADListener | None) -> None:
        """Receive STARTED / STOPPED / ACTIVITY events (see :data:`VADListener`)."""
        self._listener = listener

    def set_sample_rate(self, sample_rate: int) -> None:
        """Set the input rate (ignored if the analyzer was built with a fixed one)."""
        rate = self._init_sample_rate or sample_rate
        if rate not in self.supported_sample_rates:
            raise ConfigError(f"{type(self).__name__} supports {self.supported_sample_rates} Hz, got {rate}")
        if rate != self._sample_rate:
            self._sample_rate = rate
            self._buf.clear()
            self._scored = 0
            self._last_activity = 0.0
            self._on_sample_rate(rate)
        self.set_params(self._params)

    def _on_sample_rate(self, sample_rate: int) -> None:
        """Hook: the sample rate changed (subclasses rebind per-rate resources)."""

    def set_params(self, params: VADParams) -> None:
        """Replace the thresholds; the state machine restarts in QUIET (as pipecat)."""
        self._params = params
        if not self._sample_rate:
            return
        frames = self.num_frames_required()
        self._window_bytes = frames * 2
        wsecs = frames / self._sample_rate
        self._window_secs = wsecs
        self._start_windows = round(params.start_secs / wsecs)
        self._stop_windows = round(params.stop_secs / wsecs)
        self._starting = self._stopping = 0
        self._state = QUIET
        if self._volume is None or abs(self._volume_window - wsecs) > 1e-12:
            self._volume = VolumeMeter(wsecs)
            self._volume_window = wsecs

    def force_quiet(self) -> bool:
        """Drop to QUIET now (the audio stopped mid-speech). True if it was speaking."""
        was = self._state in (SPEAKING, STOPPING)
        self._state = QUIET
        self._starting = self._stopping = 0
        return was

    def restart(self) -> None:
        """Start a new stream: forget buffered audio, position and state."""
        self._buf.clear()
        self._scored = 0
        self._last_activity = 0.0
        self._starting = self._stopping = 0
        self._state = QUIET
        if self._volume is not None:
            self._volume.reset()

    def close(self) -> None:
        """Release per-stream resources (idempotent)."""
        self._listener = None

    async def cleanup(self) -> None:
        """Pipecat-compatible alias of :meth:`close`."""
        self.close()

    # ------------------------------------------------------------ driving

    def _windows(self, buffer: bytes) -> list[bytes]:
        if not self._window_bytes:
            raise PipelineStateError(f"{type(self).__name__}: set_sample_rate() first")
        buf = self._buf
        buf += buffer
        n = self._window_bytes
        if len(buf) < n:
            return []
        out = []
        while len(buf) >= n:
            out.append(bytes(buf[:n]))
            del buf[:n]
        return out

    def analyze_audio_sync(self, buffer: bytes) -> VADState:
        """Score every complete window in ``buffer`` now; return the state.

        Uses :meth:`voice_confidence` (for Silero: the shared model, batch of one,
        on this thread). Do not mix with :meth:`feed` on the same analyzer.
        """
        for window in self._windows(buffer):
            self._score(self.voice_confidence(window), mean_square(window))
        return self._state

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Pipecat-style: feed ``buffer`` and wait until its windows are scored."""
        self.feed(buffer)
        await self.drain()
        return self._state

    def feed(self, buffer: bytes) -> None:
        """Hand over PCM16 mono audio without waiting for the model.

        Events reach the listener as windows are scored: at once for analyzers
        without a shared model, within an event-loop iteration or so for Silero.
        """
        n = self._window_bytes
        if not n:
            raise PipelineStateError(f"{type(self).__name__}: set_sample_rate() first")
        buf = self._buf
        buf += buffer
        while len(buf) >= n:
            window = bytes(buf[:n])
            del buf[:n]
            self._submit(window)

    def _submit(self, window: bytes) -> None:
        """Score one window (subclasses with a batched model queue it instead)."""
        self._score(self.voice_confidence(window), mean_square(window))

    async def drain(self) -> None:
        """Wait until every fed window has been scored."""
        while self.pending:
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
            await waiter

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------ state machine

    def _score(self, confidence: float, ms: float) -> None:
        """Advance the state machine by one window (confidence 0..1, mean square LSB²)."""
        self._scored += 1
        volume = self._volume.update(ms)  # type: ignore[union-attr]
        params = self._params
        state = self._state
        if confidence >= params.confidence and volume >= params.min_volume:
            if state is QUIET:
                state = STARTING
                self._starting = 1
            elif state is STARTING:
                self._starting += 1
            elif state is STOPPING:
                state = SPEAKING
                self._stopping = 0
        else:
            if state is STARTING:
                state = QUIET
                self._starting = 0
            elif state is SPEAKING:
                state = STOPPING
                self._stopping = 1
            elif state is STOPPING:
                self._stopping += 1
        event = None
        if state is STARTING and self._starting >= self._start_windows:
            state = SPEAKING
            self._starting = 0
            event = STARTED
        elif state is STOPPING and self._stopping >= self._stop_windows:
            state = QUIET
            self._stopping = 0
            event = STOPPED
        self._state = state
        listener = self._listener
        if listener is None:
            return
        if event is not None:
            pos = self._scored * self._window_secs
            listener(event, pos)
            if event is STARTED:
                self._last_activity = pos
                listener(ACTIVITY, pos)
        elif state is SPEAKING or state is STOPPING:
            pos = self._scored * self._window_secs
            if pos - self._last_activity >= self.activity_period - 1e-9:
                self._last_activity = pos
                listener(ACTIVITY, pos)
