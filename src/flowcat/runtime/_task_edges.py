"""The two ends of a :class:`~flowcat.PipelineTask`: the source its frames enter
from and the sink they leave by.

Frames the task only notes (activity for the idle timeout) end at either edge
inline; those it acts on (lifecycle, heartbeats, upstream task frames, errors)
or that a ``set_reached_*_filter`` type names go to the task's coroutine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..frames import (
    BotInterruptionFrame,
    CancelFrame,
    CancelTaskFrame,
    EndFrame,
    EndTaskFrame,
    ErrorFrame,
    Frame,
    HeartbeatFrame,
    InterruptionTaskFrame,
    StartFrame,
    StopFrame,
    StopTaskFrame,
)
from ._direction import FrameDirection
from ._processor import FrameProcessor

if TYPE_CHECKING:
    from ._task import PipelineTask

__all__ = ["TaskSink", "TaskSource"]

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

# Frames the task acts on when they reach its ends (never taken inline there).
_UPSTREAM_ACTS = (ErrorFrame, EndTaskFrame, StopTaskFrame, CancelTaskFrame, InterruptionTaskFrame, BotInterruptionFrame)
_DOWNSTREAM_ACTS = frozenset((HeartbeatFrame, StartFrame, EndFrame, StopFrame, CancelFrame))


class TaskSource(FrameProcessor):
    """The task's first processor: upstream frames end here."""

    # Upstream frames the task only notes (BotSpeakingFrame …) end here inline.
    inline_frames = (Frame,)
    __slots__ = ("_task",)

    def __init__(self, task: PipelineTask) -> None:
        super().__init__(name=f"{task.name}::Source")
        self._task = task

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        task = self._task
        reached = task._reached_up
        if (
            direction is not UPSTREAM
            or isinstance(frame, _UPSTREAM_ACTS)
            or (reached and isinstance(frame, reached))
        ):
            return NotImplemented
        task._note_activity(frame)
        return None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is UPSTREAM:
            await self._task._on_upstream(frame)
        else:
            await self.push_frame(frame, direction)

    def _detach(self) -> None:
        super()._detach()
        self._task = None  # type: ignore[assignment]


class TaskSink(FrameProcessor):
    """The task's last processor: downstream frames end here."""

    # Downstream frames the task only notes end here inline.
    inline_frames = (Frame,)
    __slots__ = ("_task",)

    def __init__(self, task: PipelineTask) -> None:
        super().__init__(name=f"{task.name}::Sink")
        self._task = task

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        task = self._task
        reached = task._reached_down
        if (
            direction is not DOWNSTREAM
            or frame.__class__ in _DOWNSTREAM_ACTS
            or (reached and isinstance(frame, reached))
        ):
            return NotImplemented
        task._note_activity(frame)
        return None

    @property
    def wants_sent_audio(self) -> bool:
        task = self._task
        return bool(task._observers) or bool(task._reached_down)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM:
            await self._task._on_downstream(frame)
        else:
            await self.push_frame(frame, direction)

    def _detach(self) -> None:
        super()._detach()
        self._task = None  # type: ignore[assignment]
