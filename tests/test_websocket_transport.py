"""WebSocket transports over real sockets on 127.0.0.1: echo, pacing, interruption clear,
EndFrame drain, cancel, malformed input, closed socket, tasks per call, client transport."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.frames import (
    EndTaskFrame,
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TextFrame,
)
from flowcat.testing import CaptureProcessor
from flowcat.transports import (
    ProtobufFrameSerializer,
    RawPCMSerializer,
    WebsocketClientTransport,
    WebsocketParams,
    WebsocketServerTransport,
    WebsocketTransport,
)
from test_transport_support import pcm

RATE = 16000
CHUNK = 640
DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Echo(FrameProcessor):
    """User audio back as bot audio."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate))
        else:
            await self.push_frame(frame, direction)


class Commands(FrameProcessor):
    """Test commands sent as protobuf transport messages."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputTransportMessageFrame):
            cmd = frame.message.get("cmd")
            if cmd == "speak":
                await self.push_frame(
                    OutputAudioRawFrame(audio=pcm(frame.message["bytes"]), sample_rate=RATE)
                )
            elif cmd == "interrupt":
                await self.broadcast_interruption()
            elif cmd == "bye":
                await self.push_frame(
                    OutputAudioRawFrame(audio=pcm(frame.message["bytes"], 5), sample_rate=RATE)
                )
                await self.push_frame(EndTaskFrame(), UP)
            return
        await self.push_frame(frame, direction)


class Server:
    def __init__(self, make: Callable[[], list[FrameProcessor]], **params: Any) -> None:
        self.tasks: list[PipelineTask] = []
        self.transports: list[WebsocketTransport] = []
        self.make = make
        serializer_factory = params.pop("serializer_factory", None)
        self.server = WebsocketServerTransport(
            self._factory, params=WebsocketParams(**params), serializer_factory=serializer_factory
        )

    def _factory(self, transport: WebsocketTransport, request: Any) -> PipelineTask:
        task = PipelineTask(
            Pipeline([transport.input(), *self.make(), transport.output()]),
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )
        self.tasks.append(task)
        self.transports.append(transport)
        return task

    async def __aenter__(self) -> Server:
        port = await self.server.start("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.server.stop()


async def _wait(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - bounded poll of state set by other code
            await asyncio.sleep(0.005)


async def _recv_bytes(
    ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = 5.0
) -> tuple[bytes, list[float]]:
    got = bytearray()
    times: list[float] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while len(got) < n:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            got += msg.data
            times.append(loop.time())
    return bytes(got), times


async def test_raw_pcm_echo_real_server_byte_for_byte_and_paced() -> None:
    async with Server(lambda: [Echo()], serializer=None) as srv, aiohttp.ClientSession() as session:
        async with session.ws_connect(srv.url) as ws:
            sizes = [640, 100, 540, 1280, 2, 318, 3200, 320, 4000, 2000, 2320]  # 14720 bytes = 23 chunks
            sent = b""
            for i, size in enumerate(sizes):
                chunk = pcm(size, i)
                sent += chunk
                await ws.send_bytes(chunk)
            assert len(sent) % CHUNK == 0
            got, times = await _recv_bytes(ws, len(sent))
            assert got == sent
            # 23 chunks of 20 ms released by the clock, two ahead: ~0.42 s from first to last.
            assert times[-1] - times[0] >= 0.35
            await ws.close()
        await _wait(lambda: srv.tasks[0].has_finished())
        assert srv.tasks[0].stats.finished_by == "cancel"


async def test_malformed_message_is_skipped_and_call_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async with Server(lambda: [Echo()]) as srv, aiohttp.ClientSession() as session:
        async with session.ws_connect(srv.url) as ws:
            with caplog.at_level(logging.WARNING, logger="flowcat.transports.websocket"):
                await ws.send_bytes(b"\x01\x02\x03")  # not whole samples
                await ws.send_str("not audio")
                await ws.send_bytes(pcm(CHUNK))
                got, _ = await _recv_bytes(ws, CHUNK)
            assert got == pcm(CHUNK)
            assert srv.transports[0].bad_messages == 2
            assert "malformed" in caplog.text
            assert not srv.tasks[0].has_finished()


async def test_closed_socket_ends_the_call_cancel_or_end() -> None:
    for end, expected in ((False, "cancel"), (True, "end")):
        async with Server(lambda: [Echo()], end_on_disconnect=end) as srv, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(srv.url)
            await ws.send_bytes(pcm(CHUNK * 10))
            await _recv_bytes(ws, CHUNK)
            await ws.close()
            await _wait(lambda s=srv: bool(s.tasks) and s.tasks[0].has_finished())  # type: ignore[misc]
            assert srv.tasks[0].stats.finished_by == expected
            await _wait(lambda s=srv: not s.server.calls)  # type: ignore[misc]


async def test_protobuf_interruption_clear_is_next_on_wire() -> None:
    ser = ProtobufFrameSerializer()
    async with (
        Server(lambda: [Commands()], serializer_factory=ProtobufFrameSerializer) as srv,
        aiohttp.ClientSession() as session,
        session.ws_connect(srv.url) as ws,
    ):
        speak = ser.encode(_msg({"cmd": "speak", "bytes": CHUNK * 100}))  # 2 s of audio
        await ws.send_bytes(speak)  # type: ignore[arg-type]
        received: list[Frame] = []
        async with asyncio.timeout(5):
            while len(received) < 5:
                received.append(ser.decode((await ws.receive()).data))  # type: ignore[arg-type]
            await ws.send_bytes(ser.encode(_msg({"cmd": "interrupt"})))  # type: ignore[arg-type]
            while not isinstance(received[-1], InterruptionFrame):
                received.append(ser.decode((await ws.receive()).data))  # type: ignore[arg-type]
        assert all(isinstance(f, InputAudioRawFrame) for f in received[:-1])
        assert len(received) - 1 < 20  # the other ~80 queued chunks were dropped
        with pytest.raises(TimeoutError):  # and nothing more comes
            async with asyncio.timeout(0.3):
                await ws.receive()
        assert srv.transports[0].output().queued_bytes == 0


async def test_end_frame_drains_goodbye_before_socket_closes() -> None:
    ser = ProtobufFrameSerializer()
    async with (
        Server(lambda: [Commands()], serializer_factory=ProtobufFrameSerializer) as srv,
        aiohttp.ClientSession() as session,
        session.ws_connect(srv.url) as ws,
    ):
        n = CHUNK * 25 + 100  # 0.5 s and a partial chunk
        await ws.send_bytes(ser.encode(_msg({"cmd": "bye", "bytes": n})))  # type: ignore[arg-type]
        got = b""
        async with asyncio.timeout(5):
            async for msg in ws:
                frame = ser.decode(msg.data)
                assert isinstance(frame, InputAudioRawFrame)
                got += frame.audio
        assert ws.closed
        # Every byte, the last ones included; the short last chunk padded with silence
        # to a whole chunk (as pipecat's output does at the end of speech).
        assert got == pcm(n, 5) + bytes(CHUNK - 100)
        await _wait(lambda: srv.tasks[0].has_finished())
        assert srv.tasks[0].stats.finished_by == "end"


async def test_cancel_closes_socket_at_once() -> None:
    ser = ProtobufFrameSerializer()
    async with (
        Server(lambda: [Commands()], serializer_factory=ProtobufFrameSerializer) as srv,
        aiohttp.ClientSession() as session,
        session.ws_connect(srv.url) as ws,
    ):
        await ws.send_bytes(ser.encode(_msg({"cmd": "speak", "bytes": CHUNK * 250})))  # type: ignore[arg-type]
        await ws.receive()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await srv.tasks[0].cancel()
        async with asyncio.timeout(2):
            while (await ws.receive()).type is aiohttp.WSMsgType.BINARY:
                pass
        assert loop.time() - t0 < 0.5
        await _wait(lambda: srv.tasks[0].has_finished())


async def test_idle_calls_add_one_task_to_aiohttps_handler() -> None:
    async with Server(lambda: [Echo()]) as srv, aiohttp.ClientSession() as session:
        base = set(asyncio.all_tasks())
        sockets = [await session.ws_connect(srv.url) for _ in range(6)]
        await _wait(lambda: len(srv.tasks) == 6 and all(t.state == "running" for t in srv.tasks))
        await asyncio.sleep(0.1)
        new = set(asyncio.all_tasks()) - base
        # aiohttp's own connection handling (RequestHandler: one task, two in aiohttp 3.14)
        # reads the socket; flowcat adds exactly one task per call (PipelineTask.run).
        ours = [t for t in new if "RequestHandler" not in repr(t.get_coro())]
        assert len(ours) == 6
        assert all("PipelineTask.run" in repr(t.get_coro()) for t in ours)
        assert len(new) <= 6 * 3
        for ws in sockets:
            await ws.close()
        await _wait(lambda: all(t.has_finished() for t in srv.tasks))


async def test_client_transport_against_server_transport() -> None:
    async with Server(lambda: [Echo()], serializer_factory=ProtobufFrameSerializer) as srv:
        client = WebsocketClientTransport(
            srv.url.replace("http", "ws"), WebsocketParams(serializer=ProtobufFrameSerializer())
        )
        capture = CaptureProcessor(DOWN, ignore=[])
        task = PipelineTask(
            Pipeline([client.input(), capture, client.output()]),
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )
        run = asyncio.ensure_future(task.run())
        await asyncio.wait_for(client.input().started_future(), 5)
        audio = pcm(CHUNK * 10, 3)
        await task.queue_frame(OutputAudioRawFrame(audio=audio, sample_rate=RATE))
        await task.queue_frame(TextFrame(text="not sent"))

        def echoed() -> bytes:
            return b"".join(f.audio for f in capture.frames if isinstance(f, InputAudioRawFrame))

        await _wait(lambda: len(echoed()) >= len(audio))
        assert echoed() == audio
        await task.stop_when_done()
        await asyncio.wait_for(run, 5)
        assert task.stats.finished_by == "end"
        await _wait(lambda: srv.tasks[0].has_finished())


async def test_serializer_replies_and_messages_use_raw_pcm_default() -> None:
    t = WebsocketTransport(None, WebsocketParams(audio_out_sample_rate=8000))
    assert isinstance(t.serializer, RawPCMSerializer)
    assert t.serializer.sample_rate == 8000


def _msg(message: dict[str, Any]) -> Frame:
    from flowcat.frames import OutputTransportMessageFrame

    return OutputTransportMessageFrame(message=message)


def test_message_helper_round_trips() -> None:
    ser = ProtobufFrameSerializer()
    back = ser.decode(ser.encode(_msg({"cmd": "x"})))  # type: ignore[arg-type]
    assert isinstance(back, InputTransportMessageFrame) and back.message == {"cmd": "x"}
    assert json.loads(json.dumps(back.message)) == {"cmd": "x"}


class _SwappedPCM(RawPCMSerializer):
    """A subclass that decodes differently (big-endian on the wire): not a passthrough."""

    def deserialize_now(self, data: str | bytes) -> Frame | None:
        assert isinstance(data, bytes)
        swapped = bytearray(data)
        swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
        return InputAudioRawFrame(bytes(swapped), self.sample_rate or RATE, 1)


def test_raw_pcm_passthrough_input_is_declared_only_where_it_holds() -> None:
    assert RawPCMSerializer(8000).passthrough_input == (8000, 1)
    assert RawPCMSerializer(16000, num_channels=2).passthrough_input == (16000, 2)
    assert RawPCMSerializer().passthrough_input is None  # rate not known yet
    assert _SwappedPCM(RATE).passthrough_input is None


def _swap16(b: bytes) -> bytes:
    return bytes(x for i in range(0, len(b), 2) for x in (b[i + 1], b[i]))


@pytest.mark.parametrize(
    ("make_ser", "fused", "expect"),
    [
        (lambda: RawPCMSerializer(RATE), True, lambda b: b),
        (lambda: _SwappedPCM(RATE), False, _swap16),
        (lambda: RawPCMSerializer(8000), False, None),
    ],
    ids=["raw-at-input-rate", "subclass-decodes", "raw-8k-resampled"],
)
async def test_raw_input_at_the_input_rate_skips_decode_and_subclasses_still_decode(
    make_ser: Callable[[], Any], fused: bool, expect: Callable[[bytes], bytes] | None
) -> None:
    """Binary messages at the input's rate become input frames without the serializer's
    decode call; odd sizes still take the decode path (and are skipped as malformed);
    a serializer subclass with its own decoding is never bypassed; another wire rate
    still goes through the input's resampler."""
    cap = CaptureProcessor(DOWN)
    messages = [pcm(CHUNK, 1), b"\x01\x02\x03", pcm(320, 2)]
    if expect is None:  # 0.5 s more at 8 kHz: past the resampler's delay
        messages += [pcm(320, 3 + i) for i in range(25)]
    sent = sum(len(m) for m in messages) - 3

    def audio() -> list[InputAudioRawFrame]:
        return [f for f in cap.frames if isinstance(f, InputAudioRawFrame)]

    async with Server(lambda: [cap], serializer_factory=make_ser) as srv:
        async with aiohttp.ClientSession() as session, session.ws_connect(srv.url) as ws:
            for m in messages:
                await ws.send_bytes(m)
            await _wait(lambda: bool(srv.transports) and srv.transports[0].messages_in == len(messages))
            t = srv.transports[0]
            assert (t._raw_in is t.input()) is fused
            await _wait(lambda: sum(len(f.audio) for f in audio()) >= sent)
            got = audio()
            assert t.bad_messages == 1
            assert all(f.sample_rate == RATE and f.num_channels == 1 for f in got)
            if expect is not None:
                assert [f.audio for f in got] == [expect(messages[0]), expect(messages[2])]
                assert t.input().audio_frames_in == 2
            else:  # resampled to the pipeline's 16 kHz: twice the bytes, less the filter's delay
                assert sent < sum(len(f.audio) for f in got) <= 2 * sent
                assert t.input().audio_frames_in == len(messages) - 1
            await ws.close()
