"""LoopWatchdog: a deliberately blocking callback is reported with its length and its stack."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from flowcat.errors import ConfigError
from flowcat.runtime import LoopStall, LoopWatchdog

# Timing-sensitive (exact loop-stall counts): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial


def _deliberately_blocking(secs: float) -> None:
    time.sleep(secs)  # holds the event loop: every other callback waits


async def _wait_stalls(dog: LoopWatchdog, n: int) -> None:
    for _ in range(500):  # bounded: 5 s
        if dog.stalls >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{dog.stalls} stalls reported, {n} expected")


async def test_blocking_callback_is_reported_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[LoopStall] = []
    dog = LoopWatchdog(threshold=0.05, on_stall=seen.append, log_first=1, log_every=1000)
    dog.start()
    try:
        await asyncio.sleep(0.1)  # a quiet loop: no stall
        assert dog.stalls == 0
        with caplog.at_level(logging.WARNING, logger="flowcat.watchdog"):
            asyncio.get_running_loop().call_soon(_deliberately_blocking, 0.3)
            await _wait_stalls(dog, 1)
            stall = seen[0]
            assert 0.25 <= stall.secs < 1.0
            assert any("_deliberately_blocking" in line for line in stall.stack)
            assert "time.sleep(secs)" in stall.where()
            assert dog.worst_secs == stall.secs
            # a second stall: counted and given to the metric, but the log is rate-limited
            asyncio.get_running_loop().call_soon(_deliberately_blocking, 0.15)
            await _wait_stalls(dog, 2)
        assert len(seen) == 2 and seen[1].secs >= 0.1
        lines = [r for r in caplog.records if r.name == "flowcat.watchdog"]
        assert len(lines) == 1
        assert "event loop blocked for" in lines[0].getMessage()
        assert "_deliberately_blocking" in lines[0].getMessage()
    finally:
        dog.stop()
    assert not dog.running


async def test_short_blocks_under_threshold_are_not_stalls() -> None:
    dog = LoopWatchdog(threshold=0.2)
    dog.start()
    try:
        for _ in range(3):
            _deliberately_blocking(0.02)
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.1)
        assert dog.stalls == 0
    finally:
        dog.stop()


def test_bad_threshold() -> None:
    with pytest.raises(ConfigError):
        LoopWatchdog(threshold=0)


async def test_server_counts_stalls_in_healthz_and_metrics() -> None:
    import aiohttp
    from aiohttp import web

    from flowcat.server._app import ServerConfig, ServerState, create_app

    state = ServerState(ServerConfig(capacity=4, idle_timeout_secs=None))
    runner = web.AppRunner(create_app(state.config, state=state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        assert state.metrics.watchdog.running
        asyncio.get_running_loop().call_soon(_deliberately_blocking, 0.25)
        await _wait_stalls(state.metrics.watchdog, 1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                health = await r.json()
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
        assert health["loop_stalls"]["count"] == 1 and health["loop_stalls"]["worst_ms"] >= 200
        assert "flowcat_event_loop_stalls_total 1.0" in text
    finally:
        await runner.cleanup()
    assert not state.metrics.watchdog.running
