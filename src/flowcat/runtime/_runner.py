"""PipelineRunner: runs many tasks in one process and ends them on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable

from ._task import PipelineTask

__all__ = ["PipelineRunner"]

logger = logging.getLogger("flowcat.runner")


class PipelineRunner:
    """Runs pipeline tasks until they finish.

    The first SIGINT/SIGTERM ends every task gracefully (an EndFrame each, bounded
    by the task's ``end_timeout_secs``); a second one cancels them.

    Args:
        name: Name for logs.
        handle_sigint: Install a SIGINT handler while running.
        handle_sigterm: Install a SIGTERM handler while running.
    """

    def __init__(
        self, *, name: str | None = None, handle_sigint: bool = True, handle_sigterm: bool = True
    ) -> None:
        self.name = name or "PipelineRunner"
        self._handle = [
            s for s, on in ((signal.SIGINT, handle_sigint), (signal.SIGTERM, handle_sigterm)) if on
        ]
        self._tasks: set[PipelineTask] = set()
        self._signals = 0
        self._installed = False
        self._signal_tasks: set[asyncio.Task[None]] = set()

    @property
    def tasks(self) -> frozenset[PipelineTask]:
        """Tasks running now."""
        return frozenset(self._tasks)

    async def run(self, task: PipelineTask) -> None:
        """Run ``task`` to completion (several ``run`` calls may be in flight at once)."""
        self._install()
        self._tasks.add(task)
        try:
            await task.run()
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._uninstall()

    async def run_all(self, tasks: Iterable[PipelineTask]) -> None:
        """Run several tasks concurrently and return when all have finished."""
        await asyncio.gather(*(self.run(t) for t in tasks))

    async def stop_when_done(self) -> None:
        """End every running task gracefully."""
        for task in list(self._tasks):
            if not task.has_finished():
                await task.stop_when_done()

    async def cancel(self) -> None:
        """Cancel every running task."""
        for task in list(self._tasks):
            await task.cancel()

    def _on_signal(self) -> None:
        self._signals += 1
        loop = asyncio.get_running_loop()
        if self._signals == 1:
            logger.warning("%s: signal received, ending %d task(s)", self.name, len(self._tasks))
            action = loop.create_task(self.stop_when_done())
        else:
            logger.warning("%s: second signal, cancelling %d task(s)", self.name, len(self._tasks))
            action = loop.create_task(self.cancel())
        self._signal_tasks.add(action)
        action.add_done_callback(self._signal_tasks.discard)

    def _install(self) -> None:
        if self._installed or not self._handle:
            return
        loop = asyncio.get_running_loop()
        try:
            for sig in self._handle:
                loop.add_signal_handler(sig, self._on_signal)
            self._installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            logger.debug("%s: signal handlers unavailable here", self.name)

    def _uninstall(self) -> None:
        if not self._installed:
            return
        loop = asyncio.get_running_loop()
        for sig in self._handle:
            loop.remove_signal_handler(sig)
        self._installed = False
