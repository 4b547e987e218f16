"""Multi-worker serving: SO_REUSEPORT workers, supervision (restart), graceful SIGTERM drain.

The sharing and drain tests run on both media engines (``--engine aiohttp|picows``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time

import aiohttp
import pytest

import _server_helpers
from _helpers import expected, require
from _server_helpers import free_port, health, serve, wait_up

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason=expected("needs SO_REUSEPORT"))


def _engine(engine: str) -> tuple[str, ...]:
    """``serve`` arguments selecting ``engine`` (picows: the aiohttp app on a port of its own)."""
    if engine == "aiohttp":
        return ()
    require(engine)
    return ("--engine", engine, "--http-port", str(free_port()))


ENGINES = pytest.mark.parametrize("engine", ["aiohttp", "picows"])

stop_after = _server_helpers.stop_after  # the fixture: kills servers a test left running


def _pids_seen(port: int, want: int, within: float = 30.0) -> dict[int, int]:
    """Worker id → pid of the workers answering on ``port`` (bounded in time)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + within
    while len(seen) < want and time.monotonic() < deadline:
        h = health(port)
        if h is not None:
            seen[h["worker"]] = h["pid"]
        else:
            time.sleep(0.02)
    return seen


@ENGINES
def test_two_workers_share_one_port(stop_after: list[subprocess.Popen[bytes]], engine: str) -> None:
    port = free_port()
    proc = serve(port, "--workers", "2", *_engine(engine))
    stop_after.append(proc)
    wait_up(port, proc)
    seen = _pids_seen(port, 2)
    assert sorted(seen) == [0, 1], seen
    assert len(set(seen.values())) == 2

    async def calls_on_both() -> dict[int, int]:
        async with aiohttp.ClientSession() as s:
            socks = [await s.ws_connect(f"http://127.0.0.1:{port}/ws") for _ in range(24)]
            for ws in socks:
                await ws.send_bytes(b"\x10\x00" * 160)
            for ws in socks:
                assert (await asyncio.wait_for(ws.receive(), 5.0)).data == b"\x10\x00" * 160
            active: dict[int, int] = {}
            for _ in range(400):
                h = await asyncio.to_thread(health, port)
                if h is not None:
                    active[h["worker"]] = h["active"]
                if len(active) == 2 and sum(active.values()) == len(socks):
                    break
            for ws in socks:
                await ws.close()
            return active

    active = asyncio.run(calls_on_both())
    assert sum(active.values()) == 24, active
    assert all(n > 0 for n in active.values()), active
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_crashed_worker_is_restarted(stop_after: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    proc = serve(port, "--workers", "2")
    stop_after.append(proc)
    wait_up(port, proc)
    seen = _pids_seen(port, 2)
    assert len(seen) == 2
    os.kill(seen[0], signal.SIGKILL)
    new_pid = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        h = health(port)
        if h is not None and h["worker"] == 0 and h["pid"] != seen[0]:
            new_pid = h["pid"]
            break
        time.sleep(0.02)
    assert new_pid is not None, "worker 0 was not restarted"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


@ENGINES
def test_sigterm_drains_gracefully(stop_after: list[subprocess.Popen[bytes]], engine: str) -> None:
    port = free_port()
    proc = serve(port, "--workers", "1", "--drain-timeout", "10", *_engine(engine))
    stop_after.append(proc)
    wait_up(port, proc)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            await ws.send_bytes(b"\x01\x00" * 160)
            assert (await asyncio.wait_for(ws.receive(), 5.0)).data == b"\x01\x00" * 160
            proc.send_signal(signal.SIGTERM)
            # New calls are refused: the listener closes (connection refused) or answers 503.
            refused = False
            for _ in range(100):
                try:
                    async with s.ws_connect(f"http://127.0.0.1:{port}/ws"):
                        pass
                except aiohttp.WSServerHandshakeError as exc:
                    refused = exc.status == 503
                except aiohttp.ClientConnectionError:
                    refused = True
                if refused:
                    break
                await asyncio.sleep(0.05)
            assert refused
            # The call in progress keeps working during the drain.
            for i in range(5):
                await ws.send_bytes(bytes([i, 0]) * 160)
                assert (await asyncio.wait_for(ws.receive(), 5.0)).data == bytes([i, 0]) * 160
            assert proc.poll() is None
        # The call ended: the worker and the supervisor exit cleanly, well before the drain timeout.
        t0 = time.monotonic()
        await asyncio.to_thread(proc.wait, 15)
        assert time.monotonic() - t0 < 8

    asyncio.run(scenario())
    assert proc.wait(timeout=5) == 0


@ENGINES
def test_drain_timeout_bounds_a_call_that_does_not_end(
    stop_after: list[subprocess.Popen[bytes]], engine: str
) -> None:
    port = free_port()
    proc = serve(port, "--workers", "1", "--drain-timeout", "1", *_engine(engine))
    stop_after.append(proc)
    wait_up(port, proc)

    async def scenario() -> float:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            await ws.send_bytes(b"\x01\x00" * 160)
            await asyncio.wait_for(ws.receive(), 5.0)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            msg = await asyncio.wait_for(ws.receive(), 15.0)  # the server closes the call
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            return time.monotonic() - t0

    elapsed = asyncio.run(scenario())
    assert 0.5 < elapsed < 8
    assert proc.wait(timeout=15) == 0


ECHO_WAIT = 20.0  # a slow echo on a loaded machine is not a dropped call; a lost one never comes


async def _echo_call(session: aiohttp.ClientSession, url: str, frames: int) -> str | None:
    """An echo call of ``frames`` 20 ms frames, every echo checked; None when whole, else what broke."""
    got, sent = bytearray(), bytearray()
    try:
        async with session.ws_connect(url) as ws:
            for i in range(frames):
                frame = bytes([i & 0xFF, 1]) * 160
                sent += frame
                await ws.send_bytes(frame)
                await asyncio.sleep(0.02)
                while len(got) < len(sent) - 4 * 320:
                    msg = await asyncio.wait_for(ws.receive(), ECHO_WAIT)
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        return f"{msg.type.name} after {len(got)} of {len(sent)} bytes"
                    got += msg.data
            while len(got) < len(sent):
                msg = await asyncio.wait_for(ws.receive(), ECHO_WAIT)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    return f"{msg.type.name} after {len(got)} of {len(sent)} bytes"
                got += msg.data
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return f"{type(exc).__name__} after {len(got)} of {len(sent)} bytes"
    return None if got == sent else "echo differs"


@ENGINES
@pytest.mark.serial  # 30 calls that must all outlive the drain: .ci/run runs it alone, after the parallel run
def test_sigterm_under_load_refuses_new_calls_and_drops_none(
    stop_after: list[subprocess.Popen[bytes]], engine: str
) -> None:
    """30 calls in progress (4 to 7 s long each) when SIGTERM comes: every one goes on to its
    end with all its audio echoed, every new call is refused, and the server exits cleanly."""
    port = free_port()
    proc = serve(port, "--workers", "1", "--drain-timeout", "30", "--call-rate", "0", *_engine(engine))
    stop_after.append(proc)
    wait_up(port, proc)
    url = f"http://127.0.0.1:{port}/ws"

    async def scenario() -> tuple[list[str | None], int, int]:
        async with aiohttp.ClientSession() as s:
            calls = [asyncio.create_task(_echo_call(s, url, 200 + 5 * i)) for i in range(30)]
            deadline = time.monotonic() + 15
            health = None
            while health is None or health["active"] < 30:  # all 30 in progress
                assert time.monotonic() < deadline and not any(c.done() for c in calls), health
                await asyncio.sleep(0.05)
                health = await asyncio.to_thread(_server_helpers.health, port)
            proc.send_signal(signal.SIGTERM)
            refused = admitted = 0
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:  # new calls: once the drain began, refused, none admitted
                try:
                    async with s.ws_connect(url):
                        admitted += refused > 0  # before that the signal had not reached the worker yet
                except aiohttp.WSServerHandshakeError as exc:
                    refused += exc.status == 503
                except aiohttp.ClientConnectionError:
                    refused += 1
                await asyncio.sleep(0.05)
            return await asyncio.wait_for(asyncio.gather(*calls), 45), refused, admitted

    results, refused, admitted = asyncio.run(scenario())
    assert [r for r in results if r is not None] == []  # zero dropped
    assert refused > 0 and admitted == 0
    assert proc.wait(timeout=30) == 0
