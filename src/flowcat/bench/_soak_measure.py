"""What ``flowcat bench soak`` measures in its own process: snapshots taken while no call is live
(gc-tracked objects by type, asyncio tasks, open fds, RSS, the cycles a deep collection finds) and
the collector's work per window (:class:`_Gc`)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections import Counter
from typing import Any

from ._harness import PauseClock

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """This process's resident memory (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def open_fds() -> Counter[str]:
    """This process's open file descriptors by kind (socket, pipe, anon_inode, file, …)."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own fd, closed meanwhile
            continue
        kinds[target.split(":", 1)[0] if ":" in target else "file"] += 1
    return kinds


def snapshot(collector: Any) -> dict[str, Any]:
    """What the process holds with no call live (see the module docstring). Blocks the loop
    for the count (~1 µs an object): take it only when no call is live.

    Open fds: the per-kind minimum of a reading before and one after the count, so that a
    descriptor another thread holds for a moment is not taken for a leak (the stall watchdog
    reads source files to format the stack of the stall this very count causes).
    """
    fds_before = open_fds()
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)  # what the deep collection finds stays in gc.garbage: count its types
    try:
        cycles = collector.deep_collect() if collector is not None else gc.collect()
        found = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(flags)
    gc.unfreeze()
    gc.collect()  # (they were frozen with the rest) now free them
    try:
        objs = gc.get_objects()
        types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objs)
        if os.environ.get("FLOWCAT_SOAK_DEBUG"):
            _debug_new(objs)
        del objs
    finally:
        gc.freeze()
    tasks = Counter(str(getattr(t.get_coro(), "__qualname__", t.get_name())) for t in asyncio.all_tasks())
    return {
        "rss_mb": round(rss_mb(), 1),
        "cycles_found": cycles,
        "cycle_types": found,
        "objects": sum(types.values()),
        "types": types,
        "tasks": tasks,
        "fds": fds_before & open_fds(),
    }


_SEEN: set[int] = set()


def _debug_new(objs: list[Any]) -> None:  # pragma: no cover - a leak hunt's aid
    """``FLOWCAT_SOAK_DEBUG=Type,Type``: at B, print the referrer chains of objects of those types
    that were not there at A."""
    kinds = os.environ.get("FLOWCAT_SOAK_DEBUG", "").split(",")
    if not _SEEN:
        _SEEN.update(id(o) for o in objs)
        return
    new = [o for o in objs if id(o) not in _SEEN and type(o).__qualname__ in kinds][:3]
    mine = {id(objs), id(new)}
    for o in new:
        print("LEAK", type(o).__qualname__, file=sys.stderr)
        cur, seen = o, {id(o)}
        for depth in range(16):
            refs = gc.get_referrers(cur)
            mine.add(id(refs))
            refs = [
                r for r in refs if id(r) not in mine and id(r) not in seen and type(r).__name__ != "frame"
            ]
            mine.add(id(refs))
            if not refs:
                break
            refs.sort(key=lambda r: isinstance(r, (list, dict)))  # objects first
            desc = ", ".join(
                f"{type(r).__module__}.{type(r).__qualname__}"
                + (f" keys={list(r)[:5]}" if isinstance(r, dict) else "")
                for r in refs[:4]
            )
            print("  " * depth, "<-", desc, file=sys.stderr)
            cur = refs[0]
            seen.add(id(cur))
        del refs
    del new


class _Gc(PauseClock):
    """Collections per generation, the worst pause (wall and this thread's CPU time) and the
    unreachable objects they found, per window and in all (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()
        self.total = [0, 0, 0]
        self.total_worst = [0.0, 0.0, 0.0]  # wall ms per generation
        self.total_worst_cpu = [0.0, 0.0, 0.0]
        self.total_found = 0

    def reset(self) -> None:
        self.n = [0, 0, 0]
        self.worst_ms = 0.0
        self.worst_cpu_ms = 0.0
        self.found = 0

    def collected(self, info: dict[str, Any], ms: float, cpu: float) -> None:
        g = info["generation"]
        self.n[g] += 1
        self.total[g] += 1
        self.worst_ms = max(self.worst_ms, ms)
        self.worst_cpu_ms = max(self.worst_cpu_ms, cpu)
        self.total_worst[g] = max(self.total_worst[g], ms)
        self.total_worst_cpu[g] = max(self.total_worst_cpu[g], cpu)
        self.found += info["collected"]
        self.total_found += info["collected"]

    def summary(self) -> dict[str, Any]:
        """Over the soak: collections per generation, worst pause per generation (ms, wall and
        CPU), and the objects the collections found unreachable (left in cycles)."""
        return {
            "collections": list(self.total),
            "worst_ms": [round(x, 2) for x in self.total_worst],
            "worst_cpu_ms": [round(x, 2) for x in self.total_worst_cpu],
            "found_in_cycles": self.total_found,
        }
