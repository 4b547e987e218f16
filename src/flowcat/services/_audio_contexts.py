"""Audio contexts for WebSocket TTS: route what a shared socket receives to the utterance it belongs to.

A WebSocket TTS sends text tagged with a context id and receives audio tagged the
same way, from a receive loop that outlives any one utterance. The provider opens a
context before sending, its receive loop :meth:`AudioContexts.put` s each item under
the id it carries, and ``run_tts`` yields :meth:`AudioContexts.items` until the
context is finished. Items for a context that was cancelled (interruption) or never
opened are dropped and counted, so audio of an interrupted utterance can never be
played (pipecat #754, #3077).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["AudioContexts"]

logger = logging.getLogger("flowcat.services.tts")

_END = object()


class AudioContexts:
    """Per-context queues of received items (audio chunks, word timestamps)."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self._cancelled: set[str] = set()
        self.stale_dropped = 0
        """Items dropped because their context was cancelled or unknown."""

    def open(self, context_id: str) -> None:
        """Start accepting items for ``context_id``."""
        self._cancelled.discard(context_id)
        self._queues[context_id] = asyncio.Queue()

    def is_open(self, context_id: str) -> bool:
        """Whether items for ``context_id`` are accepted."""
        return context_id in self._queues

    def put(self, context_id: str, item: Any) -> bool:
        """Queue ``item`` for its context; False (and dropped) when the context is not open."""
        q = self._queues.get(context_id)
        if q is None:
            self.stale_dropped += 1
            if context_id not in self._cancelled:
                logger.debug("dropping an item for unknown audio context %s", context_id)
            return False
        q.put_nowait(item)
        return True

    def finish(self, context_id: str) -> None:
        """The provider says the context is complete: :meth:`items` ends after what is queued."""
        q = self._queues.get(context_id)
        if q is not None:
            q.put_nowait(_END)

    def fail(self, context_id: str, exc: BaseException) -> None:
        """The context failed: :meth:`items` raises ``exc`` after what is queued."""
        q = self._queues.get(context_id)
        if q is not None:
            q.put_nowait(exc)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every open context (the socket dropped)."""
        for cid in list(self._queues):
            self.fail(cid, exc)

    def cancel(self, context_id: str) -> None:
        """Stop accepting items for ``context_id``; what is queued is dropped."""
        q = self._queues.pop(context_id, None)
        if q is not None:
            self.stale_dropped += q.qsize()
        self._cancelled.add(context_id)
        if len(self._cancelled) > 256:
            self._cancelled.clear()

    async def items(self, context_id: str) -> AsyncIterator[Any]:
        """Yield the context's items until it is finished; the context is closed afterwards."""
        q = self._queues.get(context_id)
        if q is None:
            return
        try:
            while True:
                item = await q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if self._queues.get(context_id) is q:
                del self._queues[context_id]
