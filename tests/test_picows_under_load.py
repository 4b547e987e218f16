"""The picows engine under load: a caller's first audio before its pipeline started is kept; a peer
that vanishes mid-stream gets no writes to its lost socket and causes no log flood.

Real sockets on 127.0.0.1: the picows engine's server (``serve_picows``) with the echo app;
callers are plain TCP sockets in a thread speaking RFC 6455 (masked binary frames), so that
they can send while the server's event loop is blocked and then vanish with a TCP reset
(``SO_LINGER`` 0), as a caller process that dies does.

The scenario (what the 30-minute soak met under CPU starvation): the server's loop is held
off the CPU while a caller sends a burst and vanishes. When the loop runs again it reads the
burst and echoes it in one go; the first write meets the reset, aiofastnet (picows' socket
layer) closes the socket and reports the loss to picows one loop iteration later. Before
the fix every write in between reached the closed transport, and from the sixth on
aiofastnet logged "write() called after connection lost." — once per vanished call, with no
rate limit across calls (640 lines in the soak).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import threading
import time

import pytest

from _helpers import require

# Timing-sensitive (starvation it creates itself): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial

picows = require("picows")
engine_tests = require("test_picows_engine")

from flowcat.transports import _picows  # noqa: E402

_CHUNK = b"\x10\x00" * 160  # 20 ms of 8 kHz PCM16


def _frame(payload: bytes) -> bytes:
    """One masked binary WebSocket frame (a client's)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82, 0x80 | 126]) + struct.pack("!H", n) if n >= 126 else bytes([0x82, 0x80 | n])
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _connect(port: int, early: bytes = b"") -> socket.socket:
    """A raw WebSocket client on ``/ws`` (blocking; the upgrade's answer read, bounded); ``early``
    (frames) goes in the same write as the upgrade request. What came after the answer is in
    ``_AFTER[socket]``."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            "GET /ws?sample_rate=8000 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + early
    )
    got = b""
    while b"\r\n\r\n" not in got:
        part = s.recv(4096)
        assert part, "closed during the upgrade"
        got += part
    assert got.startswith(b"HTTP/1.1 101"), got[:80]
    _AFTER[s] = got.partition(b"\r\n\r\n")[2]
    return s


_AFTER: dict[socket.socket, bytes] = {}


def _read_echo(s: socket.socket, chunks: int, chunk: int = len(_CHUNK)) -> bytes:
    """Read ``chunks`` echoed chunks (server frames: 4-byte header, unmasked; bounded by the
    socket's timeout); returns their payloads."""
    want, got = chunks * (4 + chunk), _AFTER.pop(s, b"")
    while len(got) < want:
        part = s.recv(max(1, want - len(got)))
        assert part, "closed while echoing"
        got += part
    frames = [got[i : i + 4 + chunk] for i in range(0, want, 4 + chunk)]
    assert all(f[:2] == b"\x82\x7e" for f in frames), frames[0][:4]
    return b"".join(f[4:] for f in frames)


async def test_audio_sent_before_the_pipeline_started_is_all_echoed() -> None:
    """Ten chunks in the same packet as the upgrade request: they reach picows before the
    call's pipeline has started (a loaded server starts it later still). Every one is echoed,
    in order, then the live ones; before, only the last two were fed (the SIGTERM-under-load
    test lost the first chunks of calls started while 30 calls were being set up)."""
    early = [bytes([i, 0x30]) * 160 for i in range(10)]
    async with engine_tests.engine() as e:
        s = await asyncio.to_thread(_connect, e.port, b"".join(_frame(c) for c in early))
        try:
            got = await asyncio.to_thread(_read_echo, s, 10)
            assert got == b"".join(early)
            live = [bytes([i, 0x40]) * 160 for i in range(3)]
            s.sendall(b"".join(_frame(c) for c in live))
            assert await asyncio.to_thread(_read_echo, s, 3) == b"".join(live)
            assert e.state.health()["active"] == 1
        finally:
            s.close()
        await engine_tests.calls_ended(e)


def _vanish(s: socket.socket, burst: int) -> None:
    """Send ``burst`` chunks at once, then reset the connection (no CLOSE, no FIN)."""
    s.sendall(_frame(_CHUNK) * burst)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _starve(thread: threading.Thread, secs: float) -> None:
    """Hold the calling event loop for ``secs`` (a CPU-starved server) and until ``thread`` ended (bounded)."""
    end = time.monotonic() + secs
    thread.join(5.0)
    time.sleep(max(0.0, end - time.monotonic()))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_callers_vanishing_under_starvation_get_no_writes_and_no_log_flood() -> None:
    calls = 4
    late = _picows._LATE_WRITES
    seen = _Records()
    watched = logging.getLogger("aiofastnet")
    watched.addHandler(seen)
    late_before = late.count
    try:
        async with engine_tests.engine() as e:
            # A caller that stays: it must go on being echoed after the others vanished.
            stay = await e.ws_connect("/ws?sample_rate=8000")
            await e.running()
            goers = []
            for _ in range(calls):
                goers.append(await asyncio.to_thread(_connect, e.port))
                await e.running()
            for s in goers:  # mid-stream: each call is echoing (bot speaking)
                s.sendall(_frame(_CHUNK) * 10)
            for s in goers:
                await asyncio.to_thread(_read_echo, s, 10)
            go = threading.Event()
            thread = threading.Thread(target=lambda: go.wait(5.0) and [_vanish(s, 60) for s in goers])
            thread.start()
            # The loop is starved: held off the CPU for 0.3 s (the output falls behind and
            # stretches its window to catch up) while the callers send a burst and vanish.
            go.set()
            _starve(thread, 0.3)
            assert not thread.is_alive()
            # Each vanished call ends; the staying one is still live.
            deadline = asyncio.get_running_loop().time() + 5.0
            while e.state.health()["active"] > 1:
                assert asyncio.get_running_loop().time() < deadline, e.state.health()
                await asyncio.sleep(0.02)
            for i in range(5):
                await stay.send_bytes(bytes([i, 0x20]) * 160)
                got = await asyncio.wait_for(stay.receive(), 3.0)
                assert got.data == bytes([i, 0x20]) * 160
            await stay.close()
            await engine_tests.calls_ended(e)
            assert e.state.admission.completed == calls + 1
    finally:
        watched.removeHandler(seen)
    lost = [r for r in seen.records if "after connection lost" in r.getMessage()]
    assert late.count == late_before, "writes reached sockets already lost"
    assert len(lost) <= 1


def test_the_socket_layers_late_write_warning_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """Should a writer outside flowcat write to a lost socket, aiofastnet's warning is let
    through once and then one in every 1,000 across all connections; other lines pass."""
    late = _picows._LATE_WRITES
    log = logging.getLogger("aiofastnet")
    before = late.count
    with caplog.at_level(logging.WARNING, logger="aiofastnet"):
        for _ in range(2500):
            log.warning("write() called after connection lost.")
        log.warning("something else")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiofastnet"]
    assert late.count - before == 2500
    due = [n for n in range(before + 1, before + 2501) if n == 1 or n % 1000 == 0]
    assert lines == ["write() called after connection lost."] * len(due) + ["something else"]
