"""flowcat: a dense, self-hosted runtime for real-time voice agents.

Layers, bottom up (a package each; a layer imports only from those below it; the
contract is ``[tool.importlinter]`` in pyproject.toml, checked by tests/test_layers.py)::

    errors       the one error hierarchy (importable from anywhere)
    _ratelimit   the rate-limited logger for bad input
    frames       typed frames (pipecat's names and semantics)
    runtime      FrameProcessor, Pipeline, ParallelPipeline, the per-call scheduler,
                 PipelineTask, PipelineRunner, observers, metrics
    audio        codecs, resampling, VAD, DTMF, recorder, mixer
    turns        turn-taking: start/stop strategies, smart-turn, mute, idle
    serializers  carrier wire formats (Twilio, Telnyx, Genesys, …)
    transports   transports (WebSocket, picows, AudioSocket), raw PCM and protobuf
    services     STT / LLM / TTS base classes and providers
    agent        context, aggregators, function calls, brains
    config       configuration schema and loading
    server       the HTTP/WebSocket server (``flowcat serve``)
    testing      test harness, virtual clock (may import any layer below cli)
    bench        benchmarks (may import any layer below cli)
    cli          the ``flowcat`` command

This module re-exports the everyday names: frames live in :mod:`flowcat.frames`.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .runtime import BaseObserver as BaseObserver
from .runtime import FrameDirection as FrameDirection
from .runtime import FrameProcessor as FrameProcessor
from .runtime import FramePushed as FramePushed
from .runtime import ParallelPipeline as ParallelPipeline
from .runtime import Pipeline as Pipeline
from .runtime import PipelineParams as PipelineParams
from .runtime import PipelineRunner as PipelineRunner
from .runtime import PipelineTask as PipelineTask
from .runtime import SyncParallelPipeline as SyncParallelPipeline

try:
    __version__ = _metadata.version("flowcat")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

__all__ = [
    "BaseObserver",
    "FrameDirection",
    "FrameProcessor",
    "FramePushed",
    "ParallelPipeline",
    "Pipeline",
    "PipelineParams",
    "PipelineRunner",
    "PipelineTask",
    "SyncParallelPipeline",
    "__version__",
]
