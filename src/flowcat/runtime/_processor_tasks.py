"""Background work owned by a processor's call (a mix-in of :class:`FrameProcessor`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._scheduler import CallScheduler

__all__ = ["ProcessorTasks"]


class ProcessorTasks:
    """``create_task`` / ``cancel_task`` of :class:`~flowcat.FrameProcessor`."""

    __slots__ = ()

    if TYPE_CHECKING:
        _sched: CallScheduler | None
        _name: str

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any],
        name: str | None = None,
        *,
        cancel_on_interruption: bool = False,
        generation_bound: bool = True,
    ) -> asyncio.Task[Any]:
        """Start background work owned by the call.

        Args:
            coro: The coroutine to run.
            name: Task name for logs.
            cancel_on_interruption: Cancel it when the user interrupts (its later
                interruptible pushes are dropped either way).
            generation_bound: True (default): the task belongs to the current
                generation, and once the user interrupts, its interruptible pushes
                are dropped (stale output). False: it belongs to none and its pushes
                always go through, as do those of every task it starts — for a
                connection that outlives turns (a streaming STT's send and receive
                loops, whose transcripts are about the turn being spoken now).

        Returns:
            The task. The call cancels it when it ends.
        """
        sched = self._sched
        task_name = f"{self._name}::{name or getattr(coro, '__name__', 'task')}"
        if sched is None:
            return asyncio.get_running_loop().create_task(coro, name=task_name)
        return sched.create_task(
            coro, name=task_name, cancel_on_interruption=cancel_on_interruption, generation_bound=generation_bound
        )

    async def cancel_task(self, task: asyncio.Task[Any], timeout: float | None = 1.0) -> None:
        """Cancel ``task`` and wait for it, at most ``timeout`` s."""
        if task.done():
            return
        task.cancel()
        await asyncio.wait((task,), timeout=timeout)
