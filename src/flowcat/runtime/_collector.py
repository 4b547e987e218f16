"""Short cycle-collector pauses in a process that holds many live calls.

CPython's full (generation-2) collection walks every tracked object that is not
frozen, so its pause grows with the number of live calls: ~130 tracked objects and
~50-60 µs of CPU per call, ~100-120 ms at 2,000 calls (``flowcat bench gc``), long
enough for every caller on the process to hear it. The
objects of a live call do not need the collector: a finished call cuts its own
reference cycles (see ``FrameProcessor._detach``), so its objects are freed by
reference counting whatever generation they sit in.

:class:`CollectorPolicy` therefore keeps long-lived objects in the permanent
generation (:func:`gc.freeze`), where no collection walks them:

* at install: one full collection, then everything alive (modules, the app) is frozen;
* automatic full collections are switched off (the third threshold), and the survivors
  of every generation-1 collection (``freeze_every``) are frozen as it ends: they were
  just found reachable, and the live calls' objects are among them. Generation 2 stays
  (nearly) empty, so no pause grows with the number of live calls; what is left are
  CPython's young collections, which walk only objects made since the last ones. With
  ``scan=True`` a full collection of what was promoted since the last freeze runs
  first (on the loop, right after), for objects that died in a cycle meanwhile;
* CPython counts a young collection due after 700 more allocations than deallocations of
  tracked objects, and a deallocation counts even when the object was frozen long ago. With
  calls ending (their frozen objects freed) while others start, the count hardly moves and
  the young generation grows without a collection, until one walks tens of thousands of
  objects (measured: ~97,000 and 2 ms of CPU in a synthetic churn; 6–19 ms with 200 live agent
  calls churning, ``flowcat bench soak``). So the policy also runs a young collection itself
  every ``young_secs`` (0.25 s) on the loop when CPython ran none meanwhile (a generation-1 one
  once ten young ones are due), keeping the young generation to what a quarter of a second
  allocates; and generation 1 is collected (and frozen) after every third young collection
  instead of every tenth, so that it holds fewer survivors when it is walked;
* :meth:`CollectorPolicy.deep_collect` unfreezes and collects everything: the only
  pass that finds cycles among frozen objects (a leak: something that outlived two
  young collections and was then dropped inside a cycle). Its pause is the one the
  policy avoids, so a server runs it when no call is live (:meth:`CollectorPolicy.idle`),
  and only when the frozen set grew since the last one.

This is safe because calls cut their own cycles when they end (tested with
:func:`flowcat.testing.assert_call_leaves_nothing`): a processor, service or
agent that builds per-call objects in a cycle and keeps them longer than two young
collections leaks them until the next deep collection. Every collection's pause is
measured (``stats``). ``flowcat bench gc`` measures the pauses with N live calls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CollectorPolicy", "CollectorStats"]

logger = logging.getLogger("flowcat.collector")

_NEVER = 2**31 - 1  # a generation-2 threshold no count reaches: no automatic full collection


@dataclass(slots=True)
class CollectorStats:
    """What the collector did while a :class:`CollectorPolicy` was installed."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    """Collections per generation (the policy's own full collections included)."""
    worst_pause_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Longest pause per generation (ms)."""
    young_ticks: int = 0
    """Young collections the policy ran itself (CPython's count had not called one: see
    ``young_secs``)."""
    frozen_collections: int = 0
    """Freezes of the survivors of a young collection (with ``scan``: after a full one)."""
    deep_collections: int = 0
    leaked: int = 0
    """Objects the deep collections found in cycles among frozen objects."""


class CollectorPolicy:
    """Keep the cycle collector out of the way of live calls (see the module docstring).

    Install it once per process, from the event loop, after start-up::

        policy = CollectorPolicy()
        policy.install()

    Args:
        freeze_every: Generation-1 collections between two freezes (default 1: every one).
        scan: Run a full collection of the objects promoted since the last freeze
            before freezing them (scheduled on the loop). Longer pauses; catches
            cycles that died meanwhile.
        deep_growth: Frozen objects the process may gain (since the last deep
            collection) before :meth:`idle` runs a deep collection.
        young_secs: Period of the policy's own young collection when CPython ran none
            meanwhile (None: off). Needs a loop.
        gen1_threshold: Young collections between two generation-1 ones (default 3; None:
            CPython's 10). Lower: each generation-1 collection walks (and freezes) fewer
            survivors (``flowcat bench gc``, 2,000 calls, 500 of them churned: worst
            generation-1 pause 3.3–6.7 ms of CPU at 3, 9.7–10.6 ms at 10).
    """

    def __init__(
        self,
        *,
        freeze_every: int = 1,
        scan: bool = False,
        deep_growth: int = 20_000,
        young_secs: float | None = 0.25,
        gen1_threshold: int | None = 3,
    ) -> None:
        self.freeze_every = max(1, freeze_every)
        self.scan = scan
        self.deep_growth = deep_growth
        self.young_secs = young_secs
        self.gen1_threshold = gen1_threshold
        self._tick: asyncio.TimerHandle | None = None
        self._young_seen = 0
        self.stats = CollectorStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thresholds: tuple[int, int, int] | None = None
        self._young = 0
        self._scheduled = False
        self._t0 = 0.0
        self._frozen_base = 0
        self._installed = False

    @property
    def installed(self) -> bool:
        """Whether the policy is in force."""
        return self._installed

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Freeze what is alive now and take over full collections (idempotent).
        ``loop`` (default: the running one) runs the scans of ``scan=True``."""
        if self._installed:
            return
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: only ``scan`` needs one
                loop = None
        self._loop = loop
        gc.collect()
        gc.freeze()
        self._frozen_base = gc.get_freeze_count()
        t0, t1, _ = self._thresholds = gc.get_threshold()
        gc.set_threshold(t0, self.gen1_threshold or t1, _NEVER)
        gc.callbacks.append(self._on_gc)
        self._installed = True
        if loop is not None and self.young_secs:
            self._tick = loop.call_later(self.young_secs, self._young_tick)

    def uninstall(self) -> None:
        """Give full collections back to CPython (frozen objects stay frozen)."""
        if not self._installed:
            return
        self._installed = False
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)

    # ------------------------------------------------------------ collections

    def collect(self) -> int:
        """Collect the objects promoted since the last freeze, then freeze the survivors.
        Returns how many unreachable objects were found."""
        found = gc.collect()
        gc.freeze()
        self.stats.frozen_collections += 1
        return found

    def deep_collect(self) -> int:
        """Unfreeze everything, collect, freeze again: the only pass that finds cycles
        among frozen objects. A long pause (every object is walked). Returns how many
        unreachable objects were found."""
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._frozen_base = gc.get_freeze_count()
        self.stats.deep_collections += 1
        self.stats.leaked += found
        if found:
            logger.warning(
                "deep collection: %d objects were left in reference cycles after they had been "
                "frozen (something a call built outlived a few collections inside a cycle)",
                found,
            )
        return found

    def idle(self) -> bool:
        """No call is live: run a deep collection if the frozen set grew by more than
        ``deep_growth`` objects since the last one. Returns whether it ran."""
        if not self._installed or gc.get_freeze_count() - self._frozen_base <= self.deep_growth:
            return False
        self.deep_collect()
        return True

    # ---------------------------------------------------------------- callback

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        gen = info["generation"]
        stats = self.stats
        stats.collections[gen] += 1
        pause = (time.perf_counter() - self._t0) * 1e3
        if pause > stats.worst_pause_ms[gen]:
            stats.worst_pause_ms[gen] = pause
        if gen == 1:
            self._young += 1
            if self._young < self.freeze_every:
                return
            if not self.scan:
                # The survivors of this collection were just found reachable: freeze them
                # now (the collection is over; this only moves them to the permanent list).
                self._young = 0
                gc.freeze()
                stats.frozen_collections += 1
            elif not self._scheduled and self._loop is not None:
                self._scheduled = True
                try:
                    self._loop.call_soon_threadsafe(self._scheduled_collect)
                except RuntimeError:  # the loop is closed
                    self._scheduled = False

    def _young_tick(self) -> None:
        """Every ``young_secs``: a young collection if CPython ran none since the last tick."""
        if not self._installed or self._loop is None or not self.young_secs:
            return
        done = self.stats.collections[0] + self.stats.collections[1]
        if done == self._young_seen and gc.isenabled():  # disabled: someone counts leftovers
            gc.collect(1 if gc.get_count()[1] >= gc.get_threshold()[1] else 0)
            self.stats.young_ticks += 1
            done += 1
        self._young_seen = done
        self._tick = self._loop.call_later(self.young_secs, self._young_tick)

    def _scheduled_collect(self) -> None:
        self._scheduled = False
        self._young = 0
        if self._installed:
            self.collect()
