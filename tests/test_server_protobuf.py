"""``/protobuf/ws``: pipecat's protobuf clients talk to ``flowcat serve`` unchanged.

In-process (both engines): pipecat's wire format written by flowcat's own
serializer, echoed byte-exact. Out of process, the acceptance check: pipecat 1.14's
``WebsocketClientTransport`` with its ``ProtobufFrameSerializer`` (no flowcat code on
the client side) connected to ``flowcat serve`` with the echo app gets its audio back,
byte-exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from _helpers import require
from _server_helpers import free_port, wait_up
from flowcat.frames import InputAudioRawFrame, OutputAudioRawFrame
from flowcat.server import ServerConfig, ServerState, create_app
from flowcat.transports import ProtobufFrameSerializer

RATE = 16000


def _pcm(ms: int, rate: int = RATE) -> bytes:
    """A 440 Hz tone with a ramp: no two chunks alike, no zero run to hide a gap."""
    n = rate * ms // 1000
    t = np.arange(n)
    x = 8000 * np.sin(2 * np.pi * 440 * t / rate) + (t % 997) - 498
    return x.astype("<i2").tobytes()


async def _echo_over(ws: Any, pcm: bytes, chunk: int) -> bytes:
    """Send ``pcm`` in protobuf audio messages of ``chunk`` bytes; collect the audio echoed back."""
    ser = ProtobufFrameSerializer()
    for i in range(0, len(pcm), chunk):
        await ws.send_bytes(ser.encode(OutputAudioRawFrame(pcm[i : i + chunk], RATE, 1)))
    got = bytearray()
    while len(got) < len(pcm):
        msg = await asyncio.wait_for(ws.receive(), 5.0)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        frame = ser.decode(msg.data)
        if isinstance(frame, InputAudioRawFrame):
            assert (frame.sample_rate, frame.num_channels) == (RATE, 1)
            got.extend(frame.audio)
    return bytes(got)


async def test_protobuf_route_echoes_pipecat_audio_messages_byte_exact() -> None:
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=24000)  # the query sets 16 kHz
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        ws = await client.ws_connect(f"/protobuf/ws?sample_rate={RATE}")
        pcm = _pcm(400)
        # The pipeline starts with the upgrade; wait until it echoes before sending the real audio.
        await _started(ws)
        assert await _echo_over(ws, pcm, 1280) == pcm
        health = await (await client.get("/healthz")).json()
        assert (health["active"], health["accepted"]) == (1, 1)
        await ws.close()
    finally:
        await client.close()


async def _started(ws: Any) -> None:
    """Bounded wait for the call's pipeline: send 10 ms probes until one comes back, then drain."""
    ser = ProtobufFrameSerializer()
    probe = ser.encode(OutputAudioRawFrame(b"\x01\x00" * (RATE // 100), RATE, 1))
    for _ in range(100):
        await ws.send_bytes(probe)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.05)
            break
    else:
        raise AssertionError("no echo")
    while True:  # drain the probes' echo (paced: bounded)
        try:
            await asyncio.wait_for(ws.receive(), 0.3)
        except TimeoutError:
            return


async def test_protobuf_route_on_the_picows_engine() -> None:
    require("picows")
    from flowcat.server._calls import drain_state
    from flowcat.server._picows_engine import serve_picows

    state = ServerState(ServerConfig(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))
    server = await serve_picows(state, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/protobuf/ws")
            await _started(ws)
            pcm = _pcm(300)
            assert await _echo_over(ws, pcm, 640) == pcm
            await ws.close()
    finally:
        server.close()
        await drain_state(state, 0.0)


# ------------------------------------------------------------------ pipecat 1.14 as the client


async def _pipecat_echo(url: str, pcm: bytes, chunk: int) -> bytes:
    """pipecat's own client pipeline: its output sends ``pcm``, its input collects what comes back."""
    from pipecat.frames.frames import Frame as PFrame
    from pipecat.frames.frames import InputAudioRawFrame as PInputAudio
    from pipecat.frames.frames import OutputAudioRawFrame as POutputAudio
    from pipecat.pipeline.pipeline import Pipeline as PPipeline
    from pipecat.pipeline.task import PipelineParams as PParams
    from pipecat.pipeline.worker import PipelineWorker as PWorker
    from pipecat.processors.frame_processor import FrameDirection as PDirection
    from pipecat.processors.frame_processor import FrameProcessor as PProcessor
    from pipecat.serializers.protobuf import ProtobufFrameSerializer as PProtobuf
    from pipecat.transports.websocket.client import WebsocketClientParams, WebsocketClientTransport
    from pipecat.workers.runner import WorkerRunner as PRunner

    got = bytearray()
    heard = asyncio.Event()
    done = asyncio.Event()
    last = [0.0]

    class Collect(PProcessor):  # type: ignore[misc]
        async def process_frame(self, frame: PFrame, direction: PDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, PInputAudio):
                got.extend(frame.audio)
                last[0] = time.monotonic()
                heard.set()
                if len(got) >= len(pcm):
                    done.set()
                return  # the echo stops here (it must not be sent back out)
            await self.push_frame(frame, direction)

    transport = WebsocketClientTransport(
        url,
        WebsocketClientParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=RATE,
            audio_out_sample_rate=RATE,
            serializer=PProtobuf(),
        ),
    )
    connected = asyncio.Event()

    @transport.event_handler("on_connected")  # type: ignore[misc]
    async def _on_connected(_transport: Any, _ws: Any) -> None:
        connected.set()

    task = PWorker(
        PPipeline([transport.input(), Collect(), transport.output()]),
        params=PParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    workers = PRunner(handle_sigint=False)
    await workers.add_workers(task)
    runner = asyncio.create_task(workers.run())
    try:
        await asyncio.wait_for(connected.wait(), 20.0)
        # flowcat drops what arrives before the call's pipeline runs: probe until an echo
        # comes back, let the probes' echoes end (no audio for 0.5 s), then start afresh.
        probe = POutputAudio(b"\x01\x00" * (chunk // 2), RATE, 1)
        for _ in range(200):
            await task.queue_frame(probe)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), 0.1)
                break
        assert heard.is_set(), "no echo"
        deadline = time.monotonic() + 20.0
        while time.monotonic() - last[0] < 0.5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        got.clear()
        await task.queue_frames(
            [POutputAudio(pcm[i : i + chunk], RATE, 1) for i in range(0, len(pcm), chunk)]
        )
        await asyncio.wait_for(done.wait(), 20.0)
    finally:
        await task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(runner, 10.0)
    return bytes(got)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # websockets' legacy API inside pipecat
def test_pipecat_protobuf_client_gets_its_audio_back_byte_exact_from_flowcat_serve() -> None:
    require("pipecat.transports.websocket.client")  # pipecat 1.14 with its client's imports
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcat.cli", "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_up(port, proc, within=60.0)
        pcm = _pcm(1000)
        chunk = RATE * 2 * 40 // 1000  # pipecat's output chunk (4 x 10 ms): no padding
        got = asyncio.run(_pipecat_echo(f"ws://127.0.0.1:{port}/protobuf/ws?sample_rate={RATE}", pcm, chunk))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert len(got) >= len(pcm)
    assert got[: len(pcm)] == pcm
