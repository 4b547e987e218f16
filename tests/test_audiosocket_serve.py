"""``flowcat serve --audiosocket-port``: a worker in a subprocess takes AudioSocket calls over TCP.

The same worker serves its WebSocket app on ``--port`` (health shows the shared
admission counters), echoes AudioSocket audio through the default app (in the kind
the caller's audio arrives in), refuses a call past ``--capacity`` with a hang-up,
and drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from typing import Any

import numpy as np

import _server_helpers
from _server_helpers import free_port, health, serve, wait_up
from flowcat.audio import tone
from flowcat.transports._audiosocket_protocol import encode_message

stop_after = _server_helpers.stop_after  # the fixture: kills servers a test left running

WAIT = 5.0


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    deadline = time.monotonic() + 15.0
    while True:  # the health port answers once the worker has bound every port
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _next(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    try:
        header = await asyncio.wait_for(reader.readexactly(3), WAIT)
    except asyncio.IncompleteReadError as exc:
        assert exc.partial == b""
        return None
    n = (header[1] << 8) | header[2]
    return header[0], (await asyncio.wait_for(reader.readexactly(n), WAIT) if n else b"")


def _health_until(port: int, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10.0
    while True:
        h = health(port)
        if h is not None and done(h):
            return h
        assert time.monotonic() < deadline, h
        time.sleep(0.02)


def test_serve_takes_audiosocket_calls_under_the_workers_capacity(
    stop_after: list[subprocess.Popen[bytes]],
) -> None:
    port, as_port = free_port(), free_port()
    proc = serve(
        port, "--workers", "1", "--capacity", "1", "--audiosocket-port", str(as_port)
    )  # --sample-rate 8000: the echo is byte-exact
    stop_after.append(proc)
    wait_up(port, proc)
    chunk = bytes(range(0, 256, 2)) * 2 + b"\x00\x01" * 32  # 320 bytes: 20 ms at 8 kHz

    async def calls() -> None:
        reader, writer = await _connect(as_port)
        writer.write(encode_message(0x01, uuid.uuid4().bytes) + encode_message(0x10, chunk))
        await writer.drain()
        assert await _next(reader) == (0x10, chunk)  # held until the pipeline ran, then echoed
        # At capacity: a second connection is accepted, hung up at once and closed.
        r2, w2 = await _connect(as_port)
        assert await _next(r2) == (0x00, b"") and await _next(r2) is None
        w2.close()
        h = await asyncio.to_thread(health, port)
        assert h is not None and (h["active"], h["rejected"]) == (1, 1)
        writer.write(encode_message(0x10, chunk[::-1]))
        await writer.drain()
        assert await _next(reader) == (0x10, chunk[::-1])
        # The caller's audio turns slin16 (kind 0x12): the echo follows it, 640 bytes per 20 ms.
        pcm = tone(1000.0, 0.6, 16000, amplitude=0.5)
        writer.write(b"".join(encode_message(0x12, pcm[i : i + 640]) for i in range(0, len(pcm), 640)))
        await writer.drain()
        got = [await _next(reader) for _ in range(12)]
        assert {m[0] for m in got if m is not None} == {0x12} and None not in got
        assert sum(len(m[1]) == 640 for m in got if m is not None) >= 10
        x = np.frombuffer(b"".join(m[1] for m in got[4:] if m is not None), dtype="<i2")
        assert abs(float(np.argmax(np.abs(np.fft.rfft(x)))) * 16000 / len(x) - 1000.0) <= 25.0
        writer.write(encode_message(0x00))  # the caller hangs up: the call ends, the socket closes
        await writer.drain()
        assert await _next(reader) is None
        writer.close()

    asyncio.run(calls())
    h = _health_until(port, lambda h: h["completed"] == 1)
    assert (h["active"], h["accepted"], h["rejected"]) == (0, 1, 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_serve_audiosocket_rate_forces_the_bot_audio_kind(stop_after: list[subprocess.Popen[bytes]]) -> None:
    port, as_port = free_port(), free_port()
    proc = serve(
        port, "--workers", "1", "--audiosocket-port", str(as_port), "--audiosocket-rate", "16000"
    )
    stop_after.append(proc)
    wait_up(port, proc)

    async def call() -> None:
        reader, writer = await _connect(as_port)
        pcm = tone(1000.0, 1.0, 8000, amplitude=0.5)  # slin 8 kHz in (kind 0x10), paced like a caller
        writer.write(encode_message(0x01, uuid.uuid4().bytes))

        async def speak() -> None:
            for k in range(0, len(pcm), 320):
                writer.write(encode_message(0x10, pcm[k : k + 320]))
                await writer.drain()
                await asyncio.sleep(0.02)

        speaker = asyncio.ensure_future(speak())
        got = [await _next(reader) for _ in range(12)]
        # ... slin16 (kind 0x12, 640 bytes per 20 ms) out, the 1 kHz tone intact.
        assert None not in got and {m[0] for m in got if m is not None} == {0x12}
        assert sum(len(m[1]) == 640 for m in got if m is not None) >= 10
        x = np.frombuffer(b"".join(m[1] for m in got[4:] if m is not None), dtype="<i2")
        assert abs(float(np.argmax(np.abs(np.fft.rfft(x)))) * 16000 / len(x) - 1000.0) <= 25.0
        await speaker
        writer.write(encode_message(0x00))
        await writer.drain()
        while (m := await _next(reader)) is not None:  # the echo's tail, then the hang-up
            assert m[0] == 0x12
        writer.close()

    asyncio.run(call())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
