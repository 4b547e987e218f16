"""The per-call scheduler: priority and data lanes, chain driving, generations.

One :class:`CallScheduler` serves one running pipeline (a call). Between
processors, frames move by direct ``await`` calls; the scheduler only decides
*when a new chain may start*:

* A frame entering from outside the running chain (transport input, a timer, a
  background task) starts a chain immediately when nothing is running. The chain
  coroutine is stepped synchronously (``coro.send``); if it finishes without
  suspending — the normal case — no task is created. If it suspends (a processor
  awaited something), the rest of it continues in a task owned by the call, and
  the submitter returns at once: **the socket reader is never blocked**.
* While a chain runs or is suspended, new entries wait in a lane: system frames in
  the **priority lane**, everything else in the **data lane**. Two slots run
  chains: system frames may start while a data chain is suspended (as pipecat's
  input task runs system frames next to its process task), data chains wait for
  both slots.
* Backpressure: the data lane holds ``max_data_lane`` entries; an async pusher
  (a background task) waits for room, a synchronous submitter is never blocked and
  never loses a control frame. Input audio queued in the priority lane is capped
  at ``max_queued_input_audio`` frames: past that the *oldest* queued input audio
  is dropped (counted in :attr:`SchedulerStats.input_audio_dropped`).
* Interruptions bump :attr:`CallScheduler.generation`: queued interruptible
  frames are dropped, uninterruptible ones kept, a data chain suspended on an
  interruptible frame is cancelled, and call-owned background tasks created with
  ``cancel_on_interruption=True`` in an older generation are cancelled. A frame
  pushed later by an older-generation task is dropped unless uninterruptible.
* :class:`~flowcat.frames.CancelFrame` preempts everything: both slots are
  cancelled, the lanes emptied, and the cancel chain runs at once.

Stepping chains in their slots, call-owned tasks and bounded lifecycle hooks are
:class:`~flowcat.runtime._call_tasks.CallTasks`, which the scheduler extends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..frames import SYSTEM, CancelFrame, Frame, InputAudioRawFrame, InterruptionFrame, StartFrame
from ._call_tasks import CallTasks, _generation_var, _Slot, current_generation, logger
from ._direction import FrameDirection
from ._inline import push_inline

if TYPE_CHECKING:
    from ._processor import FrameProcessor

__all__ = ["CallScheduler", "SchedulerStats", "current_generation"]

DOWNSTREAM = FrameDirection.DOWNSTREAM


@dataclass(slots=True)
class SchedulerStats:
    """Counters of one call's scheduler."""

    chains: int = 0
    """Chains started (entries delivered)."""
    suspensions: int = 0
    """Chains that suspended and continued in a task."""
    peak_priority_lane: int = 0
    peak_data_lane: int = 0
    input_audio_dropped: int = 0
    """Queued input audio dropped because the priority lane cap was reached."""
    interrupted_dropped: int = 0
    """Queued or late interruptible frames dropped by interruptions."""
    interruptions: int = 0
    background_tasks: int = 0
    hook_timeouts: int = 0


# System frames the scheduler itself acts on (never taken by the fast path).
_SPECIAL = frozenset((CancelFrame, InterruptionFrame, StartFrame))

# Entry: (generation, processor, frame, direction, to_self)
_Entry = tuple[int, "FrameProcessor", Frame, FrameDirection, bool]


class CallScheduler(CallTasks):
    """Runs one call's frame chains. Created by :class:`~flowcat.PipelineTask`.

    The chain slots, call-owned tasks and hook bounds come from
    :class:`~flowcat.runtime._call_tasks.CallTasks`.

    Args:
        name: Name used in logs.
        max_data_lane: Data-lane size past which async pushers wait.
        max_queued_input_audio: Cap on input-audio frames waiting in the priority lane.
        hook_timeout: Bound (s) on each processor lifecycle hook.
    """

    # The fields every chain start reads, in the object rather than its dict.
    __slots__ = (
        "_closed", "executing", "_pumping", "_held", "_sys", "_data", "_sys_slot", "_data_slot",
        "_stats", "_chains", "_current", "generation", "_queued",
    )

    def __init__(
        self,
        name: str,
        *,
        max_data_lane: int = 256,
        max_queued_input_audio: int = 100,
        hook_timeout: float = 10.0,
    ) -> None:
        super().__init__(name, hook_timeout=hook_timeout)
        self.max_data_lane = max_data_lane
        self.max_queued_input_audio = max_queued_input_audio
        self._stats = SchedulerStats()
        self._chains = 0  # bumped per chain, in the object itself (see ``stats``)
        self._sys: deque[_Entry] = deque()
        self._data: deque[_Entry] = deque()
        # True whenever a lane may hold entries (set on every append, cleared by the
        # pump once both are empty): the fast path reads it instead of both deques.
        self._queued = False
        self._pumping = False
        self._held = True  # until the StartFrame has reached the end of the pipeline
        self._closed = False
        self._queued_audio = 0
        self._last_interruption = (0, 0)
        self._space_waiters: deque[asyncio.Future[None]] = deque()

    # ------------------------------------------------------------------ state

    @property
    def stats(self) -> SchedulerStats:
        """This call's counters (up to date when read)."""
        st = self._stats
        st.chains = self._chains
        return st

    @property
    def held(self) -> bool:
        """Whether entries are held until the pipeline has started."""
        return self._held

    def release(self) -> None:
        """The StartFrame has passed every processor: let held entries run."""
        self._held = False
        self._pump()

    def close(self) -> None:
        """Stop accepting entries (the call is over). Queued entries are dropped."""
        self._closed = True
        self._sys.clear()
        self._data.clear()
        self._queued_audio = 0
        self._wake_space_waiters()

    @property
    def closed(self) -> bool:
        """Whether the call is over."""
        return self._closed

    def lane_sizes(self) -> tuple[int, int]:
        """Current (priority, data) lane sizes."""
        return len(self._sys), len(self._data)

    def busy(self) -> bool:
        """Whether a chain is running or suspended."""
        return self._sys_slot.coro is not None or self._data_slot.coro is not None

    # ----------------------------------------------------------------- entry

    async def enter(self, proc: FrameProcessor, frame: Frame, direction: FrameDirection) -> None:
        """Push ``frame`` from ``proc`` on behalf of code outside the running chain.

        Waits for room when the data lane is full (backpressure on the producer).
        Frames from a call-owned task of an older generation are dropped unless
        uninterruptible.
        """
        gen = _generation_var.get()
        if 0 <= gen < self.generation and frame.interruptible:
            self._stats.interrupted_dropped += 1
            return
        if frame.kind != SYSTEM:
            while len(self._data) >= self.max_data_lane and not self._closed:
                waiter = asyncio.get_running_loop().create_future()
                self._space_waiters.append(waiter)
                await waiter
        self.submit(proc, frame, direction)

    def submit(
        self,
        proc: FrameProcessor,
        frame: Frame,
        direction: FrameDirection,
        *,
        to_self: bool = False,
    ) -> None:
        """Schedule ``frame``: pushed from ``proc`` (or delivered to it if ``to_self``).

        Never blocks and never awaits. Runs the chain now if nothing else is running.
        """
        if self._closed:
            return
        # Fast path: nothing running, nothing waiting — run the chain right now.
        if not (self.executing or self._pumping or self._held or self._queued):
            if frame.kind == SYSTEM:
                if self._sys_slot.coro is None and type(frame) not in _SPECIAL:
                    self._start(self._sys_slot, proc, frame, direction, to_self)
                    if self._queued:
                        self._pump()
                    return
            elif self._sys_slot.coro is None and self._data_slot.coro is None:
                self._start(self._data_slot, proc, frame, direction, to_self)
                if self._queued:
                    self._pump()
                return
        entry: _Entry = (self.generation, proc, frame, direction, to_self)
        self._queued = True
        if frame.kind == SYSTEM:
            cls = type(frame)
            if cls is CancelFrame:
                self._cancel_now(entry)
                return
            if cls is InterruptionFrame:
                self.note_interruption(frame)
            if cls is StartFrame:
                self._sys.appendleft(entry)
            else:
                if cls is InputAudioRawFrame or isinstance(frame, InputAudioRawFrame):
                    if self._queued_audio >= self.max_queued_input_audio and (self._sys or self.busy()):
                        self._drop_oldest_audio()
                    self._queued_audio += 1
                self._sys.append(entry)
                n = len(self._sys)
                if n > self._stats.peak_priority_lane:
                    self._stats.peak_priority_lane = n
        else:
            self._data.append(entry)
            n = len(self._data)
            if n > self._stats.peak_data_lane:
                self._stats.peak_data_lane = n
        if not self.executing:
            self._pump()

    def submit_input(self, proc: FrameProcessor, frame: Frame) -> None:
        """``submit(proc, frame, DOWNSTREAM)`` for a system frame that is not one the
        scheduler acts on (a transport input's audio), with the fast path first:
        nothing runs or waits and ``proc``'s push is the plain one, so the frame goes
        through the inline processors at once, without slot bookkeeping unless one of
        them is not inline."""
        if (
            self.executing
            or self._pumping
            or self._held
            or self._queued
            or self._closed
            or self._sys_slot.coro is not None
            or not proc._plain_push
        ):
            self.submit(proc, frame, DOWNSTREAM)
            return
        self._chains += 1
        self.executing = True
        try:
            coro = push_inline(proc, frame, DOWNSTREAM)
        except BaseException:
            logger.exception("%s: chain for %s raised", self.name, frame)
            coro = None
        finally:
            self.executing = False
        if coro is not None:
            self._step(self._sys_slot, coro, frame)
        if self._queued:
            self._pump()

    def _drop_oldest_audio(self) -> None:
        for i, entry in enumerate(self._sys):
            if isinstance(entry[2], InputAudioRawFrame):
                del self._sys[i]
                self._queued_audio -= 1
                self._stats.input_audio_dropped += 1
                return

    # ------------------------------------------------------------------ pump

    def _pump(self) -> None:
        if self._pumping or self.executing:
            return
        self._pumping = True
        try:
            sys_lane, data_lane = self._sys, self._data
            sys_slot, data_slot = self._sys_slot, self._data_slot
            while not self._closed:
                if sys_lane and sys_slot.coro is None:
                    entry = sys_lane[0]
                    if self._held and type(entry[2]) is not StartFrame:
                        break
                    sys_lane.popleft()
                    if isinstance(entry[2], InputAudioRawFrame):
                        self._queued_audio -= 1
                    self._run(sys_slot, entry)
                elif data_lane and data_slot.coro is None and sys_slot.coro is None and not self._held:
                    # (No generation check here: note_interruption, the only place the
                    # generation moves, already took every interruptible entry out.)
                    self._run(data_slot, data_lane.popleft())
                else:
                    break
        finally:
            self._pumping = False
        if not self._sys and not self._data:
            self._queued = False
        if self._space_waiters and len(self._data) < self.max_data_lane:
            self._wake_space_waiters()

    def _wake_space_waiters(self) -> None:
        while self._space_waiters:
            waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _run(self, slot: _Slot, entry: _Entry) -> None:
        self._start(slot, entry[1], entry[2], entry[3], entry[4])

    # ---------------------------------------------------------- interruption

    def note_interruption(self, frame: Frame) -> bool:
        """Apply an interruption once per broadcast pair. Returns True if it was new."""
        key = frame.id
        if key in self._last_interruption:
            return False
        sib = frame.broadcast_sibling_id
        self._last_interruption = (key, sib if sib is not None else 0)
        self.generation += 1
        self._stats.interruptions += 1
        gen = self.generation
        # Drop queued interruptible frames, keep the rest in order.
        lane = self._data
        if lane:
            # Filtered in place: a pump running right now holds this deque.
            kept = [e for e in lane if not e[2].interruptible]
            self._stats.interrupted_dropped += len(lane) - len(kept)
            lane.clear()
            lane.extend(kept)
        # Cancel a data chain suspended on an interruptible frame (not the one running now).
        slot = self._data_slot
        if slot.task is not None and self._current is not slot and slot.frame is not None:
            if slot.frame.interruptible:
                slot.task.cancel()
        # Cancel background work of older generations.
        for t, (tgen, cancel_on_interruption) in list(self._tasks.items()):
            if cancel_on_interruption and tgen < gen and not t.done():
                t.cancel()
        return True

    # ---------------------------------------------------------------- cancel

    def _cancel_now(self, entry: _Entry) -> None:
        self._held = False
        self._data.clear()
        self._sys.clear()
        self._queued_audio = 0
        for slot in (self._data_slot, self._sys_slot):
            if slot.task is not None and slot is not self._current:
                slot.task.cancel()
        self._wake_space_waiters()
        if self.executing:
            # Raised from inside a chain: run right after it.
            self._sys.appendleft(entry)
            return
        # Run the cancel chain now, whatever the slots are doing.
        self._run(_Slot("cancel"), entry)
