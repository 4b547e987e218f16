"""ProducerProcessor / ConsumerProcessor: copy chosen frames to other places in a pipeline.

A :class:`ProducerProcessor` hands each frame its ``filter`` accepts (after its
``transformer``) to every consumer; a :class:`ConsumerProcessor` placed
elsewhere (another branch of a parallel pipeline, say) pushes what it receives
from its producer, after its own ``transformer``, in its ``direction``. Both
pass their own frames on as usual (the producer drops the accepted frames when
``passthrough=False``).

Filters and transformers may be plain functions or coroutines (pipecat's are
coroutines). The hand-over is a per-consumer queue drained by a task owned by
the call, so the producer never waits for a consumer.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ..frames import CancelFrame, EndFrame, Frame, StartFrame
from ._direction import FrameDirection
from ._processor import FrameProcessor

__all__ = ["ConsumerProcessor", "ProducerProcessor", "identity_transformer"]


def identity_transformer(frame: Frame) -> Frame:
    """The default transformer: the frame itself."""
    return frame


async def _call(fn: Callable[[Frame], Any], frame: Frame) -> Any:
    result = fn(frame)
    if inspect.isawaitable(result):
        result = await result
    return result


class ProducerProcessor(FrameProcessor):
    """Hands the frames ``filter`` accepts to its consumers.

    Args:
        filter: ``frame -> bool`` (or a coroutine function): whether consumers get it.
        transformer: ``frame -> frame`` applied for each consumer. Default: identity.
        passthrough: Whether accepted frames also go on downstream. Default True.
        name: Optional name.
    """

    def __init__(
        self,
        *,
        filter: Callable[[Frame], Any],
        transformer: Callable[[Frame], Any] = identity_transformer,
        passthrough: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._filter = filter
        self._transformer = transformer
        self._passthrough = passthrough
        self._consumers: list[asyncio.Queue[Frame]] = []

    def add_consumer(self) -> asyncio.Queue[Frame]:
        """A new consumer's queue (what :class:`ConsumerProcessor` calls at start)."""
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        self._consumers.append(queue)
        return queue

    def remove_consumer(self, queue: asyncio.Queue[Frame]) -> None:
        """Stop handing frames to ``queue``."""
        if queue in self._consumers:
            self._consumers.remove(queue)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if await _call(self._filter, frame):
            for queue in self._consumers:
                queue.put_nowait(await _call(self._transformer, frame))
            if not self._passthrough:
                return
        await self.push_frame(frame, direction)


class ConsumerProcessor(FrameProcessor):
    """Pushes the frames its producer hands it, and passes its own frames on.

    Args:
        producer: The :class:`ProducerProcessor` to take frames from.
        transformer: ``frame -> frame`` (or a coroutine function). Default: identity.
        direction: Which way the received frames are pushed. Default downstream.
        name: Optional name.
    """

    def __init__(
        self,
        *,
        producer: ProducerProcessor,
        transformer: Callable[[Frame], Any] = identity_transformer,
        direction: FrameDirection = FrameDirection.DOWNSTREAM,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._producer = producer
        self._transformer = transformer
        self._direction = direction
        self._queue: asyncio.Queue[Frame] | None = None
        self._consumer_task: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            if self._consumer_task is None:
                self._queue = self._producer.add_consumer()
                self._consumer_task = self.create_task(self._consume(self._queue), "consume")
        elif isinstance(frame, EndFrame | CancelFrame):
            await self._stop_consuming()
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._stop_consuming()

    async def _stop_consuming(self) -> None:
        task, self._consumer_task = self._consumer_task, None
        if self._queue is not None:
            self._producer.remove_consumer(self._queue)
            self._queue = None
        if task is not None:
            await self.cancel_task(task)

    async def _consume(self, queue: asyncio.Queue[Frame]) -> None:
        while True:
            frame = await queue.get()
            # Through this processor's own process_frame, as pipecat's queue_frame does
            # (and, being handed to itself, not dropped as "from before" a later interruption).
            await self.queue_frame(await _call(self._transformer, frame), self._direction)
