"""Smart-turn v3: one shared ONNX session per process, checks batched across calls.

The model (``smart-turn-v3.2-cpu.onnx``, BSD-2, ~8.7 MB) is package data of the
``pipecat-ai`` wheel; it is located on disk without importing any pipecat code.
Input ``input_features`` ``(batch, 80, 800)`` float32 (see :mod:`._features`),
output ``logits`` ``(batch, 1)``: already a sigmoid probability that the turn is
complete.

Density: every :class:`SmartTurnAnalyzer` in the process shares one
``InferenceSession`` and one worker thread. Checks requested by many calls in
the same event-loop iteration are gathered and run as **one** batch on that
thread (a check takes ~10–100 ms, so it never runs on the loop); checks arriving
while a batch runs are gathered for the next one. Per-call state is only the
audio buffer, kept by :class:`~flowcat.turns.TurnAnalyzerUserTurnStopStrategy`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from ..errors import InferenceError, MissingExtraError, require_extra
from ._features import SAMPLE_RATE, log_mel_features

__all__ = ["SmartTurnAnalyzer", "TurnPrediction", "default_smart_turn_model_path"]

logger = logging.getLogger("flowcat.turns.smart_turn")

_MODEL_FILE = os.path.join("audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx")


class TurnPrediction(NamedTuple):
    """Result of one end-of-turn check."""

    is_complete: bool
    """Whether the probability reached the analyzer's threshold."""
    probability: float
    """Probability (0–1) that the user finished the turn."""
    inference_ms: float
    """Wall time (ms) of the feature extraction + ONNX run that produced it
    (for a batched check: the whole batch's time)."""


def default_smart_turn_model_path() -> str:
    """Path of ``smart-turn-v3.2-cpu.onnx`` inside the installed pipecat-ai wheel.

    Raises:
        MissingExtraError: pipecat-ai (the model's wheel) is not installed.
    """
    spec = importlib.util.find_spec("pipecat")  # locates the package, runs none of its code
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = os.path.join(root, _MODEL_FILE)
            if os.path.isfile(path):
                return path
    raise MissingExtraError("SmartTurnAnalyzer (model file from pipecat-ai==1.14.0, --no-deps)", "local")


class _SharedModel:
    """One ONNX session + one worker thread, shared by every analyzer of a model file."""

    loads = 0
    """Sessions created in this process (a test hook: stays 1 per model file)."""

    def __init__(self, path: str, threads: int) -> None:
        ort: Any = require_extra("onnxruntime", "SmartTurnAnalyzer", "local")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name: str = self.session.get_inputs()[0].name
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowcat-smart-turn")
        self.batches = 0
        self.checks = 0
        type(self).loads += 1

    def probabilities(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Run one batch: float32 16 kHz waveforms → completion probabilities."""
        feats = log_mel_features(list(audios))
        out = self.session.run(None, {self.input_name: feats})[0]
        self.batches += 1
        self.checks += len(audios)
        return np.asarray(out, dtype=np.float64).reshape(-1)


_models: dict[str, _SharedModel] = {}
_models_lock = threading.Lock()


def _shared_model(path: str, threads: int) -> _SharedModel:
    with _models_lock:
        model = _models.get(path)
        if model is None:
            model = _models[path] = _SharedModel(path, threads)
        return model


def _to_model_audio(pcm: bytes | np.ndarray, sample_rate: int) -> np.ndarray:
    """PCM16 bytes or float array at ``sample_rate`` → float32 16 kHz in [-1, 1]."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) * (1.0 / 32768.0)
    else:
        audio = np.asarray(pcm, dtype=np.float32)
    if sample_rate != SAMPLE_RATE and audio.size:
        import soxr

        audio = np.asarray(soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ"), dtype=np.float32)
    return audio


_Callback = Callable[[TurnPrediction | None], None]
_Item = tuple[bytes | np.ndarray, int, float, _Callback]


class _Batcher:
    """Gathers one loop's checks; runs at most one batch at a time on the shared thread."""

    def __init__(self, model: _SharedModel, loop: asyncio.AbstractEventLoop, max_batch: int) -> None:
        self.model = model
        self.loop = loop
        self.max_batch = max_batch
        self.pending: list[_Item] = []
        self.scheduled = False
        self.running = False

    def add(self, item: _Item) -> None:
        self.pending.append(item)
        if not self.scheduled and not self.running:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.running or not self.pending:
            return
        batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
        self.running = True
        fut = self.loop.run_in_executor(self.model.executor, _run_batch, self.model, batch)
        fut.add_done_callback(lambda f: self._done(batch, f))

    def _done(self, batch: list[_Item], fut: asyncio.Future[list[TurnPrediction]]) -> None:
        self.running = False
        results: Sequence[TurnPrediction | None]
        if fut.cancelled() or fut.exception() is not None:
            if not fut.cancelled():
                logger.error("smart-turn batch of %d failed", len(batch), exc_info=fut.exception())
            results = [None] * len(batch)
        else:
            results = fut.result()
        for item, result in zip(batch, results, strict=True):
            try:
                item[3](result)
            except Exception:
                logger.exception("smart-turn result callback failed")
        if self.pending and not self.loop.is_closed():
            self.flush()


def _run_batch(model: _SharedModel, batch: list[_Item]) -> list[TurnPrediction]:
    t0 = time.perf_counter()
    audios = [_to_model_audio(pcm, sr) for pcm, sr, _, _ in batch]
    probs = model.probabilities(audios)
    ms = (time.perf_counter() - t0) * 1000.0
    return [
        TurnPrediction(bool(p >= th), float(p), ms) for p, (_, _, th, _) in zip(probs, batch, strict=True)
    ]


class SmartTurnAnalyzer:
    """End-of-turn classifier on the last 8 s of the user's audio (smart-turn v3).

    Create one and share it between calls, or one per call: either way they
    share the process-wide ONNX session (created by the first analyzer of a
    model file) and worker thread.

    Args:
        model_path: ONNX file (default: the one in the pipecat-ai wheel).
        threshold: Probability at or above which the turn is complete. Default 0.5.
        stop_secs: Silence (s) after which a turn ends even if the model says
            incomplete (the wall-clock fallback). Default 3.0.
        pre_speech_secs: Audio (s) kept before the VAD's speech start. Default 0.5.
        max_batch: Most checks per ONNX run. Default 32.
        threads: ONNX intra-op threads of the shared session (first creator wins). Default 1.

    Raises:
        MissingExtraError: onnxruntime or the model file is not installed.
    """

    def __init__(
        self,
        *,
        model_path: str | None = None,
        threshold: float = 0.5,
        stop_secs: float = 3.0,
        pre_speech_secs: float = 0.5,
        max_batch: int = 32,
        threads: int = 1,
    ) -> None:
        path = model_path or default_smart_turn_model_path()
        if not os.path.isfile(path):
            raise MissingExtraError(f"SmartTurnAnalyzer (model file {path})", "local")
        self.threshold = threshold
        self.stop_secs = stop_secs
        self.pre_speech_secs = pre_speech_secs
        self.max_batch = max_batch
        self._model = _shared_model(path, threads)
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def session(self) -> Any:
        """The process-wide ``onnxruntime.InferenceSession``."""
        return self._model.session

    @staticmethod
    def sessions_created() -> int:
        """How many smart-turn sessions this process created (1 per model file)."""
        return _SharedModel.loads

    @property
    def stats(self) -> tuple[int, int]:
        """``(batches, checks)`` run so far by the shared session."""
        return self._model.batches, self._model.checks

    # ----------------------------------------------------------- blocking API

    def predict(self, audio: bytes | np.ndarray, sample_rate: int = SAMPLE_RATE) -> TurnPrediction:
        """Check one waveform now, on the calling thread (blocks ~10–100 ms).

        Args:
            audio: PCM16 little-endian bytes, or float samples in [-1, 1].
            sample_rate: Its sample rate (Hz); resampled to 16 kHz if different.
        """
        return self.predict_batch([audio], sample_rate)[0]

    def predict_batch(
        self, audios: Sequence[bytes | np.ndarray], sample_rate: int = SAMPLE_RATE
    ) -> list[TurnPrediction]:
        """Check several waveforms in one ONNX run, on the calling thread."""
        items: list[_Item] = [(a, sample_rate, self.threshold, _ignore) for a in audios]
        return _run_batch(self._model, items)

    # ------------------------------------------------------------ async API

    def request(self, audio: bytes | np.ndarray, sample_rate: int, callback: _Callback) -> None:
        """Queue a check; ``callback(prediction)`` runs on this loop when it is done.

        Checks queued in the same loop iteration (by any call) run as one batch on
        the shared worker thread. ``callback`` gets None if inference failed.
        Must be called from a running event loop; never blocks it.
        """
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self._model, loop, self.max_batch)
        batcher.add((audio, sample_rate, self.threshold, callback))

    async def analyze(self, audio: bytes | np.ndarray, sample_rate: int = SAMPLE_RATE) -> TurnPrediction:
        """Check one waveform off the loop, batched with concurrent checks.

        Raises:
            InferenceError: Inference failed (logged).
        """
        fut: asyncio.Future[TurnPrediction | None] = asyncio.get_running_loop().create_future()

        def _set(result: TurnPrediction | None) -> None:
            if not fut.done():
                fut.set_result(result)

        self.request(audio, sample_rate, _set)
        result = await fut
        if result is None:
            raise InferenceError("smart-turn inference failed")
        return result


def _ignore(_: TurnPrediction | None) -> None:
    return None
