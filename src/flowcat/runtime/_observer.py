"""Opt-in observers: they see frames pushed between processors.

With no observer attached a pipeline pays nothing: the task installs an observing
``push_frame`` on each processor only when observers exist. An observer may narrow
what it sees with ``frame_types``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..frames import Frame
from ._direction import FrameDirection

if TYPE_CHECKING:
    import asyncio

    from ._processor import FrameProcessor

__all__ = ["BaseObserver", "FramePushed", "install_observers"]

DOWNSTREAM = FrameDirection.DOWNSTREAM


@dataclass(slots=True)
class FramePushed:
    """One push between two processors.

    Attributes:
        source: The pushing processor.
        destination: The receiving processor.
        frame: The frame.
        direction: Its direction.
        timestamp: Loop time of the push, nanoseconds.
    """

    source: FrameProcessor
    destination: FrameProcessor
    frame: Frame
    direction: FrameDirection
    timestamp: int


class BaseObserver:
    """Base class for observers.

    Attributes:
        frame_types: If set, only pushes of frames of these types are reported.
    """

    frame_types: tuple[type[Frame], ...] | None = None

    async def on_push_frame(self, data: FramePushed) -> None:
        """Called for every push (of ``frame_types``, if set)."""

    async def on_pipeline_started(self) -> None:
        """Called once the StartFrame has reached the end of the pipeline."""

    async def on_pipeline_finished(self, frame: Any) -> None:
        """Called when the task finishes (with the End/Cancel/Stop frame)."""


def install_observers(
    proc: FrameProcessor, observers: list[BaseObserver], loop: asyncio.AbstractEventLoop
) -> None:
    """Give ``proc`` an observing ``push_frame`` (only done when observers exist)."""
    cls_push = type(proc).push_frame
    inner = proc.__dict__.get("push_frame")  # e.g. push-event hooks installed before

    async def push_frame(frame: Frame, direction: FrameDirection = DOWNSTREAM) -> None:
        sched = proc._sched
        if sched is None or sched.executing:
            dst = proc._next if direction is DOWNSTREAM else proc._prev
            if dst is not None:
                data = FramePushed(proc, dst, frame, direction, int(loop.time() * 1e9))
                for obs in observers:
                    types = obs.frame_types
                    if types is None or isinstance(frame, types):
                        await obs.on_push_frame(data)
        await (cls_push(proc, frame, direction) if inner is None else inner(frame, direction))

    proc.push_frame = push_frame  # type: ignore[method-assign]
