"""Flowcat side of ``flowcat bench micro`` (runs in-process).

Mirrors :mod:`flowcat.bench._pipecat_micro` measurement for measurement: a real
:class:`~flowcat.PipelineTask` running ``Pipeline([Passthrough]*K + [Sink])``,
frames injected with ``await task.queue_frame(...)`` as a transport would,
counted at the sink processor.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from typing import Any

from ..frames import EndFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
from ..runtime import FrameDirection, FrameProcessor, Pipeline, PipelineTask

__all__ = ["QUICK", "FULL", "KS", "Passthrough", "Sink", "hops", "idle_calls", "rss_bytes", "run"]

AUDIO = bytes(320)
PAGE = os.sysconf("SC_PAGE_SIZE")
KINDS: dict[str, type[Frame]] = {"data": OutputAudioRawFrame, "system": InputAudioRawFrame}
KS = (1, 3, 10)
QUICK = {"warm": 200, "n_tput": 2000, "n_pp": 1000, "repeats": 3, "idle_calls": 100}
FULL = {"warm": 2000, "n_tput": 20000, "n_pp": 10000, "repeats": 7, "idle_calls": 1000}


class Passthrough(FrameProcessor):
    """The pass-through processor every hop goes through."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Sink(FrameProcessor):
    """Counts frames of one class (and keeps them); sets ``event`` at ``target``."""

    def __init__(self, cls: type[Frame]) -> None:
        super().__init__()
        self.cls = cls
        self.count = 0
        self.target = 0
        self.event = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if type(frame) is self.cls:
            self.count += 1
            if self.count >= self.target:
                self.event.set()
        else:
            await self.push_frame(frame, direction)


def rss_bytes() -> int:
    """Resident set size from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def drain() -> None:
    """Yield until no other callback is ready on the loop (same as the pipecat side)."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # stdlib loop; other loops: a bounded number of yields
    for _ in range(100_000 if ready is not None else 100):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


def _frames(cls: type[Frame], n: int) -> list[Frame]:
    return [cls(audio=AUDIO, sample_rate=16000, num_channels=1) for _ in range(n)]  # type: ignore[call-arg]


class _Call:
    """One PipelineTask plus the task running ``task.run()``, as a server holds per call."""

    def __init__(self, procs: list[FrameProcessor]) -> None:
        self.task = PipelineTask(Pipeline(procs))
        self.started = asyncio.Event()
        self.run_task: asyncio.Task[None] | None = None

        @self.task.event_handler("on_pipeline_started")
        def _started(_t: PipelineTask, _f: object) -> None:
            self.started.set()

    def start(self) -> None:
        self.run_task = asyncio.get_running_loop().create_task(self.task.run())

    async def end(self) -> None:
        await self.task.queue_frame(EndFrame())


async def _tput(task: PipelineTask, sink: Sink, batch: list[Frame]) -> tuple[float, float]:
    sink.count, sink.target = 0, len(batch)
    sink.event.clear()
    queue = task.queue_frame
    t0, c0 = time.perf_counter(), time.process_time()
    for f in batch:
        await queue(f)
    await sink.event.wait()
    await drain()
    n = len(batch)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def _pingpong(task: PipelineTask, sink: Sink, batch: list[Frame]) -> tuple[float, float]:
    sink.count, sink.target = 0, 0
    queue, event = task.queue_frame, sink.event
    t0, c0 = time.perf_counter(), time.process_time()
    for f in batch:
        sink.target += 1
        event.clear()
        await queue(f)
        await event.wait()
    await drain()
    n = len(batch)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def hops(kind: str, cfg: dict[str, int]) -> dict[str, dict[str, float]]:
    """Median µs/frame through K pass-throughs for every K: tput and ping-pong, wall and CPU.

    One call per K, all started up front; each repeat measures every K in turn, so
    drift in machine load hits all K alike instead of biasing the slope.
    """
    cls = KINDS[kind]
    sinks = {k: Sink(cls) for k in KS}
    calls = {k: _Call([*(Passthrough() for _ in range(k)), sinks[k]]) for k in KS}
    for call in calls.values():
        call.start()
    await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in calls.values())), 30)
    await drain()
    for k in KS:
        await _tput(calls[k].task, sinks[k], _frames(cls, cfg["warm"]))
        await _pingpong(calls[k].task, sinks[k], _frames(cls, cfg["warm"]))
    samples: dict[int, dict[str, list[float]]] = {
        k: {"tput": [], "tput_cpu": [], "pp": [], "pp_cpu": []} for k in KS
    }
    for _ in range(cfg["repeats"]):
        for k in KS:
            tb, pb = _frames(cls, cfg["n_tput"]), _frames(cls, cfg["n_pp"])
            gc.collect()
            gc.disable()
            try:
                wall, cpu = await _tput(calls[k].task, sinks[k], tb)
                pp, pp_cpu = await _pingpong(calls[k].task, sinks[k], pb)
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


async def idle_calls(n: int, batch: int = 50) -> dict[str, Any]:
    """Tasks and RSS per started idle call (3 pass-throughs); then end them all."""
    for _ in range(2):  # warm-up: lazily built class state, caches
        call = _Call([Passthrough() for _ in range(3)])
        call.start()
        await asyncio.wait_for(call.started.wait(), 30)
        await call.end()
        assert call.run_task is not None
        await asyncio.wait_for(call.run_task, 30)
    await drain()
    gc.collect()
    rss0, tasks0 = rss_bytes(), len(asyncio.all_tasks())
    t0 = time.perf_counter()
    calls: list[_Call] = []
    for i in range(0, n, batch):
        group = [_Call([Passthrough() for _ in range(3)]) for _ in range(min(batch, n - i))]
        for c in group:
            c.start()
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


async def run(cfg: dict[str, int]) -> dict[str, Any]:
    """Every flowcat measurement; same shape as the pipecat worker's output."""
    # Idle calls first: memory freed by the hop runs would otherwise be reused and hide RSS growth.
    idle = await idle_calls(cfg["idle_calls"])
    frame_us: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("data", "system"):
        frame_us[kind] = await hops(kind, cfg)
    return {"config": cfg, "frame_us": frame_us, "idle": idle}
