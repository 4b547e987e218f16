"""A call over a real socket leaves nothing behind once it ended: no reference cycle, no task.

Each case runs one whole call under ``flowcat.testing.assert_call_leaves_nothing``
against a server started outside it (the server is long-lived; the call is not):
the WebSocket server transport with pipecat-style event handlers that close over
the task and the transport (ended by the client, and by the bot), the client
transport dialing out, ``flowcat serve``'s raw call on the aiohttp and picows
engines, a Twilio call on picows, and an AudioSocket call. Before the teardown
each left 40-70 objects to the cycle collector (transport and input/output,
listener and transport, writers bound to the transport, handlers).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from _helpers import require
from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.frames import EndTaskFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame, TextFrame
from flowcat.server import EchoProcessor, ServerConfig, ServerState, create_app
from flowcat.testing import CaptureProcessor, assert_call_leaves_nothing
from flowcat.transports import (
    ProtobufFrameSerializer,
    WebsocketClientTransport,
    WebsocketParams,
    WebsocketServerTransport,
    WebsocketTransport,
)

RATE = 16000
CHUNK = 640  # 20 ms at 16 kHz
DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


async def _until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - bounded poll of state set by other code
            await asyncio.sleep(0.005)


async def _echo_over(ws: aiohttp.ClientWebSocketResponse, chunks: int) -> bytes:
    """Send ``chunks`` 20 ms chunks one by one (each after the last one's echo started)."""
    got = b""
    for i in range(chunks):
        await ws.send_bytes(bytes([i + 1]) * CHUNK)
        async with asyncio.timeout(5):
            while len(got) < (i + 1) * CHUNK:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.BINARY, msg
                got += msg.data
    return got


class EndsAfter(FrameProcessor):
    """Ends the call from the bot's side once it has seen ``n`` audio frames."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.n -= 1
            if self.n == 0:
                await self.push_frame(EndTaskFrame(), UP)


# ------------------------------------------------ the WebSocket server transport


def _pipecat_style_server(log: list[str], bot_ends: bool) -> WebsocketServerTransport:
    def factory(transport: WebsocketTransport, request: Any) -> PipelineTask:
        procs: list[FrameProcessor] = [EndsAfter(3), EchoProcessor()] if bot_ends else [EchoProcessor()]
        task = PipelineTask(
            Pipeline([transport.input(), *procs, transport.output()]),
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )

        # As pipecat apps do: handlers that close over the task and the transport.
        @transport.event_handler("on_client_connected")
        async def on_connected(_t: WebsocketTransport) -> None:
            log.append(f"connected {transport.name}")
            await task.queue_frame(TextFrame("hello"))

        @transport.event_handler("on_client_disconnected")
        async def on_disconnected(_t: WebsocketTransport) -> None:
            log.append("disconnected")
            await task.cancel()

        @task.event_handler("on_pipeline_finished")
        async def on_finished(_task: PipelineTask, frame: Frame) -> None:
            log.append(f"finished {type(frame).__name__} {transport.name}")

        return task

    return WebsocketServerTransport(factory, params=WebsocketParams(serializer=None))


@pytest.mark.parametrize("bot_ends", [False, True], ids=["client-closes", "bot-ends"])
async def test_websocket_server_call_leaves_nothing(bot_ends: bool) -> None:
    log: list[str] = []
    server = _pipecat_style_server(log, bot_ends)
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:

            async def call() -> bytes:
                async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                    got = await _echo_over(ws, 3)
                    if bot_ends:  # the server closes the socket
                        async with asyncio.timeout(5):
                            while (await ws.receive()).type is aiohttp.WSMsgType.BINARY:
                                pass
                await _until(lambda: any(e.startswith("finished") for e in log))
                await _until(lambda: not server.calls)
                await _until(lambda: "disconnected" in log)
                return got

            got = await assert_call_leaves_nothing(call)
    finally:
        await server.stop()
    assert got == b"".join(bytes([i + 1]) * CHUNK for i in range(3))
    assert log[0].startswith("connected") and "disconnected" in log
    assert any(e.startswith("finished EndFrame" if bot_ends else "finished CancelFrame") for e in log)


async def test_websocket_client_call_leaves_nothing() -> None:
    def factory(transport: WebsocketTransport, request: Any) -> PipelineTask:
        return PipelineTask(
            Pipeline([transport.input(), EchoProcessor(), transport.output()]),
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )

    server = WebsocketServerTransport(factory, serializer_factory=ProtobufFrameSerializer)
    port = await server.start("127.0.0.1", 0)
    audio = bytes(range(256)) * 10  # 2560 bytes: 4 chunks

    async def call() -> tuple[bytes, str | None]:
        client = WebsocketClientTransport(
            f"ws://127.0.0.1:{port}/ws", WebsocketParams(serializer=ProtobufFrameSerializer())
        )
        capture = CaptureProcessor(DOWN)
        task = PipelineTask(
            Pipeline([client.input(), capture, client.output()]),
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )
        run = asyncio.ensure_future(task.run())
        await asyncio.wait_for(client.input().started_future(), 5)
        await task.queue_frame(OutputAudioRawFrame(audio=audio, sample_rate=RATE))

        def echoed() -> bytes:
            return b"".join(f.audio for f in capture.frames if isinstance(f, InputAudioRawFrame))

        await _until(lambda: len(echoed()) >= len(audio))
        await task.stop_when_done()
        await asyncio.wait_for(run, 5)
        await _until(lambda: not server.calls)
        return echoed(), task.stats.finished_by

    try:
        got, how = await assert_call_leaves_nothing(call)
    finally:
        await server.stop()
    assert got == audio and how == "end"


# ---------------------------------------------------------- flowcat serve's calls


async def _serve(engine: str, state: ServerState) -> tuple[int, Callable[[], Awaitable[None]]]:
    if engine == "picows":
        require("picows")
        from flowcat.server._picows_engine import serve_picows

        server = await serve_picows(state, "127.0.0.1", 0)

        async def stop_picows() -> None:
            server.close()
            await server.wait_closed()

        return server.sockets[0].getsockname()[1], stop_picows
    runner = web.AppRunner(create_app(state.config, state=state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return site._server.sockets[0].getsockname()[1], runner.cleanup  # type: ignore[union-attr]


@pytest.mark.parametrize("engine", ["aiohttp", "picows"])
async def test_served_raw_call_leaves_nothing(engine: str) -> None:
    state = ServerState(ServerConfig(capacity=4, idle_timeout_secs=None))
    port, stop = await _serve(engine, state)
    try:
        async with aiohttp.ClientSession() as session:

            async def call() -> bytes:
                async with session.ws_connect(f"http://127.0.0.1:{port}/ws?sample_rate={RATE}") as ws:
                    got = await _echo_over(ws, 4)
                await _until(lambda: state.finished_calls == 1)
                return got

            got = await assert_call_leaves_nothing(call)
    finally:
        await stop()
    assert got == b"".join(bytes([i + 1]) * CHUNK for i in range(4))


async def test_served_twilio_call_on_picows_leaves_nothing() -> None:
    import base64

    cfg = ServerConfig(capacity=4, idle_timeout_secs=None, verify_signatures=False)
    cfg.audio_in_sample_rate = cfg.audio_out_sample_rate = 8000  # no resampling: the echo is exact
    state = ServerState(cfg)
    port, stop = await _serve("picows", state)
    ulaw = bytes(i for i in range(256) if i != 0x7F)[:160]  # 20 ms at 8 kHz; each code survives the echo
    try:
        async with aiohttp.ClientSession() as session:

            async def call() -> bytes:
                got = b""
                async with session.ws_connect(f"http://127.0.0.1:{port}/twilio/ws") as ws:
                    await ws.send_str(
                        json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                    )
                    start = {
                        "streamSid": "MZ1",
                        "accountSid": "AC1",
                        "callSid": "CA1",
                        "tracks": ["inbound"],
                        "customParameters": {},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    }
                    await ws.send_str(
                        json.dumps(
                            {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": "MZ1"}
                        )
                    )
                    for i in range(50):
                        media = {
                            "track": "inbound",
                            "chunk": str(i + 1),
                            "timestamp": str(20 * i),
                            "payload": base64.b64encode(ulaw).decode(),
                        }
                        await ws.send_str(json.dumps({"event": "media", "streamSid": "MZ1", "media": media}))
                        try:
                            msg = await asyncio.wait_for(ws.receive(), 0.05)
                        except TimeoutError:
                            continue
                        data = json.loads(msg.data)
                        if data.get("event") == "media":
                            got += base64.b64decode(data["media"]["payload"])
                        if len(got) >= 3 * len(ulaw):
                            break
                    await ws.send_str(
                        json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {"callSid": "CA1"}})
                    )
                await _until(lambda: state.finished_calls == 1)
                return got

            got = await assert_call_leaves_nothing(call)
    finally:
        await stop()
    assert ulaw in got


async def test_audiosocket_call_leaves_nothing() -> None:
    from flowcat.server._audiosocket_server import serve_audiosocket
    from flowcat.transports._audiosocket_protocol import encode_message

    state = ServerState(ServerConfig(capacity=4, idle_timeout_secs=None))
    server = await serve_audiosocket("127.0.0.1", 0, state=state)
    port = server.sockets[0].getsockname()[1]
    chunk = bytes(range(0, 256, 2)) * 2 + b"\x00\x01" * 32  # 320 bytes: 20 ms at 8 kHz

    async def call() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_message(0x01, uuid.uuid4().bytes))
        got = b""
        for _ in range(100):
            writer.write(encode_message(0x10, chunk))
            try:
                got += await asyncio.wait_for(reader.read(4096), 0.05)
            except TimeoutError:
                continue
            if len(got) >= 3 * (3 + len(chunk)):
                break
        writer.write(encode_message(0x00))
        await writer.drain()
        async with asyncio.timeout(5):
            while await reader.read(4096):
                pass
        writer.close()
        await writer.wait_closed()
        await _until(lambda: state.finished_calls == 1)
        return len(got)

    try:
        n = await assert_call_leaves_nothing(call)
    finally:
        server.close()
        await server.wait_closed()
    assert n >= 3 * (3 + len(chunk))
