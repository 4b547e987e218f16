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
    ) -> asyncio.Task[Any]:
        """Start background work owned by the call.

        Args:
            coro: The coroutine to run.
            name: Task name for logs.
            cancel_on_interruption: Cancel it when the user interrupts (its later
                interruptible pushes are dropped either way).

        Returns:
            The task. The call cancels it when it ends.
        """
        sched = self._sched
        task_name = f"{self._name}::{name or getattr(coro, '__name__', 'task')}"
        if sched is None:
            return asyncio.get_running_loop().create_task(coro, name=task_name)
        return sched.create_task(coro, name=task_name, cancel_on_interruption=cancel_on_interruption)

    async def cancel_task(self, task: asyncio.Task[Any], timeout: float | None = 1.0) -> None:
        """Cancel ``task`` and wait for it, at most ``timeout`` s."""
        if task.done():
            return
        task.cancel()
        await asyncio.wait((task,), timeout=timeout)
