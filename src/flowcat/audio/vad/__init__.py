"""Voice activity detection: pipecat's VAD semantics on a shared, batched Silero model.

* :class:`VADAnalyzer` — windows, volume gate, QUIET/STARTING/SPEAKING/STOPPING.
* :class:`SileroVADAnalyzer` — Silero on one process-wide ONNX session; windows of all
  calls are batched per event-loop iteration by :class:`SileroBatcher`.
* :class:`EnergyVADAnalyzer` — no dependencies; level over an adaptive noise floor.
* :class:`WebRTCVADGate` — optional webrtcvad pre-gate that skips model inference.
* :class:`VADProcessor` — the pipeline processor emitting VAD frames.

See ``docs/vad.md``.
"""

from __future__ import annotations

from ._analyzer import VADAnalyzer, VADListener
from ._batcher import BatcherStats, SileroBatcher, vad_executor
from ._energy import EnergyVADAnalyzer
from ._params import VADEvent, VADParams, VADState
from ._processor import VADProcessor
from ._silero import PreGate, SileroVADAnalyzer
from ._silero_model import SileroLane, SileroModel, silero_model_path
from ._volume import VolumeMeter, mean_square
from ._webrtc import WebRTCVADGate

__all__ = [
    "BatcherStats",
    "EnergyVADAnalyzer",
    "PreGate",
    "SileroBatcher",
    "SileroLane",
    "SileroModel",
    "SileroVADAnalyzer",
    "VADAnalyzer",
    "VADEvent",
    "VADListener",
    "VADParams",
    "VADProcessor",
    "VADState",
    "VolumeMeter",
    "WebRTCVADGate",
    "mean_square",
    "silero_model_path",
    "vad_executor",
]
