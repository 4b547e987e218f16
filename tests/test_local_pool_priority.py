"""The local inference pool runs queued jobs by priority (URGENT before LATER), then in order; a
queued job whose caller was cancelled never runs; shutdown cancels what is queued."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowcat.services._local_pool import LATER, URGENT, LocalInferencePool


async def test_urgent_jobs_overtake_later_ones_in_the_queue() -> None:
    pool = LocalInferencePool(workers=1, max_pending=8)
    gate = threading.Event()
    busy = threading.Event()
    order: list[str] = []

    def block() -> None:
        busy.set()
        gate.wait(10)

    def job(name: str) -> str:
        order.append(name)
        return name

    first = asyncio.ensure_future(pool.run(block))
    assert await asyncio.to_thread(busy.wait, 10)
    # Queued while the worker is busy: a reply's second and third sentences, then a transcription.
    jobs = [asyncio.ensure_future(pool.run(lambda n=n: job(n), LATER)) for n in ("sentence 2", "sentence 3")]
    jobs.append(asyncio.ensure_future(pool.run(lambda: job("transcription"), URGENT)))
    jobs.append(asyncio.ensure_future(pool.run(lambda: job("first sentence"))))  # URGENT by default
    await asyncio.sleep(0)
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *jobs), 10)
    assert order == ["transcription", "first sentence", "sentence 2", "sentence 3"]
    assert pool.pending == 0
    pool.shutdown()


async def test_a_cancelled_queued_job_never_runs_and_shutdown_cancels_the_queue() -> None:
    pool = LocalInferencePool(workers=1, max_pending=8)
    gate = threading.Event()
    busy = threading.Event()
    ran: list[int] = []

    def block() -> None:
        busy.set()
        gate.wait(10)

    first = asyncio.ensure_future(pool.run(block))
    assert await asyncio.to_thread(busy.wait, 10)
    dropped = asyncio.ensure_future(pool.run(lambda: ran.append(1)))
    await asyncio.sleep(0)
    dropped.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dropped  # (its concurrent future is cancelled from the loop's callback)
    left = pool.submit(lambda: ran.append(2))
    gate.set()
    await asyncio.wait_for(first, 10)
    assert await asyncio.wait_for(asyncio.wrap_future(left), 10) is None
    assert ran == [2] and pool.pending == 0
    # Shutdown: a job still queued is cancelled.
    gate.clear()
    busy.clear()
    blocker = pool.submit(block)
    assert await asyncio.to_thread(busy.wait, 10)
    queued = pool.submit(lambda: ran.append(3))
    pool.shutdown()
    gate.set()
    assert queued.cancelled() and ran == [2]
    await asyncio.wait_for(asyncio.wrap_future(blocker), 10)
    with pytest.raises(asyncio.CancelledError):
        await pool.run(lambda: 4)  # a closed pool runs nothing
