"""flowcat: a dense, self-hosted runtime for real-time voice agents.

Layers, bottom up (a package each; a layer imports only from those below it)::

    frames      typed frames (pipecat's names and semantics)
    runtime     FrameProcessor, Pipeline, ParallelPipeline, the per-call scheduler,
                PipelineTask, PipelineRunner, observers, metrics
    audio       codecs, resampling, VAD, DTMF, recorder, mixer
    transports  WebSocket transports and carrier serializers
    services    STT / LLM / TTS providers
    agent       agent logic on top of services
    server/cli  the ``flowcat`` command

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
    "__version__",
]
