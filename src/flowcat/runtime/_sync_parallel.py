"""SyncParallelPipeline: branches whose output for one frame leaves together.

Like :class:`~flowcat.ParallelPipeline`, every frame goes through each branch
and output is de-duplicated by frame id. In addition, for a data or control
frame (not a lifecycle frame), what the branches produce while handling it is
held and released in one go once the last branch is done with it — e.g. an
image and the audio describing it leave back to back. System frames, lifecycle
frames (Start, End, Stop, Cancel) and anything a branch pushes later from a
background task pass straight on, as in pipecat (whose branches must be
synchronous for the same reason).

Output order: ``FrameOrder.ARRIVAL`` (default) keeps the order frames came out
of the branches; ``FrameOrder.PIPELINE`` releases the first branch's output,
then the second's, and so on. Branches run one after another here (direct
calls), so the two differ only when a branch suspends.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from ..frames import SYSTEM, CancelFrame, EndFrame, Frame, StartFrame, StopFrame
from ._direction import FrameDirection
from ._parallel import ParallelPipeline
from ._pipeline import Pipeline
from ._processor import FrameProcessor

__all__ = ["FrameOrder", "SyncParallelPipeline"]

_LIFECYCLE = (StartFrame, EndFrame, StopFrame, CancelFrame)


class FrameOrder(Enum):
    """The order a :class:`SyncParallelPipeline` releases held output in."""

    ARRIVAL = "arrival"
    """As the frames came out of the branches."""
    PIPELINE = "pipeline"
    """The first branch's frames, then the second's, …"""


class SyncParallelPipeline(ParallelPipeline):
    """Runs branches side by side and releases their output for each frame together.

    Args:
        *branches: Each a list of processors (or a :class:`~flowcat.Pipeline`).
        frame_order: Order of the released output (see :class:`FrameOrder`).
        max_seen_ids: Bound on the de-duplication memory.
        name: Optional name.
    """

    def __init__(
        self,
        *branches: Sequence[FrameProcessor] | Pipeline,
        frame_order: FrameOrder = FrameOrder.ARRIVAL,
        max_seen_ids: int = 1024,
        name: str | None = None,
    ) -> None:
        super().__init__(*branches, max_seen_ids=max_seen_ids, name=name)
        self._frame_order = frame_order
        # While a frame is fanned out: (branch index, frame, direction) of the output.
        self._batch: list[tuple[int, Frame, FrameDirection]] | None = None
        self._branch_index = 0

    @property
    def frame_order(self) -> FrameOrder:
        """The order held output is released in."""
        return self._frame_order

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if frame.kind == SYSTEM or isinstance(frame, _LIFECYCLE) or self._batch is not None:
            await super().process_frame(frame, direction)
            return
        batch: list[tuple[int, Frame, FrameDirection]] = []
        self._batch = batch
        try:
            for i, branch in enumerate(self._branches):
                self._branch_index = i
                await branch.process_frame(frame, direction)
        finally:
            self._batch = None
        if self._frame_order is FrameOrder.PIPELINE:
            batch.sort(key=lambda entry: entry[0])  # stable: arrival order within a branch
        for _, out, out_dir in batch:
            await self.push_frame(out, out_dir)

    async def _branch_out(self, frame: Frame, direction: FrameDirection) -> None:
        batch = self._batch
        if batch is None or frame.kind == SYSTEM or isinstance(frame, _LIFECYCLE):
            await super()._branch_out(frame, direction)
            return
        fid = frame.id
        if any(held.id == fid for _, held, _ in batch):
            return  # the same frame out of another branch
        batch.append((self._branch_index, frame, direction))  # held until every branch is done
