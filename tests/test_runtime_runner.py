"""PipelineRunner: many tasks per process, graceful end on signals."""

from __future__ import annotations

import asyncio
import os
import signal

import flowcat.frames as F
from _helpers import Passthrough
from flowcat import FrameDirection, Pipeline, PipelineRunner, PipelineTask
from flowcat.testing import CaptureProcessor


async def test_runner_runs_many_tasks_and_ends_them_on_sigterm() -> None:
    sinks = [CaptureProcessor(FrameDirection.DOWNSTREAM) for _ in range(50)]
    tasks = [PipelineTask(Pipeline([Passthrough(), s])) for s in sinks]
    runner = PipelineRunner()
    started = asyncio.Event()
    count = 0

    def on_started(_t: PipelineTask, _f: object) -> None:
        nonlocal count
        count += 1
        if count == len(tasks):
            started.set()

    for t in tasks:
        t.add_event_handler("on_pipeline_started", on_started)
    run_all = asyncio.ensure_future(runner.run_all(tasks))
    await asyncio.wait_for(started.wait(), 5)
    assert len(runner.tasks) == 50
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(run_all, 10)
    assert all(t.stats.finished_by == "end" for t in tasks)
    assert all(isinstance(s.frames[-1], F.EndFrame) for s in sinks)
    assert not runner.tasks
