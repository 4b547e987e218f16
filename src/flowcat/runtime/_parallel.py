"""ParallelPipeline: fan a frame out to several branches and merge their output.

* Every frame entering goes through each branch in turn (direct calls).
* Output is de-duplicated by frame id — a frame that passed through several
  branches unchanged leaves once. The memory of seen ids is bounded
  (``max_seen_ids``, oldest forgotten first); fan-out is synchronous, so copies of
  one frame arrive close together.
* Lifecycle frames (Start, End, Stop, Cancel) leave only when **every** branch
  has passed them; while a StartFrame is pending, other branch output is held
  and released right after it, so the StartFrame still comes first downstream.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..frames import CancelFrame, EndFrame, Frame, StartFrame, StopFrame
from ._direction import FrameDirection
from ._pipeline import Pipeline
from ._processor import FrameProcessor

__all__ = ["ParallelPipeline"]

DOWNSTREAM = FrameDirection.DOWNSTREAM
_LIFECYCLE = (StartFrame, EndFrame, StopFrame, CancelFrame)


class ParallelPipeline(FrameProcessor):
    """Runs branches side by side.

    Args:
        *branches: Each a list of processors (or a :class:`Pipeline`).
        max_seen_ids: Bound on the de-duplication memory.
        name: Optional name.
    """

    def __init__(
        self,
        *branches: Sequence[FrameProcessor] | Pipeline,
        max_seen_ids: int = 1024,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if not branches:
            raise ConfigError("ParallelPipeline needs at least one branch")
        self._branches: list[Pipeline] = []
        for i, branch in enumerate(branches):
            pipe = (
                branch if isinstance(branch, Pipeline) else Pipeline(list(branch), name=f"{self.name}[{i}]")
            )
            pipe._source._out = self._branch_out
            pipe._sink._out = self._branch_out
            pipe._parent = self
            self._branches.append(pipe)
        self._max_seen = max_seen_ids
        self._seen: dict[int, None] = {}
        self._pending: dict[int, int] = {}
        self._held: list[tuple[Frame, FrameDirection]] | None = None

    @property
    def processors(self) -> list[FrameProcessor]:
        """The branch pipelines."""
        return list(self._branches)

    @property
    def seen_ids(self) -> int:
        """How many frame ids the de-duplication memory holds now."""
        return len(self._seen)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if type(frame) is StartFrame and self._held is None:
            self._held = []
        for branch in self._branches:
            await branch.process_frame(frame, direction)

    async def _branch_out(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, _LIFECYCLE):
            count = self._pending.get(frame.id, 0) + 1
            if count < len(self._branches):
                self._pending[frame.id] = count
                return
            self._pending.pop(frame.id, None)
            await self.push_frame(frame, direction)
            if type(frame) is StartFrame and self._held is not None:
                held, self._held = self._held, None
                for f, d in held:
                    await self.push_frame(f, d)
            return
        seen = self._seen
        fid = frame.id
        if fid in seen:
            return
        seen[fid] = None
        if len(seen) > self._max_seen:
            del seen[next(iter(seen))]
        if self._held is not None:
            self._held.append((frame, direction))
            return
        await self.push_frame(frame, direction)
