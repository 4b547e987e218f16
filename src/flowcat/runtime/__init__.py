"""The runtime: processors, pipelines, the per-call scheduler, tasks, the runner and the collector policy."""

from __future__ import annotations

from ._collector import CollectorPolicy as CollectorPolicy
from ._collector import CollectorStats as CollectorStats
from ._direction import FrameDirection as FrameDirection
from ._events import EventEmitter as EventEmitter
from ._idle import IdleFrameProcessor as IdleFrameProcessor
from ._observer import BaseObserver as BaseObserver
from ._observer import FramePushed as FramePushed
from ._parallel import ParallelPipeline as ParallelPipeline
from ._pipeline import Pipeline as Pipeline
from ._pipeline import PipelineSink as PipelineSink
from ._pipeline import PipelineSource as PipelineSource
from ._processor import FrameProcessor as FrameProcessor
from ._producer import ConsumerProcessor as ConsumerProcessor
from ._producer import ProducerProcessor as ProducerProcessor
from ._runner import PipelineRunner as PipelineRunner
from ._scheduler import CallScheduler as CallScheduler
from ._scheduler import SchedulerStats as SchedulerStats
from ._scheduler import current_generation as current_generation
from ._sync_parallel import FrameOrder as FrameOrder
from ._sync_parallel import SyncParallelPipeline as SyncParallelPipeline
from ._task import PipelineParams as PipelineParams
from ._task import PipelineTask as PipelineTask
from ._task import TaskStats as TaskStats
from ._turn_latency import StageStats as StageStats
from ._turn_latency import TurnLatencyObserver as TurnLatencyObserver
from ._turn_latency import TurnLatencySummary as TurnLatencySummary
from ._watchdog import LoopStall as LoopStall
from ._watchdog import LoopWatchdog as LoopWatchdog

__all__ = [
    "BaseObserver",
    "CallScheduler",
    "CollectorPolicy",
    "CollectorStats",
    "ConsumerProcessor",
    "EventEmitter",
    "FrameDirection",
    "FrameOrder",
    "FrameProcessor",
    "FramePushed",
    "IdleFrameProcessor",
    "LoopStall",
    "LoopWatchdog",
    "ParallelPipeline",
    "Pipeline",
    "PipelineParams",
    "PipelineRunner",
    "PipelineSink",
    "PipelineSource",
    "PipelineTask",
    "ProducerProcessor",
    "SchedulerStats",
    "StageStats",
    "SyncParallelPipeline",
    "TaskStats",
    "TurnLatencyObserver",
    "TurnLatencySummary",
    "current_generation",
]
