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
    from ._processor import FrameProcessor

__all__ = ["BaseObserver", "FramePushed"]


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
