"""Per-frame processor events, paid for only by processors that have a handler.

pipecat's ``on_before_process_frame(processor, frame)``,
``on_after_process_frame(processor, frame)``, ``on_before_push_frame(processor,
frame)`` and ``on_after_push_frame(processor, frame)``. Registering a handler for
one of them moves that processor (and only it) off the fast path:

* process events: its ``_gate`` slot (which every delivery already reads to see
  whether the processor is paused) is set, so every frame reaches it through
  :meth:`~flowcat.FrameProcessor._receive` (never skipped by a route or by
  flattening) and :func:`receive_slow` calls the handlers around its processing,
  inline or not;
* push events: it gets its own ``push_frame`` wrapping the one it had (as an
  observer's does), which calls the handlers around each push made inside the
  running chain (a push from outside the chain is reported when the scheduler
  runs it).

Processors without a handler run exactly the code they ran before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..frames import SYSTEM, Frame
from ._direction import FrameDirection
from ._events import EventEmitter

if TYPE_CHECKING:
    from ._processor import FrameProcessor

__all__ = ["FRAME_EVENTS", "HOOKED", "FrameEvents", "gate_when_running", "hooks_added", "receive_slow"]

DOWNSTREAM = FrameDirection.DOWNSTREAM

PROCESS_EVENTS = ("on_before_process_frame", "on_after_process_frame")
PUSH_EVENTS = ("on_before_push_frame", "on_after_push_frame")
FRAME_EVENTS = frozenset(PROCESS_EVENTS + PUSH_EVENTS)


class _Hooked:
    """``_gate`` of a processor that is not paused but has process-event handlers."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "HOOKED"


HOOKED: Any = _Hooked()


def _has_process_hooks(proc: FrameProcessor) -> bool:
    return proc.has_event_handler(PROCESS_EVENTS[0]) or proc.has_event_handler(PROCESS_EVENTS[1])


def gate_when_running(proc: FrameProcessor) -> Any:
    """The ``_gate`` of ``proc`` when not paused: None, or :data:`HOOKED`."""
    return HOOKED if _has_process_hooks(proc) else None


def hooks_added(proc: FrameProcessor, event_name: str) -> None:
    """A handler for frame event ``event_name`` was registered on ``proc``."""
    if event_name in PROCESS_EVENTS:
        if proc._gate is None:
            proc._gate = HOOKED
    elif "_push_hooked" not in proc.__dict__:
        _install_push_hooks(proc)
    sched = proc._sched
    if sched is not None:
        sched.forget_routes()  # routes through proc must now stop at it


def _install_push_hooks(proc: FrameProcessor) -> None:
    inner = proc.__dict__.get("push_frame")  # an observer's push_frame, if installed
    cls_push = type(proc).push_frame
    call = proc._call_event_handler

    async def push_frame(frame: Frame, direction: FrameDirection = DOWNSTREAM) -> None:
        sched = proc._sched
        if sched is not None and not sched.executing:
            # From outside the chain: the scheduler runs this push later, through
            # this same push_frame, and the handlers are called then.
            await (cls_push(proc, frame, direction) if inner is None else inner(frame, direction))
            return
        await call(PUSH_EVENTS[0], frame)
        await (cls_push(proc, frame, direction) if inner is None else inner(frame, direction))
        await call(PUSH_EVENTS[1], frame)

    proc.push_frame = push_frame  # type: ignore[method-assign]
    proc.__dict__["_push_hooked"] = True
    proc._plain_push = False


async def receive_slow(proc: FrameProcessor, frame: Frame, direction: FrameDirection) -> None:
    """Deliver ``frame`` to a processor whose ``_gate`` is set: hold it (paused,
    not a system frame) or process it between the process events' handlers."""
    gate = proc._gate
    if gate.__class__ is deque and frame.kind != SYSTEM:
        gate.append((frame, direction))
        return
    if not _has_process_hooks(proc):
        await proc._receive(frame, direction, True)
        return
    await proc._call_event_handler(PROCESS_EVENTS[0], frame)
    await proc._receive(frame, direction, True)
    await proc._call_event_handler(PROCESS_EVENTS[1], frame)


class FrameEvents(EventEmitter):
    """The events of a :class:`~flowcat.FrameProcessor` (a base of it), the
    per-frame ones included."""

    __slots__ = ()

    def add_event_handler(self, event_name: str, handler: Callable[..., Any]) -> None:
        """Register ``handler`` for ``event_name`` (see :class:`~flowcat.runtime.EventEmitter`).

        Every processor also emits pipecat's per-frame events
        ``on_before_process_frame``, ``on_after_process_frame``,
        ``on_before_push_frame`` and ``on_after_push_frame`` (``(processor,
        frame)``); a processor pays for them only once it has a handler.
        """
        if event_name in FRAME_EVENTS:
            self._events().setdefault(event_name, []).append(handler)
            hooks_added(cast("FrameProcessor", self), event_name)
            return
        super().add_event_handler(event_name, handler)
