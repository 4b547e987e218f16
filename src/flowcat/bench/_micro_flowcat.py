"""Flowcat side of ``flowcat bench micro`` (runs in-process).

The measurements are :mod:`flowcat.bench._micro_kernel`, which the pipecat worker
(:mod:`flowcat.bench._pipecat_micro`) runs too: here a real
:class:`~flowcat.PipelineTask` running ``Pipeline([Passthrough]*K + [Sink])``,
frames injected with ``await task.queue_frame(...)`` as a transport would,
counted at the sink processor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..frames import EndFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
from ..runtime import FrameProcessor, Pipeline, PipelineTask
from . import _micro_kernel as kernel
from ._micro_kernel import KS, rss_bytes

__all__ = ["QUICK", "FULL", "KS", "Passthrough", "Sink", "hops", "idle_calls", "rss_bytes", "run"]

KINDS: dict[str, type[Frame]] = {"data": OutputAudioRawFrame, "system": InputAudioRawFrame}
QUICK = {"warm": 200, "n_tput": 2000, "n_pp": 1000, "repeats": 3, "idle_calls": 100}
FULL = {"warm": 2000, "n_tput": 20000, "n_pp": 10000, "repeats": 7, "idle_calls": 1000}

Passthrough, Sink = kernel.processors(FrameProcessor)


class _Call:
    """One PipelineTask plus the task running ``task.run()``, as a server holds per call."""

    def __init__(self, procs: list[FrameProcessor]) -> None:
        self.task = PipelineTask(Pipeline(procs))
        self.queue = self.task.queue_frame
        self.started = asyncio.Event()
        self.run_task: asyncio.Task[None] | None = None

        @self.task.event_handler("on_pipeline_started")
        def _started(_t: PipelineTask, _f: object) -> None:
            self.started.set()

    async def start(self) -> None:
        self.run_task = asyncio.get_running_loop().create_task(self.task.run())

    async def end(self) -> None:
        await self.task.queue_frame(EndFrame())


async def hops(kind: str, cfg: dict[str, int]) -> dict[str, dict[str, float]]:
    """Median µs/frame through K pass-throughs for every K (see :func:`kernel.hops`)."""
    return await kernel.hops(KINDS[kind], cfg, (Passthrough, Sink), _Call)


async def idle_calls(n: int, batch: int = 50) -> dict[str, Any]:
    """Tasks and RSS per started idle call (3 pass-throughs); then end them all."""
    return await kernel.idle_calls(n, lambda: _Call([Passthrough() for _ in range(3)]), batch)


async def run(cfg: dict[str, int]) -> dict[str, Any]:
    """Every flowcat measurement; same shape as the pipecat worker's output."""
    # Idle calls first: memory freed by the hop runs would otherwise be reused and hide RSS growth.
    idle = await idle_calls(cfg["idle_calls"])
    frame_us: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("data", "system"):
        frame_us[kind] = await hops(kind, cfg)
    return {"config": cfg, "frame_us": frame_us, "idle": idle}
