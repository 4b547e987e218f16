"""Run a coroutine synchronously when it does not suspend (the normal case).

The audio clock and the socket reader call async APIs (``serializer.serialize``,
``ws.send_bytes``) from plain callbacks. Those coroutines almost never suspend:
aiohttp writes an uncompressed frame to the transport before its only await
(the drain wait when the peer is slow). :func:`drive` steps the coroutine once;
if it finishes, no task is created. If it suspends, the rest runs in a task kept
alive until done, so nothing is lost and the caller never blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Pending", "drive", "pending_count"]

logger = logging.getLogger("flowcat.transports")

_background: set[asyncio.Task[Any]] = set()


class Pending:
    """Returned by :func:`drive` when the coroutine suspended and continues in a task."""

    __slots__ = ("task",)

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task


def drive(coro: Coroutine[Any, Any, Any], what: str = "") -> Any:
    """Step ``coro``: return its result if it completes without suspending.

    If it suspends, finish it in a background task and return a :class:`Pending`.
    An exception raised synchronously propagates to the caller.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value
    task = asyncio.get_running_loop().create_task(_finish(coro, yielded, what))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return Pending(task)


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any, what: str) -> Any:
    try:
        while True:
            try:
                if yielded is None:
                    await asyncio.sleep(0)
                else:
                    await yielded
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    coro.throw(asyncio.CancelledError())
                    raise
            except Exception:  # noqa: S110 - the coroutine sees the failure when resumed
                pass
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("background %s failed", what or "write")
        return None
    finally:
        coro.close()


def pending_count() -> int:
    """Coroutines that suspended and are still finishing (for tests and stats)."""
    return len(_background)
