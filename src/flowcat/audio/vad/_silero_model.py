"""The process-wide Silero VAD model and the per-stream state it keeps for each call.

One ``onnxruntime.InferenceSession`` (1 intra-op thread) serves every stream in the
process. The graph takes a batch: ``input`` [N, context + window] float32,
``state`` [2, N, 128] float32 and ``sr`` (int64 scalar), and returns ``output`` [N, 1]
and the next ``state``. Batched results equal one-by-one results.

Per-stream state lives in a :class:`SileroLane` (one per sample rate): rows of a
shared ``state`` arena [2, capacity, 128] and ``context`` arena [capacity, context]
(the last 64 samples at 16 kHz, 32 at 8 kHz, prepended to the next window). A stream
owns a slot (an index); a batch gathers the slots' rows, runs, and scatters them back.
About 1.3 KB per stream; no model copy, no thread.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError, MissingExtraError

__all__ = ["SileroLane", "SileroModel", "silero_model_path"]

logger = logging.getLogger("flowcat.vad")

_I16 = np.dtype("<i2")
_SCALE = np.float32(1.0 / 32768.0)
_WINDOW = {16000: 512, 8000: 256}
_CONTEXT = {16000: 64, 8000: 32}


def silero_model_path(filename: str = "silero_vad.onnx") -> str:
    """Path of the ONNX file inside the installed ``silero_vad`` package data.

    The package is located without importing it (its ``__init__`` imports torch).

    Raises:
        MissingExtraError: ``silero-vad`` is not installed.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("Silero VAD (pip install --no-deps silero-vad)", "local")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", filename)
    if not os.path.exists(path):
        raise MissingExtraError(f"Silero VAD model file {filename}", "local")
    return path


class SileroModel:
    """One Silero ``InferenceSession`` for the whole process.

    Use :meth:`shared`; constructing more is allowed (tests, benchmarks of the
    one-session-per-call model) and counted in :attr:`constructions`.

    Args:
        path: ONNX file (default: ``silero_vad.onnx`` from the ``silero_vad`` wheel).
        threads: ``intra_op_num_threads`` (1: the process is one core's worth of calls).
    """

    constructions: ClassVar[int] = 0
    """How many sessions this process has built."""
    _shared: ClassVar[SileroModel | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | None = None, *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("Silero VAD", "local") from None
        self.path = path or silero_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session: Any = ort.InferenceSession(
            self.path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._lanes: dict[int, SileroLane] = {}
        self._sr = {rate: np.array(rate, dtype=np.int64) for rate in _WINDOW}
        type(self).constructions += 1

    @classmethod
    def shared(cls) -> SileroModel:
        """The process-wide model, built on first use."""
        model = cls._shared
        if model is None:
            with cls._shared_lock:
                model = cls._shared
                if model is None:
                    model = cls._shared = cls()
        return model

    def lane(self, sample_rate: int) -> SileroLane:
        """The per-stream state arena for ``sample_rate`` (8000 or 16000)."""
        lane = self._lanes.get(sample_rate)
        if lane is None:
            if sample_rate not in _WINDOW:
                raise ConfigError(f"Silero VAD runs at 8000 or 16000 Hz, not {sample_rate}")
            lane = self._lanes[sample_rate] = SileroLane(self, sample_rate)
        return lane

    def run(self, x: np.ndarray, state: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """One ONNX call: ``x`` [N, context + window], ``state`` [2, N, 128] → (probs [N], state)."""
        out, new_state = self.session.run(None, {"input": x, "state": state, "sr": self._sr[sample_rate]})
        return out[:, 0], new_state


class SileroLane:
    """Per-stream Silero state for one sample rate, in shared arrays.

    Gather/scatter and slot bookkeeping are guarded by a lock so that a batch may run
    in the worker thread while the event loop adds or removes streams. A slot that is
    released while a batch runs is reused only after that batch has been scattered.
    """

    def __init__(self, model: SileroModel, sample_rate: int, capacity: int = 64) -> None:
        self.model = model
        self.sample_rate = sample_rate
        self.window = _WINDOW[sample_rate]
        self.context = _CONTEXT[sample_rate]
        self._state = np.zeros((2, capacity, 128), dtype=np.float32)
        self._ctx = np.zeros((capacity, self.context), dtype=np.float32)
        self._free = list(range(capacity - 1, -1, -1))
        self._retired: list[int] = []
        self._running = 0
        self._lock = threading.Lock()
        self.row_cost = 40e-6
        """Smoothed CPU seconds per batch row (measured), for the inline/thread decision."""
        self.base_cost = 30e-6
        """CPU seconds of a batch's fixed overhead (assumed)."""

    @property
    def in_use(self) -> int:
        """Slots held by streams."""
        return self._ctx.shape[0] - len(self._free) - len(self._retired)

    def acquire(self) -> int:
        """A zeroed slot for a new stream."""
        with self._lock:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self._state[:, slot, :] = 0.0
            self._ctx[slot, :] = 0.0
            return slot

    def release(self, slot: int) -> None:
        """Give ``slot`` back (reused once no batch that may hold it is running)."""
        with self._lock:
            (self._retired if self._running else self._free).append(slot)

    def _grow(self) -> None:
        cap = self._ctx.shape[0]
        state = np.zeros((2, cap * 2, 128), dtype=np.float32)
        state[:, :cap] = self._state
        ctx = np.zeros((cap * 2, self.context), dtype=np.float32)
        ctx[:cap] = self._ctx
        self._state, self._ctx = state, ctx
        self._free.extend(range(cap * 2 - 1, cap - 1, -1))

    def reset(self, slot: int) -> None:
        """Clear a stream's recurrent state and context (as a fresh stream)."""
        with self._lock:
            self._state[:, slot, :] = 0.0
            self._ctx[slot, :] = 0.0

    def skip(self, slot: int, window: bytes) -> None:
        """A window was not run (pre-gated): only its tail becomes the next context."""
        tail = np.frombuffer(window, dtype=_I16)[-self.context :]
        with self._lock:
            np.multiply(tail, _SCALE, out=self._ctx[slot], casting="unsafe")

    def gather(self, slots: list[int], windows: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Build a batch: (idx, input [N, context + window], state [2, N, 128])."""
        n = len(slots)
        c = self.context
        x = np.empty((n, c + self.window), dtype=np.float32)
        for i, w in enumerate(windows):
            np.multiply(np.frombuffer(w, dtype=_I16), _SCALE, out=x[i, c:], casting="unsafe")
        idx = np.array(slots, dtype=np.intp)
        with self._lock:
            x[:, :c] = self._ctx[idx]
            state = self._state[:, idx, :]
            self._running += 1
        return idx, x, state

    def mean_squares(self, x: np.ndarray) -> list[float]:
        """Each gathered window's mean square in LSB² (as :func:`mean_square`), one vector op."""
        w = x[:, self.context :]
        ms: list[float] = (np.einsum("ij,ij->i", w, w) * (32768.0 * 32768.0 / self.window)).tolist()
        return ms

    def infer(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Run a gathered batch (thread-safe; no lane state touched): (probs, state, cpu s)."""
        t0 = time.thread_time()
        probs, new_state = self.model.run(x, state, self.sample_rate)
        return probs, new_state, time.thread_time() - t0

    def scatter(self, idx: np.ndarray, x: np.ndarray, new_state: np.ndarray | None, cpu: float) -> None:
        """Store a batch's new states and contexts; free slots retired meanwhile."""
        with self._lock:
            if new_state is not None:
                self._state[:, idx, :] = new_state
                self._ctx[idx] = x[:, -self.context :]
            self._running -= 1
            if not self._running and self._retired:
                self._free.extend(self._retired)
                self._retired.clear()
        n = idx.shape[0]
        if new_state is not None and n:
            per_row = max(0.0, cpu - self.base_cost) / n
            self.row_cost += 0.2 * (per_row - self.row_cost)

    def run_sync(self, slots: list[int], windows: list[bytes]) -> np.ndarray:
        """Gather, run and scatter on this thread; returns the probabilities [N]."""
        idx, x, state = self.gather(slots, windows)
        try:
            probs, new_state, cpu = self.infer(x, state)
        except BaseException:
            self.scatter(idx, x, None, 0.0)
            raise
        self.scatter(idx, x, new_state, cpu)
        return probs
