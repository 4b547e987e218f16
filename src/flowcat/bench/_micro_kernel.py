"""The measurements of ``flowcat bench micro``, written once for both sides.

Standard library only: the flowcat side imports this module, and the pipecat worker
(:mod:`flowcat.bench._pipecat_micro`, which runs in pipecat's own environment where
flowcat is not installed) loads this file by path. Each side supplies its framework's
``FrameProcessor`` base and a call class (see :class:`Call`), so both measure the
same processors the same way.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["AUDIO", "KS", "Call", "drain", "frames", "hops", "idle_calls", "processors", "rss_bytes"]

AUDIO = bytes(320)
PAGE = os.sysconf("SC_PAGE_SIZE")
KS = (1, 3, 10)


class Call(Protocol):
    """One pipeline run as a server holds per connection."""

    started: asyncio.Event  # set by the run's ``on_pipeline_started``
    run_task: asyncio.Task[None] | None

    @property
    def queue(self) -> Callable[..., Awaitable[None]]:
        """The run's ``queue_frame``."""

    async def start(self) -> None: ...

    async def end(self) -> None: ...


def processors(base: type[Any]) -> tuple[type[Any], type[Any]]:
    """The pass-through and sink processor classes, subclassing ``base`` (a ``FrameProcessor``).

    Both are defined here, each with its own ``process_frame``, so both sides run
    the same processor code.
    """

    class Passthrough(base):
        """The pass-through processor every hop goes through."""

        async def process_frame(self, frame: Any, direction: Any) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)

    class Sink(base):
        """Counts frames of one class; sets ``event`` when ``count`` reaches ``target``."""

        def __init__(self, cls: type[Any]) -> None:
            super().__init__()
            self.cls = cls
            self.count = 0
            self.target = 0
            self.event = asyncio.Event()

        async def process_frame(self, frame: Any, direction: Any) -> None:
            await super().process_frame(frame, direction)
            if type(frame) is self.cls:
                self.count += 1
                if self.count >= self.target:
                    self.event.set()
            else:
                await self.push_frame(frame, direction)

    return Passthrough, Sink


def rss_bytes() -> int:
    """Resident set size from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def drain() -> None:
    """Yield until no other callback is ready on the loop (observer queues and the like are empty)."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # stdlib loop; other loops: a bounded number of yields
    for _ in range(100_000 if ready is not None else 100):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


def frames(cls: type[Any], n: int) -> list[Any]:
    """``n`` audio frames of class ``cls``."""
    return [cls(audio=AUDIO, sample_rate=16000, num_channels=1) for _ in range(n)]


async def _tput(call: Call, sink: Any, batch: list[Any]) -> tuple[float, float]:
    sink.count, sink.target = 0, len(batch)
    sink.event.clear()
    queue = call.queue
    t0, c0 = time.perf_counter(), time.process_time()
    for f in batch:
        await queue(f)
    await sink.event.wait()
    await drain()
    n = len(batch)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def _pingpong(call: Call, sink: Any, batch: list[Any]) -> tuple[float, float]:
    sink.count, sink.target = 0, 0
    queue, event = call.queue, sink.event
    t0, c0 = time.perf_counter(), time.process_time()
    for f in batch:
        sink.target += 1
        event.clear()
        await queue(f)
        await event.wait()
    await drain()
    n = len(batch)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def hops(
    cls: type[Any],
    cfg: dict[str, Any],
    procs: tuple[type[Any], type[Any]],
    new_call: Callable[[list[Any]], Call],
) -> dict[str, dict[str, float]]:
    """Median µs/frame through K pass-throughs for every K: tput and ping-pong, wall and CPU.

    One call per K, all started up front; each repeat measures every K in turn, so
    drift in machine load hits all K alike instead of biasing the slope.
    """
    passthrough, sink_cls = procs
    sinks = {k: sink_cls(cls) for k in KS}
    calls = {k: new_call([*(passthrough() for _ in range(k)), sinks[k]]) for k in KS}
    for call in calls.values():
        await call.start()
    await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in calls.values())), 30)
    await drain()
    for k in KS:
        await _tput(calls[k], sinks[k], frames(cls, cfg["warm"]))
        await _pingpong(calls[k], sinks[k], frames(cls, cfg["warm"]))
    samples: dict[int, dict[str, list[float]]] = {
        k: {"tput": [], "tput_cpu": [], "pp": [], "pp_cpu": []} for k in KS
    }
    for _ in range(cfg["repeats"]):
        for k in KS:
            tb, pb = frames(cls, cfg["n_tput"]), frames(cls, cfg["n_pp"])
            gc.collect()
            gc.disable()
            try:
                wall, cpu = await _tput(calls[k], sinks[k], tb)
                pp, pp_cpu = await _pingpong(calls[k], sinks[k], pb)
            finally:
                gc.enable()
            samples[k]["tput"].append(wall)
            samples[k]["tput_cpu"].append(cpu)
            samples[k]["pp"].append(pp)
            samples[k]["pp_cpu"].append(pp_cpu)
    for call in calls.values():
        await call.end()
    runs = [c.run_task for c in calls.values() if c.run_task is not None]
    await asyncio.wait_for(asyncio.gather(*runs), 30)
    return {str(k): {m: statistics.median(v) for m, v in samples[k].items()} for k in KS}


async def idle_calls(n: int, new_idle_call: Callable[[], Call], batch: int = 50) -> dict[str, Any]:
    """Tasks and RSS per started idle call; then end them all."""
    for _ in range(2):  # warm-up: imports, lazily built class state, caches
        call = new_idle_call()
        await call.start()
        await asyncio.wait_for(call.started.wait(), 30)
        await call.end()
        assert call.run_task is not None
        await asyncio.wait_for(call.run_task, 30)
    await drain()
    gc.collect()
    rss0, tasks0 = rss_bytes(), len(asyncio.all_tasks())
    t0 = time.perf_counter()
    calls: list[Call] = []
    for i in range(0, n, batch):
        group = [new_idle_call() for _ in range(min(batch, n - i))]
        for c in group:
            await c.start()
        await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in group)), 60)
        calls.extend(group)
    start_s = time.perf_counter() - t0
    for _ in range(3):
        await drain()
        await asyncio.sleep(0.05)
    gc.collect()
    rss1, tasks1 = rss_bytes(), len(asyncio.all_tasks())
    t0 = time.perf_counter()
    for c in calls:
        await c.end()
    runs = [c.run_task for c in calls if c.run_task is not None]
    done, pending = await asyncio.wait(runs, timeout=120)
    for t in pending:
        t.cancel()
    return {
        "n": n,
        "tasks_per_session": (tasks1 - tasks0) / n,
        "idle_session_kb": (rss1 - rss0) / n / 1024,
        "start_s": start_s,
        "end_s": time.perf_counter() - t0,
        "ended_cleanly": len(done),
    }
