"""Function calling inside the LLM service: registry, execution, terminal states.

Rules (each one is tested in ``tests/test_services_functions.py``):

* Every call that was announced (``FunctionCallsStartedFrame``) ends with exactly one
  terminal frame: a ``FunctionCallResultFrame`` (the handler's result; an error result
  when no handler is registered, the arguments are not JSON, the handler raised, or
  the call ran past its timeout) or a ``FunctionCallCancelFrame`` (interruption,
  discarded generation, end of the call). Late results are ignored (pipecat #5779,
  #4300).
* Calls are bound to the LLM generation that produced them. An interruption or a
  discarded generation bumps the generation: calls of the old one that have not
  started never start (pipecat #4997); started ones registered with
  ``cancel_on_interruption=True`` are cancelled; the others (async tools) go on.
* ``run_in_parallel=True`` starts every call of a response at once; otherwise they
  run one after the other, in order, on one runner task.
* ``group_parallel_tools=True`` gives the calls of one response a ``group_id`` (on
  ``FunctionCallsStartedFrame`` and each ``FunctionCallInProgressFrame``): the assistant
  aggregator runs the LLM once, when the last call of the group settles. Without it each
  result runs the LLM.
* An async call (``cancel_on_interruption=False``) may report interim results
  (``properties=FunctionCallResultProperties(is_final=False)``): each is a
  ``FunctionCallInterimResultFrame``, never terminal; the call's deadline keeps running.
  An interim result from a cancellable call is refused (logged): the LLM waits for that
  call, so there is no one to tell.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..frames import (
    Frame,
    FunctionCallCancelFrame,
    FunctionCallFromLLM,
    FunctionCallInProgressFrame,
    FunctionCallInterimResultFrame,
    FunctionCallResultFrame,
    FunctionCallResultProperties,
    FunctionCallsStartedFrame,
    LLMContext,
)
from ._function_schema import FunctionSchema, function_schema

if TYPE_CHECKING:
    from ._llm import LLMService

__all__ = ["FunctionCallParams", "FunctionCallRegistryItem", "FunctionCalling"]

logger = logging.getLogger("flowcat.services.functions")

MISSING_FUNCTION_RESULT = "The function `{name}` is not currently available."
FUNCTION_ERROR_RESULT = "The function `{name}` failed and returned no result."
BAD_ARGUMENTS_RESULT = "The arguments of `{name}` were not valid JSON; call it again with valid arguments."
TIMEOUT_RESULT = "The function `{name}` timed out after {secs:g} s and returned no result."

INVALID_ARGUMENTS: dict[str, Any] = {}
"""The ``arguments`` of a call whose JSON did not parse (compared by identity; never mutated)."""


@dataclass
class FunctionCallParams:
    """What a tool handler receives.

    Attributes:
        function_name: The tool's name.
        tool_call_id: The model's id for this call.
        arguments: Parsed arguments.
        llm: The LLM service running the call.
        context: The context the model answered.
        result_callback: ``await params.result_callback(result, properties=None)`` reports
            the result (once; later calls are ignored). An async call may first report interim
            results with ``properties=FunctionCallResultProperties(is_final=False)``.
    """

    function_name: str
    tool_call_id: str
    arguments: dict[str, Any]
    llm: LLMService
    context: LLMContext | None
    result_callback: Callable[..., Awaitable[None]]


Handler = Callable[[FunctionCallParams], Awaitable[Any]]


@dataclass
class FunctionCallRegistryItem:
    """A registered tool: its handler and how it runs."""

    function_name: str | None
    handler: Handler
    cancel_on_interruption: bool = True
    timeout_secs: float | None = None
    direct: bool = False
    schema: FunctionSchema | None = None


class _Call:
    __slots__ = ("arguments", "context", "done", "function_name", "gen", "group_id", "item", "settled", "state",
                 "task", "tool_call_id")

    def __init__(self, fc: FunctionCallFromLLM, item: FunctionCallRegistryItem, gen: int,
                 group_id: str | None = None) -> None:
        self.function_name = fc.function_name
        self.tool_call_id = fc.tool_call_id
        self.arguments = fc.arguments
        self.context = fc.context
        self.item = item
        self.gen = gen
        self.group_id = group_id
        self.settled = False
        self.state = "pending"
        self.task: asyncio.Task[None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class FunctionCalling:
    """Mix-in of :class:`~flowcat.services.LLMService`: the tools and their execution."""

    if TYPE_CHECKING:
        _name: str

        def create_task(self, coro: Any, name: str | None = None, *,
                        cancel_on_interruption: bool = False) -> asyncio.Task[Any]: ...
        async def broadcast_frame(self, frame_cls: type[Any], **kwargs: Any) -> None: ...
        async def push_error(self, error_msg: str, exception: BaseException | None = None,
                             fatal: bool = False) -> None: ...
        async def _call_event_handler(self, event_name: str, *args: Any, **kwargs: Any) -> None: ...
        def _register_event_handler(self, event_name: str) -> None: ...

    def _init_functions(self, *, run_in_parallel: bool, function_call_timeout_secs: float | None,
                        group_parallel_tools: bool = True) -> None:
        self._functions: dict[str | None, FunctionCallRegistryItem] = {}
        self._run_in_parallel = run_in_parallel
        self._group_parallel_tools = group_parallel_tools
        self._groups = 0  # groups made so far (their ids: "<name>:<n>")
        self._function_call_timeout_secs = function_call_timeout_secs
        self._llm_generation = 0
        self._calls: dict[str, _Call] = {}
        self._seq_queue: deque[_Call] = deque()
        self._seq_wakeup: asyncio.Event | None = None
        self._seq_task: asyncio.Task[None] | None = None
        self._register_event_handler("on_function_calls_started")
        self._register_event_handler("on_function_calls_cancelled")

    # ------------------------------------------------------------ registry

    def register_function(
        self,
        function_name: str | None,
        handler: Handler,
        *,
        cancel_on_interruption: bool = True,
        timeout_secs: float | None = None,
    ) -> None:
        """Register ``handler(params)`` for ``function_name`` (None: for every unregistered name)."""
        self._functions[function_name] = FunctionCallRegistryItem(
            function_name, handler, cancel_on_interruption, timeout_secs
        )

    def register_direct_function(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        cancel_on_interruption: bool = True,
        timeout_secs: float | None = None,
    ) -> FunctionSchema:
        """Register ``async def fn(params, **args)``; its schema comes from its signature and docstring.

        The function may report through ``params.result_callback`` or simply return its result.

        Returns:
            The schema built (also offered to the model by :meth:`tool_schemas`).
        """
        schema = function_schema(fn, name)
        sig = inspect.signature(fn)
        first = next(iter(sig.parameters))

        async def invoke(params: FunctionCallParams) -> Any:
            kwargs = {k: v for k, v in params.arguments.items() if k in sig.parameters and k != first}
            return await fn(params, **kwargs)

        self._functions[schema.name] = FunctionCallRegistryItem(
            schema.name, invoke, cancel_on_interruption, timeout_secs, direct=True, schema=schema
        )
        return schema

    def unregister_function(self, function_name: str | None) -> None:
        """Forget a registered tool."""
        self._functions.pop(function_name, None)

    def has_function(self, function_name: str) -> bool:
        """Whether a handler would run for ``function_name``."""
        return function_name in self._functions or None in self._functions

    def tool_schemas(self) -> list[FunctionSchema]:
        """Schemas of the registered direct functions."""
        return [i.schema for i in self._functions.values() if i.schema is not None]

    # ----------------------------------------------------------- execution

    def discard_generation(self) -> None:
        """Forget the current generation's calls: those not started never will be."""
        self._llm_generation += 1

    def _function_interruption(self) -> None:
        self._llm_generation += 1
        # Call tasks made with cancel_on_interruption are also cancelled by the
        # scheduler; this covers processors driven without a task.
        for call in list(self._calls.values()):
            task = call.task
            if call.item.cancel_on_interruption and task is not None and not task.done():
                task.cancel()

    async def run_function_calls(self, function_calls: Sequence[FunctionCallFromLLM], generation: int) -> None:
        """Announce and start the calls a response asked for (in generation ``generation``)."""
        if not function_calls:
            return
        if generation != self._llm_generation:
            logger.debug("%s: dropping %d tool call(s) of a discarded generation", self._name,
                         len(function_calls))
            return
        group_id = None
        if self._group_parallel_tools:
            self._groups += 1
            group_id = f"{self._name}:{self._groups}"
        calls = [_Call(fc, self._resolve(fc), generation, group_id) for fc in function_calls]
        await self._call_event_handler("on_function_calls_started", list(function_calls))
        await self.broadcast_frame(FunctionCallsStartedFrame, function_calls=list(function_calls), group_id=group_id)
        for call in calls:
            self._calls[call.tool_call_id] = call
        if self._run_in_parallel:
            for call in calls:
                self._spawn(call)
        else:
            self._seq_queue.extend(calls)
            if self._seq_task is None or self._seq_task.done():
                self._seq_wakeup = asyncio.Event()
                self._seq_task = self.create_task(self._sequential_runner(), "function_calls")
            assert self._seq_wakeup is not None  # noqa: S101 - invariant (type narrowing), not input validation
            self._seq_wakeup.set()

    def _resolve(self, fc: FunctionCallFromLLM) -> FunctionCallRegistryItem:
        if fc.arguments is INVALID_ARGUMENTS:
            return FunctionCallRegistryItem(fc.function_name, _fixed(BAD_ARGUMENTS_RESULT))
        item = self._functions.get(fc.function_name) or self._functions.get(None)
        if item is None:
            logger.warning("%s: the model called %r, which has no handler", self._name, fc.function_name)
            return FunctionCallRegistryItem(fc.function_name, _fixed(MISSING_FUNCTION_RESULT))
        return item

    def _spawn(self, call: _Call) -> asyncio.Task[None]:
        task = self.create_task(
            self._run_call(call), f"function_call:{call.function_name}",
            cancel_on_interruption=call.item.cancel_on_interruption,
        )
        call.task = task
        task.add_done_callback(functools.partial(self._call_task_done, call))
        return task

    async def _sequential_runner(self) -> None:
        while True:
            while not self._seq_queue:
                assert self._seq_wakeup is not None  # noqa: S101 - invariant (type narrowing), not input validation
                self._seq_wakeup.clear()
                await self._seq_wakeup.wait()
            call = self._seq_queue.popleft()
            if call.gen != self._llm_generation:
                await self._settle_cancelled(call, "discarded generation")
                continue
            task = self._spawn(call)
            await asyncio.wait((task,))

    async def _run_call(self, call: _Call) -> None:
        if call.gen != self._llm_generation:
            await self._settle_cancelled(call, "discarded generation")
            return
        item = call.item
        await self.broadcast_frame(
            FunctionCallInProgressFrame,
            function_name=call.function_name,
            tool_call_id=call.tool_call_id,
            arguments=call.arguments,
            cancel_on_interruption=item.cancel_on_interruption,
            group_id=call.group_id,
        )

        async def result_callback(result: Any, *, properties: FunctionCallResultProperties | None = None) -> None:
            if properties is not None and not properties.is_final:
                await self._interim(call, result, properties)
                return
            if call.settled:
                logger.warning("%s: ignoring a late result for %s (%s)", self._name, call.function_name,
                               call.state)
                return
            await self._settle(call, "result", result, properties)

        params = FunctionCallParams(call.function_name, call.tool_call_id, dict(call.arguments or {}),
                                    self, call.context, result_callback)  # type: ignore[arg-type]
        timeout = item.timeout_secs or self._function_call_timeout_secs
        handle = None
        if timeout:
            handle = asyncio.get_running_loop().call_later(timeout, self._expire_call, call)
        try:
            ret = await item.handler(params)
            if not call.settled and item.direct and ret is not None:
                await self._settle(call, "result", ret, None)
            if not call.settled:
                await call.done  # a deferred result (or the deadline)
        except asyncio.CancelledError:
            if call.state != "timeout":
                raise
            # Settled by the deadline before the handler was cancelled, so nothing
            # it reports while unwinding is accepted.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            logger.warning("%s: %s timed out after %g s", self._name, call.function_name, timeout)
            await self._push_result(call, TIMEOUT_RESULT.format(name=call.function_name, secs=timeout or 0.0),
                                    FunctionCallResultProperties(run_llm=True))
        except Exception as exc:
            await self._handler_failed(call, exc)
        finally:
            if handle is not None:
                handle.cancel()

    async def _interim(self, call: _Call, result: Any, properties: FunctionCallResultProperties) -> None:
        if call.item.cancel_on_interruption:
            logger.warning("%s: interim result of %s refused: only an async call "
                           "(cancel_on_interruption=False) reports interim results", self._name, call.function_name)
            return
        if call.settled:
            logger.warning("%s: ignoring a late interim result for %s (%s)", self._name, call.function_name,
                           call.state)
            return
        await self._push_interim(call, result, properties)

    async def _push_interim(self, call: _Call, result: Any, properties: FunctionCallResultProperties) -> None:
        await self._broadcast_outcome(FunctionCallInterimResultFrame, call, result, properties)

    async def _broadcast_outcome(self, frame_type: type[Frame], call: _Call, result: Any,
                                 properties: FunctionCallResultProperties | None) -> None:
        """Send a call's (interim or final) result both ways."""
        await self.broadcast_frame(
            frame_type,
            function_name=call.function_name,
            tool_call_id=call.tool_call_id,
            arguments=call.arguments,
            result=result,
            run_llm=properties.run_llm if properties is not None else None,
            properties=properties,
        )

    def _expire_call(self, call: _Call) -> None:
        if call.settled:
            return
        call.settled = True
        call.state = "timeout"
        if not call.done.done():
            call.done.cancel()
        if call.task is not None and not call.task.done():
            call.task.cancel()

    async def _handler_failed(self, call: _Call, exc: Exception) -> None:
        logger.error("%s: function %s raised", self._name, call.function_name, exc_info=exc)
        await self.push_error(f"{self._name}: function {call.function_name} failed: {exc!r}", exception=exc)
        if not call.settled:
            await self._settle(call, "error", FUNCTION_ERROR_RESULT.format(name=call.function_name), None)

    async def _settle(self, call: _Call, state: str, result: Any,
                      properties: FunctionCallResultProperties | None) -> None:
        call.settled = True
        call.state = state
        if not call.done.done():
            call.done.set_result(None)
        await self._push_result(call, result, properties)

    async def _push_result(self, call: _Call, result: Any,
                           properties: FunctionCallResultProperties | None) -> None:
        await self._broadcast_outcome(FunctionCallResultFrame, call, result, properties)

    async def _settle_cancelled(self, call: _Call, why: str) -> None:
        if call.settled:
            return
        call.settled = True
        call.state = "cancelled"
        self._calls.pop(call.tool_call_id, None)
        logger.debug("%s: function call %s cancelled (%s)", self._name, call.function_name, why)
        await self.broadcast_frame(
            FunctionCallCancelFrame, function_name=call.function_name, tool_call_id=call.tool_call_id
        )
        await self._call_event_handler("on_function_calls_cancelled", [call.tool_call_id])

    async def cancel_function_calls(self, reason: str = "cancelled") -> None:
        """Cancel every call not yet settled, async ones too; each gets its terminal frame now."""
        self._seq_queue.clear()
        for call in list(self._calls.values()):
            if call.settled:
                continue
            if call.task is not None and not call.task.done():
                call.task.cancel()
            await self._settle_cancelled(call, reason)

    async def cancel_function_call(self, tool_call_id: str, reason: str = "cancelled") -> bool:
        """Cancel one call not yet settled (the provider withdrew it); False if none is running."""
        call = self._calls.get(tool_call_id)
        if call is None or call.settled:
            return False
        if call.task is not None and not call.task.done():
            call.task.cancel()
        await self._settle_cancelled(call, reason)
        return True

    def _call_task_done(self, call: _Call, task: asyncio.Task[None]) -> None:
        self._calls.pop(call.tool_call_id, None)
        # A cancelled task keeps its CancelledError, whose traceback holds ``_run_call``'s
        # frame, which holds the call: drop the call's link to the task (a cycle otherwise).
        call.task = None
        if not call.settled:
            # Cancelled (interruption, end of call) before it settled: the terminal frame.
            self.create_task(self._settle_cancelled(call, "cancelled"), "function_call_cancelled")

    @property
    def function_calls_in_progress(self) -> list[str]:
        """Tool call ids announced and not yet settled."""
        return list(self._calls)


def _fixed(template: str) -> Handler:
    async def handler(params: FunctionCallParams) -> None:
        await params.result_callback(template.format(name=params.function_name))

    return handler
