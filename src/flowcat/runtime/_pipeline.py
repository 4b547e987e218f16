"""Pipeline: a chain of processors that is itself a processor (so pipelines nest)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..frames import Frame
from ._direction import FrameDirection
from ._inline import NO_ROUTE
from ._processor import FrameProcessor

__all__ = ["Pipeline", "PipelineSink", "PipelineSource", "flatten_links", "unflatten_links"]

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

_Out = Callable[[Frame, FrameDirection], Awaitable[None]]


class PipelineSource(FrameProcessor):
    """Head of a pipeline: passes downstream frames in, upstream frames out."""

    # In the object, not an instance dict: one object less per call for the collector.
    __slots__ = ("_out", "_owner")

    def __init__(self, upstream: _Out, *, name: str | None = None, owner: Pipeline | None = None) -> None:
        super().__init__(name=name)
        self._out = upstream
        self._owner = owner

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is DOWNSTREAM:
            await self.push_frame(frame, direction)
        else:
            await self._out(frame, direction)

    def _detach(self) -> None:
        super()._detach()
        self._out = _nowhere  # a bound method of the owner: a cycle through it
        self._owner = None


class PipelineSink(FrameProcessor):
    """Tail of a pipeline: passes upstream frames in, downstream frames out."""

    __slots__ = ("_out", "_owner")

    def __init__(self, downstream: _Out, *, name: str | None = None, owner: Pipeline | None = None) -> None:
        super().__init__(name=name)
        self._out = downstream
        self._owner = owner

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is UPSTREAM:
            await self.push_frame(frame, direction)
        else:
            await self._out(frame, direction)

    def _detach(self) -> None:
        super()._detach()
        self._out = _nowhere
        self._owner = None


async def _nowhere(frame: Frame, direction: FrameDirection) -> None:
    """Where a detached pipeline edge passes frames: nowhere (the call is over)."""


class Pipeline(FrameProcessor):
    """Processors linked in order; frames flow through them by direct calls.

    Args:
        processors: The processors, input side first. A processor may itself be a
            :class:`Pipeline` or :class:`~flowcat.ParallelPipeline`.
        name: Optional name.
    """

    __slots__ = ("_processors", "_sink", "_source")

    def __init__(self, processors: Sequence[FrameProcessor], *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._processors = list(processors)
        self._source = PipelineSource(self._push_out, name=f"{self.name}::Source", owner=self)
        self._sink = PipelineSink(self._push_out, name=f"{self.name}::Sink", owner=self)
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


# ----------------------------------------------------------------- flattening
#
# Pipeline containers, their sources and their sinks only forward frames. A task
# without observers lets every processor deliver straight to the next processor
# that does work (``_down``/``_up``), so nesting pipelines costs nothing per frame.
# With observers the full chain is kept so every hop is seen, as in pipecat.


def _forwards(p: FrameProcessor, cls: type, method: str = "process_frame") -> bool:
    return type(p) is cls or getattr(type(p), method) is getattr(cls, method)


def _owner_forwards(p: PipelineSource | PipelineSink) -> bool:
    owner = p._owner
    return owner is not None and p._out == owner._push_out and "push_frame" not in vars(owner)


def _resolve_down(p: FrameProcessor | None) -> FrameProcessor | None:
    for _ in range(10_000):
        if p is None or p._gate is not None or "push_frame" in vars(p):
            return p
        if isinstance(p, Pipeline) and _forwards(p, Pipeline):
            p = p._source
        elif isinstance(p, PipelineSource) and _forwards(p, PipelineSource):
            p = p._next
        elif isinstance(p, PipelineSink) and _forwards(p, PipelineSink) and _owner_forwards(p):
            p = p._owner._next  # type: ignore[union-attr]
        else:
            return p
    return p


def _resolve_up(p: FrameProcessor | None) -> FrameProcessor | None:
    for _ in range(10_000):
        if p is None or p._gate is not None or "push_frame" in vars(p):
            return p
        if isinstance(p, Pipeline) and _forwards(p, Pipeline):
            p = p._sink
        elif isinstance(p, PipelineSink) and _forwards(p, PipelineSink):
            p = p._prev
        elif isinstance(p, PipelineSource) and _forwards(p, PipelineSource) and _owner_forwards(p):
            p = p._owner._prev  # type: ignore[union-attr]
        else:
            return p
    return p


def flatten_links(processors: Sequence[FrameProcessor]) -> None:
    """Point each processor's delivery past pure forwarders (see the comment above)."""
    for p in processors:
        p._down = _resolve_down(p._next)
        p._up = _resolve_up(p._prev)
        p._route = NO_ROUTE


def unflatten_links(processors: Sequence[FrameProcessor]) -> None:
    """Undo :func:`flatten_links` (deliver to the direct neighbours again)."""
    for p in processors:
        p._down = p._next
        p._up = p._prev
        p._route = NO_ROUTE
