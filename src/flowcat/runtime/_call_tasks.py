"""The tasks one call owns: suspended chains, background work, lifecycle hooks.

* **Chains.** A chain runs in one of the call's two slots (system, data). It is
  stepped synchronously (``coro.send``); only when it suspends (a processor
  awaited something) does the call get a task, which resumes the chain after
  each await and keeps :attr:`CallTasks.executing` exact. A slot whose task is
  cancelled passes the cancellation into its chain.
* **Background work** started with :meth:`CallTasks.create_task` is bound to the
  interruption generation it was created in (:func:`current_generation` returns
  it inside the task), so that interruptions can cancel it and drop what it
  pushes late. A task that fails is logged.
* **Lifecycle hooks** run inline in the chain, bounded by
  :attr:`CallTasks.hook_timeout`; :meth:`CallTasks.stuck_processors` names the
  processors a suspended chain is waiting in.

:class:`~flowcat.runtime.CallScheduler` builds on this: its lanes decide when a
chain may start, and interruptions and cancels act on these slots and tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import PipelineTimeoutError
from ..frames import Frame
from ._direction import FrameDirection
from ._inline import NO_ROUTE, push_inline

if TYPE_CHECKING:
    from collections import deque

    from ._processor import FrameProcessor
    from ._scheduler import SchedulerStats

__all__ = ["CallTasks", "current_generation"]

logger = logging.getLogger("flowcat.scheduler")

_generation_var: contextvars.ContextVar[int] = contextvars.ContextVar("flowcat_generation", default=-1)


UNBOUND = -2
"""Generation of a call-owned task bound to none (a connection's receive loop): its pushes
outlive interruptions."""


def current_generation() -> int:
    """Generation of the call-owned task running now: -1 outside such a task, ``UNBOUND`` (-2)
    in a task bound to no generation."""
    return _generation_var.get()


class _Slot:
    __slots__ = ("coro", "frame", "name", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.coro: Coroutine[Any, Any, None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.frame: Frame | None = None


class CallTasks:
    """Chain slots, background tasks and bounded hooks of one call.

    The base of :class:`~flowcat.runtime.CallScheduler`, which provides
    ``stats`` and the lanes (``_sys``, ``_closed``, ``_pump``) run when a slot frees.

    Args:
        name: Name used in logs.
        hook_timeout: Bound (s) on each processor lifecycle hook.
    """

    if TYPE_CHECKING:
        _chains: int

        @property
        def stats(self) -> SchedulerStats: ...
        _sys: deque[Any]
        _closed: bool

        def _pump(self) -> None: ...

    def __init__(self, name: str, *, hook_timeout: float = 10.0) -> None:
        self.name = name
        self.executing = False
        """True while chain code is on the stack (pushes then go direct)."""
        self.generation = 0
        """Interruption generation; bumped by every interruption."""
        self.hook_timeout = hook_timeout
        self.on_hook_timeout: Any = None
        """Optional callback ``(processor, hook_name, timeout)``."""
        self._sys_slot = _Slot("system")
        self._data_slot = _Slot("data")
        self._current: _Slot | None = None
        self._tasks: dict[asyncio.Task[Any], tuple[int, bool]] = {}
        self.routed: list[FrameProcessor] = []
        """Processors holding inline routes (see :mod:`flowcat.runtime._inline`)."""

    def forget_routes(self) -> None:
        """Drop every kept inline route (a processor paused or resumed)."""
        for proc in self.routed:
            proc._route = NO_ROUTE
        self.routed.clear()

    def detach(self) -> None:
        """The call is over: drop the references to its processors (kept routes, hook
        callback, what the slots held), so that nothing ties them into a cycle."""
        self.forget_routes()
        self.on_hook_timeout = None
        for slot in (self._sys_slot, self._data_slot):
            slot.coro = slot.task = slot.frame = None
        self._current = None

    # ---------------------------------------------------------------- chains

    def _start(
        self, slot: _Slot, proc: FrameProcessor, frame: Frame, direction: FrameDirection, to_self: bool
    ) -> None:
        self._chains += 1
        if to_self:
            coro = proc._receive(frame, direction)
        elif proc._plain_push:
            # Inline processors take the frame right here; a coroutine is made
            # only for the first one that is not inline (None: consumed inline).
            prev = self._current
            self._current = slot
            self.executing = True
            try:
                inl = push_inline(proc, frame, direction)
            except BaseException:
                logger.exception("%s: chain for %s raised", self.name, frame)
                return
            finally:
                self.executing = False
                self._current = prev
            if inl is None:
                return
            coro = inl
        else:
            coro = proc.push_frame(frame, direction)
        self._step(slot, coro, frame)

    def _step(self, slot: _Slot, coro: Coroutine[Any, Any, None], frame: Frame) -> None:
        """Run a new chain's coroutine in ``slot`` until it ends or first suspends."""
        prev = self._current
        self._current = slot
        self.executing = True
        try:
            slot.coro = coro
            slot.frame = frame
            yielded = coro.send(None)
        except StopIteration:
            slot.coro = None
            slot.frame = None
            return
        except BaseException:
            slot.coro = None
            slot.frame = None
            logger.exception("%s: chain for %s raised", self.name, frame)
            return
        finally:
            self.executing = False
            self._current = prev
        self.stats.suspensions += 1
        task = asyncio.get_running_loop().create_task(self._continue(slot, coro, yielded))
        slot.task = task
        task.add_done_callback(functools.partial(self._chain_done, slot, coro))

    async def _continue(self, slot: _Slot, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        """Finish a suspended chain in a call-owned task, keeping ``executing`` exact."""
        task = asyncio.current_task()
        while True:
            throw = False
            try:
                if yielded is None:
                    await asyncio.sleep(0)
                else:
                    # The chain already marked the future as blocking when it yielded it
                    # to us; clear the mark so that we may await it on its behalf.
                    yielded._asyncio_future_blocking = False
                    await yielded
            except asyncio.CancelledError:
                # Our task was cancelled (interruption or cancel): pass it into the chain.
                throw = task is not None and task.cancelling() > 0
            except Exception:  # noqa: S110 - the chain sees the failure when resumed
                pass
            self._current = slot
            self.executing = True
            try:
                if throw:
                    if task is not None:
                        task.uncancel()
                    yielded = coro.throw(asyncio.CancelledError())
                else:
                    yielded = coro.send(None)
            except (StopIteration, asyncio.CancelledError):
                return
            except BaseException:
                logger.exception("%s: chain for %s raised", self.name, slot.frame)
                return
            finally:
                self.executing = False
                self._current = None
            # Suspended again: let waiting system frames run meanwhile.
            if self._sys and not self._closed:
                self._pump()

    def _chain_done(self, slot: _Slot, coro: Coroutine[Any, Any, None], task: asyncio.Task[None]) -> None:
        """Release a slot whose continuation ended (also when cancelled before it started)."""
        if getattr(coro, "cr_frame", None) is not None and not getattr(coro, "cr_running", False):
            # Cancelled before the continuation ran: deliver the cancellation to the chain.
            self.executing = True
            try:
                coro.throw(asyncio.CancelledError())
            except BaseException:  # noqa: S110 - chain ended (normally by CancelledError)
                pass
            finally:
                self.executing = False
            try:
                coro.close()
            except RuntimeError:  # the chain swallowed GeneratorExit: nothing more we can do
                logger.error("%s: chain for %s ignored cancellation", self.name, slot.frame)
        if slot.task is task:
            slot.coro = None
            slot.task = None
            slot.frame = None
        if not self._closed:
            self._pump()

    # ------------------------------------------------------ background tasks

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        cancel_on_interruption: bool = False,
        generation_bound: bool = True,
    ) -> asyncio.Task[Any]:
        """Start background work owned by this call, bound to the current generation
        (unless ``generation_bound`` is False, or it is started from an unbound task:
        see :meth:`flowcat.FrameProcessor.create_task`)."""
        ctx = contextvars.copy_context()
        unbound = not generation_bound or _generation_var.get() == UNBOUND
        gen = UNBOUND if unbound else self.generation
        ctx.run(_generation_var.set, gen)
        task = asyncio.get_running_loop().create_task(coro, name=name, context=ctx)
        self._tasks[task] = (gen, cancel_on_interruption)
        self.stats.background_tasks += 1
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                logger.error("%s: background task %s failed", self.name, task.get_name(), exc_info=exc)

    def task_count(self) -> int:
        """Background tasks still running."""
        return len(self._tasks)

    async def cancel_tasks(self, timeout: float) -> list[str]:
        """Cancel every call-owned task; wait at most ``timeout`` s. Returns the stragglers' names."""
        tasks = [t for t in self._tasks if not t.done()]
        for slot in (self._data_slot, self._sys_slot):
            if slot.task is not None and slot.task is not asyncio.current_task():
                tasks.append(slot.task)
        for t in tasks:
            t.cancel()
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return [t.get_name() for t in pending]

    # ------------------------------------------------------------ lifecycle

    async def run_hook(self, proc: FrameProcessor, hook: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a processor lifecycle hook inside the chain, bounded by :attr:`hook_timeout`.

        The hook runs inline (frames it pushes stay in the chain, in order). If it
        overruns, the chain's task is cancelled at the hook's await point and a
        :class:`~flowcat.errors.PipelineTimeoutError` naming the processor is raised.
        """
        slot = self._current
        expired = False

        def expire() -> None:
            nonlocal expired
            task = slot.task if slot is not None else None
            if task is not None and not task.done():
                expired = True
                task.cancel()

        handle = asyncio.get_running_loop().call_later(self.hook_timeout, expire)
        try:
            await coro
        except asyncio.CancelledError:
            if not expired:
                raise
            self.stats.hook_timeouts += 1
            err = PipelineTimeoutError(f"{proc}.{hook}()", self.hook_timeout)
            logger.error("%s: %s", self.name, err)
            if self.on_hook_timeout is not None:
                self.on_hook_timeout(proc, hook, self.hook_timeout)
            raise err from None
        finally:
            handle.cancel()

    def stuck_processors(self) -> list[str]:
        """Names of processors whose ``process_frame`` a suspended chain is waiting in."""
        from ._processor import FrameProcessor

        names: list[str] = []
        for slot in (self._sys_slot, self._data_slot):
            coro: Any = slot.coro
            deepest = None
            while coro is not None:
                frame = getattr(coro, "cr_frame", None)
                if frame is not None:
                    owner = frame.f_locals.get("self")
                    if isinstance(owner, FrameProcessor):
                        deepest = owner
                coro = getattr(coro, "cr_await", None)
            if deepest is not None:
                names.append(deepest.name)
        return names
