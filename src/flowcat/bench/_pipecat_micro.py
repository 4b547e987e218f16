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
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pipecat
from pipecat.frames.frames import EndFrame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline import worker as _worker_mod
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.workers.runner import WorkerRunner


def _load_kernel() -> Any:
    """The shared measurements, ``_micro_kernel.py`` beside this file (flowcat is not installed here)."""
    spec = importlib.util.spec_from_file_location(
        "_micro_kernel", Path(__file__).with_name("_micro_kernel.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


kernel = _load_kernel()
KINDS = {"data": OutputAudioRawFrame, "system": InputAudioRawFrame}
OBS_OFF: dict[str, Any] = {"enable_rtvi": False, "enable_turn_tracking": False, "idle_timeout_secs": None}
PROCS = kernel.processors(FrameProcessor)


class Call:
    """One PipelineWorker + WorkerRunner, as a server runs one per connection."""

    def __init__(self, procs: list[FrameProcessor], observers: bool) -> None:
        kwargs = {} if observers else dict(OBS_OFF)
        self.worker = PipelineWorker(Pipeline(procs), **kwargs)
        self.queue = self.worker.queue_frame
        self.runner = WorkerRunner(handle_sigint=False)
        self.started = asyncio.Event()
        self.run_task: asyncio.Task[None] | None = None

        @self.worker.event_handler("on_pipeline_started")
        async def _started(_w: Any, _f: Any) -> None:
            self.started.set()

    async def start(self) -> None:
        await self.runner.add_workers(self.worker)
        self.run_task = asyncio.create_task(self.runner.run())

    async def end(self) -> None:
        await self.worker.queue_frame(EndFrame())


async def hops(kind: str, observers: bool, cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Median µs/frame (tput and ping-pong, wall and CPU) through K pass-throughs, every K."""
    return dict(await kernel.hops(KINDS[kind], cfg, PROCS, lambda procs: Call(procs, observers)))


async def idle_calls(n: int, batch: int = 50) -> dict[str, Any]:
    """Tasks and RSS per started idle call (3 pass-throughs, default worker)."""
    passthrough = PROCS[0]
    return dict(await kernel.idle_calls(n, lambda: Call([passthrough() for _ in range(3)], True), batch))


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
