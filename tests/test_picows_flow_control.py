"""Write flow control on the picows engine: a peer that stops reading gets its bot audio
dropped (not buffered without bound) and, if it never reads again, is disconnected; a peer
that reads again gets audio again. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("picows")

from flowcat.transports import PicowsListener  # noqa: E402
from test_picows_engine import calls_ended, engine  # noqa: E402

FRAME = 320  # 20 ms of PCM16 at 8 kHz
HIGH_WATER = 4096
STALL = 0.6  # seconds a full write buffer is tolerated in these tests


@pytest.fixture
def listeners(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[PicowsListener]]:
    """Every server-side listener, with small socket and write buffers (so a peer that does
    not read shows within a second instead of after megabytes of loopback buffering) and a
    short stall timeout."""
    seen: list[PicowsListener] = []
    original = PicowsListener.on_ws_connected

    def connected(self: PicowsListener, transport: Any) -> None:
        original(self, transport)
        transport.underlying_transport.set_write_buffer_limits(high=HIGH_WATER)
        sock = transport.underlying_transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HIGH_WATER)
        self.write_stall_timeout = STALL
        seen.append(self)

    monkeypatch.setattr(PicowsListener, "on_ws_connected", connected)
    yield seen



def _frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BBH", 0x82, 0x80 | 126, len(payload)) + mask + masked


async def _connect(port: int) -> socket.socket:
    """A raw WebSocket client with a tiny receive buffer, upgraded to /ws."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?sample_rate=8000 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5.0)
        assert chunk, "closed during the upgrade"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def _stream_until(sock: socket.socket, done: Any, limit_s: float = 8.0) -> None:
    """Send one 20 ms frame every 20 ms (a caller talking) until ``done()`` or the bound."""
    loop = asyncio.get_running_loop()
    payload = bytes(range(256)) + bytes(FRAME - 256)
    for _ in range(int(limit_s / 0.02)):
        if done():
            return
        try:
            await loop.sock_sendall(sock, _frame(payload))
        except OSError:  # the server dropped us
            return
        await asyncio.sleep(0.02)
    raise AssertionError("bound reached")


async def test_a_peer_that_stops_reading_has_audio_dropped_then_is_disconnected(
    listeners: list[PicowsListener],
) -> None:
    async with engine() as e:
        sock = await _connect(e.port)
        try:
            await e.running()
            lis = listeners[0]
            # Never read: the server's write buffer fills, audio is dropped, then the
            # connection goes once the buffer stayed full for STALL seconds.
            await _stream_until(sock, lambda: lis.disconnected)
            assert lis.write_pauses >= 1
            assert lis.audio_dropped > 0
            assert lis.congested  # it never drained: that is why it was dropped
            await calls_ended(e)
        finally:
            sock.close()


async def test_a_peer_that_reads_again_gets_audio_again(listeners: list[PicowsListener]) -> None:
    loop = asyncio.get_running_loop()
    async with engine() as e:
        sock = await _connect(e.port)
        try:
            await e.running()
            lis = listeners[0]
            lis.write_stall_timeout = None  # this peer is only slow
            await _stream_until(sock, lambda: lis.audio_dropped >= 3)
            # Read everything buffered: the server resumes writing.
            while lis.congested:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5.0)
                assert data, "the server closed the connection"
            # Audio flows again: new echoes arrive, nothing more is dropped while we read.
            payload = b"\x01\x02" * (FRAME // 2)
            got = b""
            for _ in range(50):
                await loop.sock_sendall(sock, _frame(payload))
                try:
                    got += await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.2)
                except TimeoutError:
                    pass
                if payload in got:
                    break
            assert payload in got
            assert not lis.disconnected
        finally:
            sock.close()
        await calls_ended(e)
