"""nginx as the WebSocket load balancer in front of two flowcat instances (issue 19, item 5).

The config is examples/nginx/flowcat.conf, its ports replaced. Echo calls (2 s of 20 ms
audio each, every echo checked) arrive continuously through nginx, 10 at a time; mid-load
instance 1 gets SIGTERM: its calls in progress go on to their end there, the new calls go
to instance 2; when it has exited it is started again on its port and takes calls again.
No call is lost: every call connects, gets all its audio back and is ended by its caller.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

import _server_helpers
from _helpers import missing
from _server_helpers import free_port, health, serve, wait_up

CONF = Path(__file__).parent.parent / "examples" / "nginx" / "flowcat.conf"
SLOTS = 10  # calls in progress at any time
FRAMES = 100  # 2 s of 20 ms frames per call
FRAME = 320  # 20 ms of PCM16 at 8 kHz
LOAD_SECS = 14.0
DRAIN_AT = 3.0


def _flowcat(port: int) -> subprocess.Popen[bytes]:
    # Every call comes from nginx's address: limit per caller in nginx.
    return serve(port, "--workers", "1", "--drain-timeout", "15", "--call-rate", "0")


stop_after = _server_helpers.stop_after  # the fixture: kills servers a test left running


def _nginx(tmp: Path, listen: int, a: int, b: int) -> subprocess.Popen[bytes]:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        missing("nginx (Debian package nginx-light)")
    conf = CONF.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{listen}")
    conf = conf.replace("127.0.0.1:8765", f"127.0.0.1:{a}").replace("127.0.0.1:8766", f"127.0.0.1:{b}")
    (tmp / "tmp").mkdir()
    (tmp / "nginx.conf").write_text(conf)
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")], capture_output=True, timeout=10
    )
    assert check.returncode == 0, check.stderr.decode()
    return subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


async def _call(session: aiohttp.ClientSession, url: str, n: int) -> str | None:
    """One echo call; None when it went through whole, else what went wrong."""
    sent = bytearray()
    got = bytearray()
    try:
        async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5.0)) as ws:
            for i in range(FRAMES):
                frame = bytes([(n + i) & 0xFF, i & 0x7F]) * (FRAME // 2)
                sent += frame
                await ws.send_bytes(frame)
                await asyncio.sleep(0.02)
                while len(got) < len(sent) - 4 * FRAME:  # at most 4 frames in flight
                    msg = await asyncio.wait_for(ws.receive(), 5.0)
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        return f"call {n}: {msg.type.name} after {len(got)} of {len(sent)} bytes"
                    got += msg.data
            while len(got) < len(sent):
                msg = await asyncio.wait_for(ws.receive(), 5.0)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    return f"call {n}: {msg.type.name} after {len(got)} of {len(sent)} bytes"
                got += msg.data
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return f"call {n}: {type(exc).__name__}: {exc} after {len(got)} of {len(sent)} bytes"
    return None if bytes(got) == bytes(sent) else f"call {n}: echo differs"


def test_one_instance_drained_and_restarted_under_load_loses_no_call(
    tmp_path: Path, stop_after: list[subprocess.Popen[bytes]]
) -> None:
    listen, a, b = free_port(), free_port(), free_port()
    first, second = _flowcat(a), _flowcat(b)
    stop_after += [first, second]
    wait_up(a, first)
    wait_up(b, second)
    nginx = _nginx(tmp_path, listen, a, b)
    stop_after.append(nginx)
    for _ in range(200):
        if health(listen) is not None:
            break
        assert nginx.poll() is None, nginx.stderr.read().decode() if nginx.stderr else ""
        time.sleep(0.05)

    async def load() -> dict[str, Any]:
        url = f"http://127.0.0.1:{listen}/ws"
        stop = asyncio.Event()
        results: list[str | None] = []
        counter = iter(range(1_000_000))

        async def slot(session: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                results.append(await _call(session, url, next(counter)))

        async with aiohttp.ClientSession() as session:
            slots = [asyncio.create_task(slot(session)) for _ in range(SLOTS)]
            await asyncio.sleep(DRAIN_AT)
            before = await asyncio.to_thread(health, a)
            assert before is not None and before["active"] > 0, before  # calls in progress on instance 1
            first.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            rc = await asyncio.to_thread(first.wait, 20)
            drained_in = time.monotonic() - t0
            restarted = _flowcat(a)
            stop_after.append(restarted)
            await asyncio.to_thread(wait_up, a, restarted)
            await asyncio.sleep(max(0.0, LOAD_SECS - DRAIN_AT - drained_in))
            stop.set()
            await asyncio.wait_for(asyncio.gather(*slots), 30)
        after_a, after_b = health(a), health(b)
        return {
            "results": results,
            "rc": rc,
            "drained_in": drained_in,
            "before": before,
            "a": after_a,
            "b": after_b,
        }

    got = asyncio.run(load())
    failures = [r for r in got["results"] if r is not None]
    print(
        f"calls {len(got['results'])}, lost {len(failures)}, instance 1 drained in {got['drained_in']:.2f} s "
        f"with {got['before']['active']} calls in progress; after restart it took {got['a']['accepted']}, "
        f"instance 2 took {got['b']['accepted']}"
    )
    assert failures == [], failures[:5]
    assert got["rc"] == 0  # the drain ended cleanly: every call it held ended before the timeout
    assert got["drained_in"] < 10
    assert len(got["results"]) >= 3 * SLOTS
    assert got["a"]["accepted"] > 0  # the restarted instance takes calls again
    assert got["b"]["accepted"] > 0
