"""Write flow control on both engines (picows and aiohttp): a peer that stops reading gets
its bot audio dropped (not buffered without bound) and, if it never reads again, is
disconnected; a peer that reads again gets audio again. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from _helpers import require

require("picows")

from flowcat.server import ServerConfig, create_app  # noqa: E402
from flowcat.server._state import STATE_KEY  # noqa: E402
from flowcat.transports import PicowsListener, WebsocketTransport  # noqa: E402
from test_picows_engine import calls_ended, engine  # noqa: E402

FRAME = 320  # 20 ms of PCM16 at 8 kHz
HIGH_WATER = 4096
STALL = 0.6  # seconds a full write buffer is tolerated in these tests


class Probe:
    """The server side of the one call under test: its flow-control state, either engine."""

    def __init__(self, obj: Any, engine_name: str) -> None:
        self.obj = obj
        self.engine = engine_name

    @property
    def congested(self) -> bool:
        return bool(self.obj.congested)

    @property
    def audio_dropped(self) -> int:
        return int(self.obj.audio_dropped)

    @property
    def write_pauses(self) -> int:
        return int(self.obj.write_pauses)

    @property
    def gone(self) -> bool:
        return bool(self.obj.disconnected if self.engine == "picows" else self.obj._disconnected)

    def no_stall_limit(self) -> None:
        if self.engine == "picows":
            self.obj.write_stall_timeout = None
        else:
            self.obj._wparams.write_stall_timeout_secs = None


def _shrink(transport: Any) -> None:
    """Small socket and write buffers, so a peer that does not read shows within a second
    instead of after megabytes of loopback buffering."""
    transport.set_write_buffer_limits(high=HIGH_WATER)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HIGH_WATER)


@contextlib.asynccontextmanager
async def server(name: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[int, list[Probe], Any]]:
    """(port, probes of the calls, a coroutine function waiting for every call to end)."""
    probes: list[Probe] = []
    if name == "picows":
        original = PicowsListener.on_ws_connected

        def connected(self: PicowsListener, transport: Any) -> None:
            original(self, transport)
            _shrink(transport.underlying_transport)
            self.write_stall_timeout = STALL
            probes.append(Probe(self, name))

        monkeypatch.setattr(PicowsListener, "on_ws_connected", connected)
        async with engine() as e:
            yield e.port, probes, lambda: calls_ended(e)
        return
    prepare = web.WebSocketResponse.prepare

    async def prepared(self: web.WebSocketResponse, request: web.BaseRequest) -> Any:
        result = await prepare(self, request)
        assert request.transport is not None
        _shrink(request.transport)
        return result

    init = WebsocketTransport.__init__

    def made(self: WebsocketTransport, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        self._wparams.write_stall_timeout_secs = STALL
        probes.append(Probe(self, name))

    monkeypatch.setattr(web.WebSocketResponse, "prepare", prepared)
    monkeypatch.setattr(WebsocketTransport, "__init__", made)
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000)
    state_app = create_app(cfg)
    srv = TestServer(state_app)
    await srv.start_server()

    async def ended() -> None:
        state = state_app[STATE_KEY]
        tasks = list(state.calls)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        assert state.admission.active == 0, state.health()

    try:
        yield srv.port, probes, ended
    finally:
        await srv.close()


async def _started(probes: list[Probe]) -> Probe:
    """Bounded wait for the call's server side to exist, then a moment for its pipeline."""
    for _ in range(250):
        if probes:
            return probes[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no call")


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


ENGINES = ("picows", "aiohttp")


@pytest.mark.parametrize("name", ENGINES)
async def test_a_peer_that_stops_reading_has_audio_dropped_then_is_disconnected(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with server(name, monkeypatch) as (port, probes, ended):
        sock = await _connect(port)
        try:
            probe = await _started(probes)
            # Never read: the server's write buffer fills, audio is dropped, then the
            # connection goes once the buffer stayed full for STALL seconds.
            await _stream_until(sock, lambda: probe.gone)
            assert probe.write_pauses >= 1
            assert probe.audio_dropped > 0
            assert probe.congested  # it never drained: that is why it was dropped
            await ended()
        finally:
            sock.close()


@pytest.mark.parametrize("name", ENGINES)
async def test_a_peer_that_reads_again_gets_audio_again(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    async with server(name, monkeypatch) as (port, probes, ended):
        sock = await _connect(port)
        try:
            probe = await _started(probes)
            probe.no_stall_limit()  # this peer is only slow
            await _stream_until(sock, lambda: probe.audio_dropped >= 3)
            # Read again (while still talking): the buffer drains and the server resumes.
            for _ in range(250):
                if not probe.congested:
                    break
                await loop.sock_sendall(sock, _frame(bytes(FRAME)))
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.02)
                    assert data, "the server closed the connection"
            assert not probe.congested
            # Audio flows again: new echoes arrive.
            payload = b"\x01\x02" * (FRAME // 2)
            got = b""
            for _ in range(50):
                await loop.sock_sendall(sock, _frame(payload))
                with contextlib.suppress(TimeoutError):
                    got += await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.2)
                if payload in got:
                    break
            assert payload in got
            assert not probe.gone
        finally:
            sock.close()
        await ended()
