"""Pipeline: a chain of processors that is itself a processor (so pipelines nest)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..frames import Frame
from ._direction import FrameDirection
from ._processor import FrameProcessor

__all__ = ["Pipeline", "PipelineSink", "PipelineSource"]

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

_Out = Callable[[Frame, FrameDirection], Awaitable[None]]


class PipelineSource(FrameProcessor):
    """Head of a pipeline: passes downstream frames in, upstream frames out."""

    def __init__(self, upstream: _Out, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._out = upstream

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM:
            await self.push_frame(frame, direction)
        else:
            await self._out(frame, direction)


class PipelineSink(FrameProcessor):
    """Tail of a pipeline: passes upstream frames in, downstream frames out."""

    def __init__(self, downstream: _Out, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._out = downstream

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is UPSTREAM:
            await self.push_frame(frame, direction)
        else:
            await self._out(frame, direction)


class Pipeline(FrameProcessor):
    """Processors linked in order; frames flow through them by direct calls.

    Args:
        processors: The processors, input side first. A processor may itself be a
            :class:`Pipeline` or :class:`~flowcat.ParallelPipeline`.
        name: Optional name.
    """

    def __init__(self, processors: Sequence[FrameProcessor], *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._processors = list(processors)
        self._source = PipelineSource(self._push_out, name=f"{self.name}::Source")
        self._sink = PipelineSink(self._push_out, name=f"{self.name}::Sink")
        chain: list[FrameProcessor] = [self._source, *self._processors, self._sink]
        for a, b in zip(chain, chain[1:], strict=False):
            a.link(b)
        for p in self._processors:
            p._parent = self

    @property
    def processors(self) -> list[FrameProcessor]:
        """Internal source, the user's processors, internal sink."""
        return [self._source, *self._processors, self._sink]

    @property
    def user_processors(self) -> list[FrameProcessor]:
        """The processors given to the constructor."""
        return list(self._processors)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM:
            await self._source.process_frame(frame, direction)
        else:
            await self._sink.process_frame(frame, direction)

    async def _push_out(self, frame: Frame, direction: FrameDirection) -> None:
        await self.push_frame(frame, direction)
