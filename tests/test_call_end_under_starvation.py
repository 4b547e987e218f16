"""A call's end on a CPU-starved loop: its cleanup is not cut short, its objects are not left in cycles.

What the 30-minute soak met (docs/reliability.md): with the server held off the CPU,
agent calls whose socket had closed were "did not finish after cancel; abandoning"
after the server's 5 s grace. Their runs were in ``PipelineTask._cleanup``, awaiting
processor cleanups that were not stuck at all: each cleanup ran as a task of its own,
a loop iteration to start and one to be seen done, and one iteration was a second of
every live call's work. The server then cancelled the run mid-cleanup, which skipped
the rest of the cleanup and the cut of the call's reference cycles: the deep collection
found those calls' objects in cycles among frozen objects.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import flowcat.frames as F
from _helpers import Passthrough, require
from flowcat import Pipeline, PipelineTask
from flowcat.testing import assert_call_leaves_nothing

# Timing-sensitive (starvation it creates itself): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial


class Cleans(Passthrough):
    """Records its cleanup (which does not suspend) in ``log``."""

    def __init__(self, log: list[str], name: str) -> None:
        super().__init__(name=name)
        self.log = log

    async def cleanup(self) -> None:
        await super().cleanup()
        self.log.append(self.name)


class SlowCleanup(Passthrough):
    """A cleanup that waits (a provider's socket closing on a starved host) until ``release``."""

    def __init__(self, log: list[str], release: asyncio.Event, entered: asyncio.Event) -> None:
        super().__init__(name="slow")
        self.log, self.release, self.entered = log, release, entered

    async def cleanup(self) -> None:
        await super().cleanup()
        self.entered.set()
        await self.release.wait()
        self.log.append(self.name)


async def _started(task: PipelineTask) -> asyncio.Future[None]:
    """Run ``task``; return its runner once the pipeline has started (bounded)."""
    started = asyncio.Event()

    @task.event_handler("on_pipeline_started")
    async def on_started(_t: PipelineTask, _frame: F.Frame) -> None:
        started.set()

    runner = asyncio.ensure_future(task.run())
    await asyncio.wait_for(started.wait(), 5.0)
    return runner


async def test_cleanups_that_do_not_suspend_cost_no_loop_iteration_each() -> None:
    """Twelve processors' cleanups after a cancel: a handful of loop iterations, not two per processor."""
    log: list[str] = []
    task = PipelineTask(Pipeline([Cleans(log, f"p{i}") for i in range(12)]), idle_timeout_secs=None)
    runner = await _started(task)
    iterations = 0
    loop = asyncio.get_running_loop()

    def tick() -> None:
        nonlocal iterations
        iterations += 1
        if not runner.done():
            loop.call_soon(tick)

    await task.cancel()
    loop.call_soon(tick)
    await asyncio.wait_for(runner, 5.0)
    assert log == [f"p{i}" for i in range(12)]  # every cleanup, in pipeline order
    assert iterations <= 8, iterations


async def test_a_run_cancelled_during_its_cleanup_leaves_no_cycle() -> None:
    """The owner gives up on the run while a cleanup waits: the cleanup is cancelled, and the
    call's cycles are cut all the same (nothing left to the collector, no task left)."""

    async def call() -> dict[str, Any]:
        log: list[str] = []
        release, entered = asyncio.Event(), asyncio.Event()
        task = PipelineTask(
            Pipeline([Cleans(log, "a"), SlowCleanup(log, release, entered), Cleans(log, "b")]),
            idle_timeout_secs=None,
        )
        runner = await _started(task)
        await task.cancel()
        await asyncio.wait_for(entered.wait(), 5.0)
        runner.cancel()  # what an owner that stops waiting does
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(runner, 5.0)
        release.set()  # (had the cleanup gone on, it would end now)
        for _ in range(3):
            await asyncio.sleep(0)
        return {"log": log, "finished_by": task.stats.finished_by}

    out = await assert_call_leaves_nothing(call)
    assert out["log"] == ["a"] and out["finished_by"] == "cancel"


async def test_a_cleanup_that_overruns_is_cancelled_and_the_next_ones_run(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    release, entered = asyncio.Event(), asyncio.Event()
    task = PipelineTask(
        Pipeline([SlowCleanup(log, release, entered), Cleans(log, "b")]),
        idle_timeout_secs=None,
        hook_timeout_secs=0.2,
    )
    runner = await _started(task)
    await task.cancel()
    await asyncio.wait_for(runner, 5.0)
    assert log == ["b"]
    assert any("slow" in r.getMessage() and "overran 0.2 s" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ the server


async def test_a_call_whose_cleanup_outlasts_the_end_grace_is_not_abandoned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller hangs up; one processor's cleanup takes longer than the server's end grace
    (a starved host). The server waits for the task's own bounded cancel: every cleanup runs,
    no "did not finish after cancel"."""
    require("picows")
    engine_tests = require("test_picows_engine")
    from flowcat.server import _session

    monkeypatch.setattr(_session, "_END_GRACE", 0.1)
    log: list[str] = []
    release, entered = asyncio.Event(), asyncio.Event()
    app = lambda call: [SlowCleanup(log, release, entered), Cleans(log, "after")]  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="flowcat.server"):
        async with engine_tests.engine(app=app) as e:
            ws = await e.ws_connect("/ws?sample_rate=8000")
            await e.running()
            await ws.close()
            await asyncio.wait_for(entered.wait(), 5.0)
            # Two end graces pass while the cleanup waits (the old server gave up after them).
            await asyncio.sleep(0.3)
            assert log == []
            release.set()
            await engine_tests.calls_ended(e)
    assert log == ["slow", "after"]
    assert not [r for r in caplog.records if "did not finish" in r.getMessage()]
