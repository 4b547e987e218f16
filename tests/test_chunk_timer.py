"""ChunkTimer: the per-chunk wait of a streamed reply, bounded by one lazily re-armed timer.

Virtual time (``run_virtual``): the sleeps below are the stream's pace, not waits for the
test; each case asserts what raised, when (loop time), and how many timers were armed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flowcat.services._backoff import ChunkTimer
from flowcat.testing import run_virtual


async def _stream(gaps: list[float]) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield i


async def _consume(gaps: list[float], wait: float | None, handle_secs: float = 0.0) -> tuple[list[int], float, str]:
    """Read the stream under a ChunkTimer; returns (chunks got, loop time at the end, outcome)."""
    loop = asyncio.get_running_loop()
    got: list[int] = []
    t0 = loop.time()
    it = _stream(gaps).__aiter__()
    timer = ChunkTimer()
    try:
        async with timer:
            while True:
                timer.expect(wait)
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    return got, loop.time() - t0, "done"
                timer.pause()
                got.append(chunk)
                if handle_secs:
                    await asyncio.sleep(handle_secs)  # handling a chunk is not a wait
    except TimeoutError:
        return got, loop.time() - t0, "timeout" + timer.within()


def test_a_steady_stream_longer_than_the_bound_is_never_cut() -> None:
    # 100 chunks 0.15 s apart: 15 s in all, far beyond the 0.5 s bound of each wait.
    got, elapsed, outcome = run_virtual(_consume([0.15] * 100, 0.5))
    assert outcome == "done"
    assert got == list(range(100))
    assert elapsed == pytest.approx(15.0, abs=1e-6)


def test_a_stall_expires_the_wait_at_its_own_due_time() -> None:
    # Three chunks, then a 2 s stall: the wait after chunk 2 is due 0.5 s after it.
    got, elapsed, outcome = run_virtual(_consume([0.1, 0.1, 0.1, 2.0], 0.5))
    assert got == [0, 1, 2]
    assert outcome == "timeout within 0.5 s"
    assert elapsed == pytest.approx(0.3 + 0.5, abs=1e-6)


def test_time_spent_handling_a_chunk_is_not_bounded() -> None:
    # Each chunk takes 1 s to handle (> the 0.5 s bound) and the next comes 0.1 s after.
    got, _, outcome = run_virtual(_consume([0.1] * 5, 0.5, handle_secs=1.0))
    assert outcome == "done"
    assert got == [0, 1, 2, 3, 4]


def test_a_shorter_bound_than_the_armed_timer_re_arms_it() -> None:
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        timer = ChunkTimer()
        try:
            async with timer:
                timer.expect(30.0)  # the first answer may take long
                await asyncio.sleep(0.2)
                timer.pause()
                timer.expect(1.0)  # then each chunk within 1 s: due at 1.2, not 30
                await asyncio.sleep(10.0)
        except TimeoutError:
            return "timeout", loop.time() - t0
        return "done", loop.time() - t0

    outcome, elapsed = run_virtual(main())
    assert outcome == "timeout"
    assert elapsed == pytest.approx(1.2, abs=1e-6)


def test_one_timer_per_bound_period_not_one_per_chunk() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        armed = 0
        real_call_at = loop.call_at

        def counting_call_at(when, cb, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal armed
            armed += 1
            return real_call_at(when, cb, *args, **kwargs)

        async with ChunkTimer() as timer:
            loop.call_at = counting_call_at  # type: ignore[method-assign]
            try:
                for _ in range(200):  # 200 chunks 10 ms apart (2 s) under a 1 s bound
                    timer.expect(1.0)
                    await asyncio.sleep(0.01)
                    timer.pause()
            finally:
                loop.call_at = real_call_at  # type: ignore[method-assign]
        return armed

    armed = run_virtual(main())
    # asyncio.sleep arms one timer per chunk itself (200); the ChunkTimer adds about one per
    # second of stream (3 at most here), where asyncio.timeout per chunk would add 200.
    assert 200 < armed <= 203


def test_no_bound_never_expires() -> None:
    got, _, outcome = run_virtual(_consume([0.1, 5.0, 0.1], None))
    assert outcome == "done"
    assert got == [0, 1, 2]


def test_leaving_the_scope_leaves_no_timer_armed() -> None:
    async def main() -> list[asyncio.TimerHandle]:
        loop = asyncio.get_running_loop()
        handles: list[asyncio.TimerHandle] = []
        real_call_at = loop.call_at

        def keeping_call_at(when, cb, *args, **kwargs):  # type: ignore[no-untyped-def]
            handle = real_call_at(when, cb, *args, **kwargs)
            handles.append(handle)
            return handle

        loop.call_at = keeping_call_at  # type: ignore[method-assign]
        try:
            async with ChunkTimer() as timer:
                timer.expect(60.0)
                assert len(handles) == 1 and not handles[0].cancelled()  # armed while a wait is bounded
        finally:
            loop.call_at = real_call_at  # type: ignore[method-assign]
        return handles

    handles = run_virtual(main())
    assert len(handles) == 1 and handles[0].cancelled()  # and cancelled once the scope is left
