"""FrameProcessor: the unit of a pipeline.

Subclasses override :meth:`FrameProcessor.process_frame`, call ``super()`` first,
and :meth:`~FrameProcessor.push_frame` whatever they want to pass on — exactly
as in pipecat. The difference is underneath: ``push_frame`` calls the next
processor's ``process_frame`` directly (no queue, no task per processor). Code
outside the running chain (a background task, a timer) may call ``push_frame``
too: the call's scheduler then queues the frame and runs it as a new chain,
never re-entrantly into a running one.

Rules for processor authors:

* Do not await I/O inside ``process_frame``. Start it with :meth:`create_task`
  (owned by the call, optionally cancelled by interruptions) and push results
  from there.
* Lifecycle hooks :meth:`start`, :meth:`stop`, :meth:`cancel`,
  :meth:`on_interruption` may await; each call is bounded by the task's
  ``hook_timeout_secs`` and an overrun is reported with the processor's name.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections import deque
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import PipelineStateError
from ..frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    FatalErrorFrame,
    Frame,
    FrameProcessorPauseUrgentFrame,
    FrameProcessorResumeUrgentFrame,
    InterruptionFrame,
    StartFrame,
)
from ._code import clone_function, clone_of
from ._direction import FrameDirection
from ._inline import LIFECYCLE_FRAMES, NO_ROUTE, Route, learn_inline
from ._metrics import ProcessorMetrics
from ._processor_hooks import FrameEvents, gate_when_running, receive_slow
from ._processor_tasks import ProcessorTasks

if TYPE_CHECKING:

    from ._scheduler import CallScheduler

__all__ = ["FrameProcessor"]

logger = logging.getLogger("flowcat.processor")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

_processor_ids = itertools.count(1).__next__


class FrameProcessor(FrameEvents, ProcessorMetrics, ProcessorTasks):
    """Base class of every processor.

    Args:
        name: Name for logs and metrics (default ``ClassName#n``).
    """

    # The attributes every hop touches live in the object itself (one memory
    # access instead of two with thousands of calls' processors out of cache);
    # subclasses keep a normal ``__dict__`` for their own attributes.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_cancelled",
        "_down",
        "_gate",  # None, or: paused (a deque of held frames), or has process-event handlers
        "_id",
        "_inline",
        "_name",
        "_next",
        "_parent",
        "_prev",
        "_plain_push",
        "_route",
        "_sched",
        "_start_frame",
        "_started",
        "_up",
    )

    inline_frames: ClassVar[tuple[type[Frame], ...]] = ()
    """Frame types handled by :meth:`process_inline` instead of :meth:`process_frame`
    (lifecycle frames excepted); see :mod:`flowcat.runtime._inline`."""

    def __init__(self, *, name: str | None = None, **kwargs: Any) -> None:
        self._id = _processor_ids()
        # Per-class table: frame class -> delivered inline? (None: no inline frames)
        self._inline: dict[type[Frame], bool] | None = type(self)._inline_table
        # Whether push_frame is the plain one (no observer, no override): set by the
        # task; inline delivery then goes on past this processor without calling it.
        self._plain_push = False
        # The downstream route through the inline processors after this one for the
        # frame class it pushed last (see flowcat.runtime._inline).
        self._route: Route = NO_ROUTE
        self._name = name or f"{type(self).__name__}#{self._id}"
        self._prev: FrameProcessor | None = None
        self._next: FrameProcessor | None = None
        # Where push_frame delivers: the neighbours, or (once a task flattened the
        # pipeline) the nearest processor past pure forwarders (pipeline edges).
        self._down: FrameProcessor | None = None
        self._up: FrameProcessor | None = None
        self._parent: FrameProcessor | None = None
        self._sched: CallScheduler | None = None
        self._gate: Any = None  # None | deque[tuple[Frame, FrameDirection]] | HOOKED
        self._cancelled = False
        self._started = False
        self._start_frame: StartFrame | None = None
        ProcessorMetrics.__init__(self)

    # ------------------------------------------------------------- identity

    @property
    def id(self) -> int:
        """Process-unique processor id."""
        return self._id

    @property
    def name(self) -> str:
        """The processor's name."""
        return self._name

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name}>"

    @property
    def wants_sent_audio(self) -> bool:
        """Whether an output transport right before this processor pushes each chunk
        it sent on to it (asked once, at start). True for every processor; the task's
        own sink says no unless an event handler or observer looks at what reaches it."""
        return True

    @property
    def next(self) -> FrameProcessor | None:
        """The downstream neighbour."""
        return self._next

    @property
    def previous(self) -> FrameProcessor | None:
        """The upstream neighbour."""
        return self._prev

    @property
    def started(self) -> bool:
        """Whether the StartFrame has reached this processor."""
        return self._started

    @property
    def start_frame(self) -> StartFrame | None:
        """The StartFrame this processor received (its parameters), if any."""
        return self._start_frame

    @property
    def processors(self) -> list[FrameProcessor]:
        """Child processors (containers override)."""
        return []

    def walk(self) -> Iterator[FrameProcessor]:
        """This processor and every processor nested in it, depth first."""
        yield self
        for child in self.processors:
            yield from child.walk()

    def link(self, processor: FrameProcessor) -> FrameProcessor:
        """Make ``processor`` the downstream neighbour. Returns it, for chaining."""
        self._next = self._down = processor
        processor._prev = processor._up = self
        if self._sched is not None:
            self._sched.forget_routes()
        return processor

    def _attach(self, sched: CallScheduler | None) -> None:
        """Bind to a call's scheduler (done by the task for every processor)."""
        self._sched = sched

    def _detach(self) -> None:
        """The call is over: drop every reference that ties this processor to the call's
        other objects — its links, parent, scheduler, kept route, held frames and event
        handlers — so that the call is freed by reference counting, not left to the
        cycle collector. Done by the task once ``cleanup()`` ran; a subclass that keeps
        a reference back to its owner (a transport, a pipeline, the task) drops it here
        too (and calls ``super()``)."""
        self._prev = self._next = self._down = self._up = self._parent = None
        self._sched = None
        self._route = NO_ROUTE
        self._gate = None
        # An observing or hooked push_frame (a closure over this processor).
        self.__dict__.pop("push_frame", None)
        self.__dict__.pop("_push_hooked", None)
        self._clear_event_handlers()

    # ----------------------------------------------------------- the chain

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Handle one frame. Override, call ``super()`` first, push what passes on.

        The base implementation runs lifecycle bookkeeping for Start, End, Cancel,
        interruption and pause/resume frames; for any other frame it does nothing.
        """
        handler = _LIFECYCLE.get(frame.__class__)
        if handler is not None:
            await handler(self, frame)

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        """Handle a frame of an ``inline_frames`` type synchronously.

        Return the frame to pass on (in ``direction``), None to stop it here, or
        ``NotImplemented`` to have :meth:`process_frame` handle it. Must not block.
        """
        return NotImplemented

    _inline_table: ClassVar[dict[type[Frame], bool] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "process_frame" in own and "process_inline" not in own and "inline_frames" not in own:
            # Its own process_frame must see every frame: no inherited inline frames.
            cls.inline_frames = ()
        cls._inline_table = {} if cls.inline_frames else None
        if "push_frame" not in cls.__dict__ and clone_of(cls.push_frame) is FrameProcessor.push_frame:
            # Each class gets its own copy of push_frame's code: the interpreter's
            # attribute caches are per code object, and with one copy shared by
            # every processor class the reads of ``self``'s slots on the hot path
            # see many types and fall back to the generic (slow) lookup.
            cls.push_frame = clone_function(FrameProcessor.push_frame)  # type: ignore[method-assign]

    async def push_frame(self, frame: Frame, direction: FrameDirection = DOWNSTREAM) -> None:
        """Send ``frame`` to the neighbour in ``direction``.

        Inside the running chain this is a direct call. From anywhere else the
        call's scheduler queues the frame (system frames ahead of data) and runs it
        as soon as no chain holds its slot.
        """
        sched = self._sched
        if sched is not None and not sched.executing:
            await sched.enter(self, frame, direction)
            return
        down = direction is DOWNSTREAM
        nxt = self._down if down else self._up
        cls = frame.__class__
        while nxt is not None:
            if nxt._gate is not None:  # paused, or has process-event handlers
                await nxt._receive(frame, direction)
                return
            table = nxt._inline
            if table is not None:
                ok = table.get(cls)
                if ok or (ok is None and learn_inline(nxt, cls)):
                    try:
                        out = nxt.process_inline(frame, direction)
                    except Exception as exc:
                        await nxt._on_exception(frame, exc)
                        return
                    if out is not NotImplemented:
                        if out is None:
                            return
                        if not nxt._plain_push:  # observed or overridden: its own push
                            await nxt.push_frame(out, direction)
                            return
                        frame = out  # passed on: deliver to the next one
                        cls = out.__class__
                        nxt = nxt._down if down else nxt._up
                        continue
            try:
                await nxt.process_frame(frame, direction)
            except Exception as exc:  # a failing processor must not take the call down
                await nxt._on_exception(frame, exc)
            return

    async def _receive(self, frame: Frame, direction: FrameDirection, _gated: bool = False) -> None:
        """Deliver ``frame`` to this processor itself (scheduler entry point)."""
        if self._gate is not None and not _gated:
            await receive_slow(self, frame, direction)  # paused, or process events
            return
        table = self._inline
        if table is not None:
            ok = table.get(frame.__class__)
            if ok is None:
                ok = learn_inline(self, frame.__class__)
            if ok:
                try:
                    out = self.process_inline(frame, direction)
                except Exception as exc:
                    await self._on_exception(frame, exc)
                    return
                if out is not NotImplemented:
                    if out is not None:
                        await self.push_frame(out, direction)
                    return
        try:
            await self.process_frame(frame, direction)
        except Exception as exc:
            await self._on_exception(frame, exc)

    async def queue_frame(self, frame: Frame, direction: FrameDirection = DOWNSTREAM) -> None:
        """Hand ``frame`` to this processor's ``process_frame`` through the scheduler."""
        sched = self._sched
        if sched is None or sched.executing:
            await self._receive(frame, direction)
        else:
            sched.submit(self, frame, direction, to_self=True)

    async def _on_exception(self, frame: Frame, exc: Exception) -> None:
        logger.error("%s: exception processing %s", self._name, frame.name, exc_info=exc)
        await self.push_error(f"{self._name}: {exc!r} while processing {frame.name}", exception=exc)

    async def push_error(
        self, error_msg: str, exception: BaseException | None = None, fatal: bool = False
    ) -> None:
        """Push an :class:`~flowcat.frames.ErrorFrame` (or fatal one) upstream."""
        cls = FatalErrorFrame if fatal else ErrorFrame
        await self.push_frame(
            cls(error=error_msg, fatal=fatal, processor=self, exception=exception), UPSTREAM
        )

    async def push_error_frame(self, frame: ErrorFrame) -> None:
        """Push a ready-made error frame upstream."""
        if frame.processor is None:
            frame.processor = self
        await self.push_frame(frame, UPSTREAM)

    async def broadcast_frame(self, frame_cls: type[Frame], **kwargs: Any) -> None:
        """Push two fresh instances of ``frame_cls``: one downstream, one upstream.

        The two are siblings: each has its own id and the other's id in
        ``broadcast_sibling_id``.
        """
        down = frame_cls(**kwargs)
        up = frame_cls(**kwargs)
        down.broadcast_sibling_id = up.id
        up.broadcast_sibling_id = down.id
        await self.push_frame(down, DOWNSTREAM)
        await self.push_frame(up, UPSTREAM)

    async def broadcast_frame_instance(self, frame: Frame) -> None:
        """Push two shallow copies of ``frame``, each with a fresh id (and so name):
        one downstream, one upstream, siblings of each other. ``frame`` itself is
        not pushed (it may still be travelling elsewhere)."""
        from ..frames._base import _next_id

        down = copy.copy(frame)
        up = copy.copy(frame)
        down.id = _next_id()
        up.id = _next_id()
        down.broadcast_sibling_id = up.id
        up.broadcast_sibling_id = down.id
        await self.push_frame(down, DOWNSTREAM)
        await self.push_frame(up, UPSTREAM)

    async def broadcast_interruption(self) -> None:
        """Interrupt the bot: broadcast an :class:`~flowcat.frames.InterruptionFrame` both ways."""
        await self.broadcast_frame(InterruptionFrame)

    # ------------------------------------------------------ pause / resume

    def pause_processing_frames(self) -> None:
        """Hold every non-system frame arriving here, in order, until resumed."""
        if self._gate.__class__ is not deque:
            self._gate = deque()
            if self._sched is not None:
                self._sched.forget_routes()  # routes through here now stop here

    def resume_processing_frames(self) -> None:
        """Deliver the held frames, in arrival order, then resume normal flow."""
        held, self._gate = self._gate, gate_when_running(self)
        if held.__class__ is not deque:
            return
        sched = self._sched
        if sched is not None:
            sched.forget_routes()
        if not held:
            return
        if sched is None:
            raise PipelineStateError(f"{self._name}: resume_processing_frames() needs a running task")
        for frame, direction in held:
            sched.submit(self, frame, direction, to_self=True)

    # ---------------------------------------------------------- lifecycle

    async def start(self, frame: StartFrame) -> None:
        """Hook: the pipeline starts (connect to services here). Bounded."""

    async def stop(self, frame: EndFrame) -> None:
        """Hook: the pipeline ends gracefully (flush, close). Bounded."""

    async def cancel(self, frame: CancelFrame) -> None:
        """Hook: the pipeline is cancelled (close at once). Bounded."""

    async def on_interruption(self) -> None:
        """Hook: the user interrupted; drop buffered output here. Bounded."""

    async def cleanup(self) -> None:
        """Hook: the task is over; release resources. Bounded."""

    async def _run_hook(self, hook: str, coro: Coroutine[Any, Any, None]) -> None:
        sched = self._sched
        if sched is None:
            await coro
            return
        try:
            await sched.run_hook(self, hook, coro)
        except Exception as exc:
            await self.push_error(f"{self._name}.{hook}() failed: {exc}", exception=exc)

    def _overrides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(FrameProcessor, hook)

    async def _on_start(self, frame: StartFrame) -> None:
        self._started = True
        self._cancelled = False
        self._start_frame = frame
        self._configure_metrics(frame)
        if self._overrides("start"):
            await self._run_hook("start", self.start(frame))

    async def _on_end(self, frame: EndFrame) -> None:
        if self._overrides("stop"):
            await self._run_hook("stop", self.stop(frame))

    async def _on_cancel(self, frame: CancelFrame) -> None:
        self._cancelled = True
        self._gate = gate_when_running(self)
        if self._overrides("cancel"):
            await self._run_hook("cancel", self.cancel(frame))

    async def _on_interruption_frame(self, frame: InterruptionFrame) -> None:
        sched = self._sched
        if sched is not None:
            sched.note_interruption(frame)
        gate = self._gate
        if gate.__class__ is deque and gate:
            self._gate = deque(e for e in gate if not e[0].interruptible)
        self._reset_metrics_on_interruption()
        if self._overrides("on_interruption"):
            await self._run_hook("on_interruption", self.on_interruption())

    async def _on_pause(self, frame: FrameProcessorPauseUrgentFrame) -> None:
        if frame.processor is self:
            self.pause_processing_frames()

    async def _on_resume(self, frame: FrameProcessorResumeUrgentFrame) -> None:
        if frame.processor is self:
            self.resume_processing_frames()


_LIFECYCLE: dict[type[Frame], Any] = {
    StartFrame: FrameProcessor._on_start,
    EndFrame: FrameProcessor._on_end,
    CancelFrame: FrameProcessor._on_cancel,
    InterruptionFrame: FrameProcessor._on_interruption_frame,
    FrameProcessorPauseUrgentFrame: FrameProcessor._on_pause,
    FrameProcessorResumeUrgentFrame: FrameProcessor._on_resume,
}

assert frozenset(_LIFECYCLE) == LIFECYCLE_FRAMES  # noqa: S101 - invariant (type narrowing), not input validation
