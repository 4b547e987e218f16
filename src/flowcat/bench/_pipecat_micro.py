"""Pipecat side of ``flowcat bench micro``: run inside pipecat's own virtual environment.

Imports only pipecat and the standard library (flowcat is not installed there).
Runs the same measurements as the flowcat side — per-hop routing cost in
throughput and ping-pong mode, frames/s at K=3, tasks and RSS per idle call —
and prints ONE JSON object on the last line of stdout.

Usage: ``python _pipecat_micro.py [--quick] [--idle-calls N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import warnings
from typing import Any

import pipecat
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline import worker as _worker_mod
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

AUDIO = bytes(320)
PAGE = os.sysconf("SC_PAGE_SIZE")
KINDS = {"data": OutputAudioRawFrame, "system": InputAudioRawFrame}
KS = (1, 3, 10)
OBS_OFF: dict[str, Any] = {"enable_rtvi": False, "enable_turn_tracking": False, "idle_timeout_secs": None}


class Passthrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Sink(FrameProcessor):
    """Counts frames of one class; sets ``event`` when ``count`` reaches ``target``."""

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


class Call:
    """One PipelineWorker + WorkerRunner, as a server runs one per connection."""

    def __init__(self, procs: list[FrameProcessor], observers: bool, on_started: Any = None) -> None:
        kwargs = {} if observers else dict(OBS_OFF)
        self.worker = PipelineWorker(Pipeline(procs), **kwargs)
        self.runner = WorkerRunner(handle_sigint=False)
        self.started = asyncio.Event()
        self.run_task: asyncio.Task[None] | None = None
        cb = on_started

        @self.worker.event_handler("on_pipeline_started")
        async def _started(_w: Any, _f: Any) -> None:
            self.started.set()
            if cb is not None:
                cb()

    async def start(self) -> None:
        await self.runner.add_workers(self.worker)
        self.run_task = asyncio.create_task(self.runner.run())

    async def end(self) -> None:
        await self.worker.queue_frame(EndFrame())


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def drain() -> None:
    """Yield until no other callback is ready (observer queues and the like are empty)."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # stdlib loop; other loops: a bounded number of yields
    for _ in range(100_000 if ready is not None else 100):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


def frames(cls: type[Frame], n: int) -> list[Frame]:
    return [cls(audio=AUDIO, sample_rate=16000, num_channels=1) for _ in range(n)]  # type: ignore[call-arg]


async def tput(call: Call, sink: Sink, batch: list[Frame]) -> tuple[float, float]:
    sink.count, sink.target = 0, len(batch)
    sink.event.clear()
    queue = call.worker.queue_frame
    t0, c0 = time.perf_counter(), time.process_time()
    for f in batch:
        await queue(f)
    await sink.event.wait()
    await drain()
    n = len(batch)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def pingpong(call: Call, sink: Sink, batch: list[Frame]) -> tuple[float, float]:
    sink.count, sink.target = 0, 0
    queue, event = call.worker.queue_frame, sink.event
    t0, c0 = time.perf_counter(), time.process_time()
    for f in batch:
        sink.target += 1
        event.clear()
        await queue(f)
        await event.wait()
    await drain()
    n = len(batch)
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def hops(kind: str, observers: bool, cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Median µs/frame (tput and ping-pong, wall and CPU) through K pass-throughs, every K.

    One call per K, all started up front; each repeat measures every K in turn.
    """
    cls = KINDS[kind]
    sinks = {k: Sink(cls) for k in KS}
    calls = {k: Call([*(Passthrough() for _ in range(k)), sinks[k]], observers) for k in KS}
    for call in calls.values():
        await call.start()
    await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in calls.values())), 30)
    await drain()
    for k in KS:
        await tput(calls[k], sinks[k], frames(cls, cfg["warm"]))
        await pingpong(calls[k], sinks[k], frames(cls, cfg["warm"]))
    samples: dict[int, dict[str, list[float]]] = {
        k: {"tput": [], "tput_cpu": [], "pp": [], "pp_cpu": []} for k in KS
    }
    for _ in range(cfg["repeats"]):
        for k in KS:
            tb, pb = frames(cls, cfg["n_tput"]), frames(cls, cfg["n_pp"])
            gc.collect()
            gc.disable()
            try:
                wall, cpu = await tput(calls[k], sinks[k], tb)
                pp, pp_cpu = await pingpong(calls[k], sinks[k], pb)
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
    """Tasks and RSS per started idle call (3 pass-throughs, default worker)."""
    for _ in range(2):  # warm-up: imports, lazily built class state
        call = Call([Passthrough() for _ in range(3)], True)
        await call.start()
        await asyncio.wait_for(call.started.wait(), 30)
        await call.end()
        await asyncio.wait_for(call.run_task, 30)  # type: ignore[arg-type]
    await drain()
    gc.collect()
    rss0, tasks0 = rss_bytes(), len(asyncio.all_tasks())
    t0 = time.perf_counter()
    calls: list[Call] = []
    for i in range(0, n, batch):
        group = [Call([Passthrough() for _ in range(3)], True) for _ in range(min(batch, n - i))]
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        cfg = {"warm": 50, "n_tput": 200, "n_pp": 100, "repeats": 3}
    else:
        cfg = {"warm": 300, "n_tput": 2000, "n_pp": 1000, "repeats": 5}
    out: dict[str, Any] = {"pipecat_version": getattr(pipecat, "__version__", None), "config": cfg}
    # Idle calls first: memory freed by the hop runs would otherwise be reused and hide RSS growth.
    out["idle"] = await idle_calls(args.idle_calls)
    frame_us: dict[str, dict[str, dict[str, float]]] = {}
    for label, kind, observers in (
        ("data", "data", True),
        ("system", "system", True),
        ("data_obs_off", "data", False),
    ):
        frame_us[label] = await hops(kind, observers, cfg)
    out["frame_us"] = frame_us
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--idle-calls", type=int, default=500)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    # pipecat logs DEBUG to stderr by default; keep WARNING and above (hop-path
    # trace f-strings are still formatted, as in production).
    _worker_mod.logger.remove()
    _worker_mod.logger.add(sys.stderr, level="WARNING")
    result = asyncio.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
