"""Inline hops: frames a processor handles synchronously, without a coroutine.

A processor class may list frame types in ``inline_frames`` and implement
``process_inline(frame, direction)``. For a frame of one of those types (and not
a lifecycle frame: Start, End, Cancel, Interruption, pause/resume), delivery
calls ``process_inline`` directly instead of awaiting ``process_frame``. It
returns the frame to pass on in the same direction (the same frame or another
one), ``None`` to stop it there, or ``NotImplemented`` to have ``process_frame``
handle this frame as usual. A run of inline processors costs a plain call each;
the first processor that is not inline (or defers) gets the frame through its
``process_frame`` as before, so ``async`` processors and inline ones mix freely.

Inline handlers must not block and cannot await; anything else a frame needs
(pushing extra frames, I/O) belongs in ``process_frame`` (return
``NotImplemented``). An exception raised by ``process_inline`` is handled like
one raised by ``process_frame``: logged and pushed upstream as an
:class:`~flowcat.frames.ErrorFrame` by the processor that raised; the call goes on.

A processor whose ``push_frame`` is not the plain one (observers attached, or a
subclass override) passes an inline result on through its own ``push_frame``,
so observers see every hop. A class that overrides ``process_frame`` without
overriding ``process_inline`` (or ``inline_frames``) loses the inline frames it
inherited: its own ``process_frame`` always runs. Frames held by a paused
processor and delivered later are handled inline too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..frames import (
    SYSTEM,
    CancelFrame,
    EndFrame,
    Frame,
    FrameProcessorPauseUrgentFrame,
    FrameProcessorResumeUrgentFrame,
    InterruptionFrame,
    StartFrame,
)
from ._direction import FrameDirection

if TYPE_CHECKING:
    from ._processor import FrameProcessor

__all__ = ["LIFECYCLE_FRAMES", "NO_ROUTE", "learn_inline", "push_inline"]

DOWNSTREAM = FrameDirection.DOWNSTREAM

LIFECYCLE_FRAMES = frozenset(
    (
        StartFrame,
        EndFrame,
        CancelFrame,
        InterruptionFrame,
        FrameProcessorPauseUrgentFrame,
        FrameProcessorResumeUrgentFrame,
    )
)
"""Frames the base ``process_frame`` acts on: never delivered inline."""


def learn_inline(proc: FrameProcessor, cls: type[Frame]) -> bool:
    """Whether ``proc`` takes frames of class ``cls`` inline (cached per processor class)."""
    ok = cls not in LIFECYCLE_FRAMES and issubclass(cls, type(proc).inline_frames)
    table = proc._inline
    if table is not None:
        table[cls] = ok
    return ok


def push_inline(
    proc: FrameProcessor, frame: Frame, direction: FrameDirection
) -> Coroutine[Any, Any, None] | None:
    """Deliver ``frame`` pushed by ``proc`` through the inline processors after it.

    Returns the coroutine that delivers it to the first processor that is not
    inline (or to an error handler), or None when the frame was consumed inline.
    Called by the scheduler at the root of a chain, inside the chain.

    Downstream, the run of inline processors a frame class goes through from
    ``proc`` is worked out once and kept in ``proc`` (for the class it pushed
    last) until the call's scheduler forgets it (a processor paused or resumed).
    """
    if direction is not DOWNSTREAM:
        return _push_loop(proc, frame, direction)
    cls = frame.__class__
    while True:
        route = proc._route
        if route[0] is not cls:
            route = _route(proc, cls)
        fns = route[1]
        # The hops' bound process_inline methods: no per-hop method lookup (a call
        # site that sees a different processor class each hop defeats its cache).
        for fn in fns:
            try:
                out = fn(frame, direction)
            except Exception as exc:
                return fn.__self__._on_exception(frame, exc)
            if out is not frame:
                if out is None:
                    return None
                nxt = fn.__self__
                if out is NotImplemented:
                    return nxt._receive(frame, direction)
                frame = out
                if out.__class__ is not cls and nxt._plain_push:
                    break  # another class: go on along nxt's route for it
        else:
            tail = route[2]
            if tail is None:
                return None
            if tail.__class__ is _Own:  # the last hop is observed or overridden: its own push_frame
                return fns[-1].__self__.push_frame(frame, direction)
            return tail._receive(frame, direction)
        proc = nxt
        cls = frame.__class__


class _Own:
    """Route tail: the last hop's own ``push_frame`` passes the frame on."""

    __slots__ = ()


_OWN = _Own()

Route = tuple[Any, tuple[Any, ...], Any]
"""(frame class, the hops' bound ``process_inline`` methods, tail): see :func:`_route`."""

NO_ROUTE: Route = (None, (), None)
"""A processor's route before it pushed anything (or once forgotten)."""


def _route(proc: FrameProcessor, cls: type[Frame]) -> Route:
    """Work out (and keep in ``proc._route``) the route of ``cls`` downstream from ``proc``.

    The hops take the frame inline in turn; then the tail says what follows:
    None (the end of the pipeline), the first processor that is not inline for
    ``cls`` (or is paused), whose ``_receive`` takes the frame, or ``_OWN``: the
    last hop is observed or overridden and its own ``push_frame`` passes the frame
    on. One route is kept per processor (for the class it pushed last).
    """
    hops: list[Any] = []
    nxt = proc._down
    tail: Any = None
    system = cls.kind == SYSTEM
    while nxt is not None:
        table = nxt._inline
        gate = nxt._gate
        if table is None or (gate is not None and not (system and _passes_paused(nxt, gate))):
            tail = nxt
            break
        ok = table.get(cls)
        if not ok and (ok is not None or not learn_inline(nxt, cls)):
            tail = nxt
            break
        hops.append(nxt.process_inline)
        if not nxt._plain_push:
            tail = _OWN
            break
        nxt = nxt._down
    route = (cls, tuple(hops), tail)
    sched = proc._sched
    if sched is not None:  # kept until the scheduler forgets routes
        if proc._route is NO_ROUTE:
            sched.routed.append(proc)
        proc._route = route
    return route


def _passes_paused(proc: FrameProcessor, gate: Any) -> bool:
    """Whether a system frame goes through ``proc`` (gate set) as if it ran: ``proc`` is
    paused (system frames are not held) and has no process-event handlers."""
    if gate.__class__ is not deque:
        return False  # HOOKED: the handlers run around each frame
    return not (
        proc.has_event_handler("on_before_process_frame") or proc.has_event_handler("on_after_process_frame")
    )


def _push_loop(
    proc: FrameProcessor, frame: Frame, direction: FrameDirection
) -> Coroutine[Any, Any, None] | None:
    """:func:`push_inline` without a kept route (upstream)."""
    down = direction is DOWNSTREAM
    nxt = proc._down if down else proc._up
    cls = frame.__class__
    while nxt is not None:
        table = nxt._inline
        if table is None:
            break
        ok = table.get(cls)
        if not ok and (ok is not None or not learn_inline(nxt, cls)):
            break
        if nxt._gate is not None:
            break  # paused: _receive holds the frame
        try:
            out = nxt.process_inline(frame, direction)
        except Exception as exc:
            return nxt._on_exception(frame, exc)
        if out is not frame:
            if out is None:
                return None
            if out is NotImplemented:
                break
            frame = out
            cls = out.__class__
        if not nxt._plain_push:  # observed or overridden: its own push_frame goes on
            return nxt.push_frame(frame, direction)
        nxt = nxt._down if down else nxt._up
    if nxt is None:
        return None
    return nxt._receive(frame, direction)
