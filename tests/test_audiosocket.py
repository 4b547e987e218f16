"""Asterisk AudioSocket: the wire parser (golden), and calls over real TCP sockets on 127.0.0.1.

The server side is :func:`flowcat.server.serve_audiosocket` over a worker state; the
peer is a scripted AudioSocket client speaking the protocol as Asterisk does
(UUID first, then audio / DTMF / hang-up). Waits are bounded; pacing is checked
from arrival timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from flowcat.audio import tone
from flowcat.errors import ConfigError, ProtocolError
from flowcat.frames import EndTaskFrame, Frame, InputDTMFFrame, OutputAudioRawFrame, TTSStoppedFrame
from flowcat.runtime import FrameDirection, FrameProcessor
from flowcat.server import CallInfo, EchoProcessor, ServerConfig, ServerState, serve_audiosocket
from flowcat.server._calls import drain_state
from flowcat.transports import AudioSocketParams, AudioSocketParser
from flowcat.transports._audiosocket_protocol import (
    AUDIO_RATES,
    HANGUP,
    RATE_KINDS,
    describe_error,
    encode_message,
)
from flowcat.transports._requeue import requeue
from test_transport_support import StartFlag

CALL_UUID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
WAIT = 5.0  # bound of every wait on the network


def _peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * rate / len(x)


# ------------------------------------------------------------------ the parser (golden)

MESSAGES: list[tuple[int, bytes]] = [
    (0x01, CALL_UUID.bytes),
    (0x10, bytes(range(256)) + bytes(64)),  # 320 bytes: 20 ms at 8 kHz
    (0x12, b"\x01\x80" * 320),  # 640 bytes: 20 ms at 16 kHz
    (0x03, b"5"),
    (0xFF, b"\x02"),
    (0x42, b"??"),  # unknown kind: framed like any other
    (0x10, b""),  # empty payload
    (0x00, b""),  # hang-up
]
STREAM = b"".join(encode_message(k, p) for k, p in MESSAGES)


def _parse(
    chunks: list[bytes], max_payload: int = 16384
) -> tuple[list[tuple[int, bytes]], AudioSocketParser]:
    got: list[tuple[int, bytes]] = []
    parser = AudioSocketParser(lambda kind, payload: got.append((kind, payload)), max_payload)
    for c in chunks:
        parser.feed(c)
    return got, parser


def test_golden_bytes() -> None:
    assert HANGUP == b"\x00\x00\x00"
    assert encode_message(0x01, CALL_UUID.bytes) == b"\x01\x00\x10" + CALL_UUID.bytes
    assert encode_message(0x10, bytes(320))[:3] == b"\x10\x01\x40"  # length big-endian
    assert encode_message(0x03, b"#") == b"\x03\x00\x01#"
    assert STREAM[:3] == b"\x01\x00\x10" and STREAM.endswith(b"\x10\x00\x00\x00\x00\x00")
    with pytest.raises(ValueError):
        encode_message(0x10, bytes(70000))
    assert describe_error(b"\x03") == "hangup of calling party, frame forwarding error"
    assert describe_error(b"") == "no code" and describe_error(b"\x80") == "application code"


def test_whole_stream_in_one_read() -> None:
    got, parser = _parse([STREAM])
    assert got == MESSAGES
    assert parser.buffered == 0 and parser.messages == len(MESSAGES) and parser.bytes_in == len(STREAM)


def test_byte_by_byte() -> None:
    got, parser = _parse([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert got == MESSAGES and parser.buffered == 0


def test_every_split_point() -> None:
    for cut in range(len(STREAM) + 1):
        got, parser = _parse([STREAM[:cut], STREAM[cut:]])
        assert got == MESSAGES, cut
        assert parser.buffered == 0


def test_random_chunkings() -> None:
    rng = random.Random(7)
    data = STREAM * 5
    for _ in range(200):
        chunks, pos = [], 0
        while pos < len(data):
            n = rng.choice((1, 2, 3, 4, 17, 323, 700, 2000))
            chunks.append(data[pos : pos + n])
            pos += n
        got, parser = _parse(chunks)
        assert got == MESSAGES * 5 and parser.buffered == 0


def test_incomplete_message_waits_in_the_buffer() -> None:
    msg = encode_message(0x10, bytes(320))
    got, parser = _parse([msg + msg[:100]])
    assert len(got) == 1 and parser.buffered == 100
    parser.feed(msg[100:])
    assert len(got) == 2 and parser.buffered == 0


@pytest.mark.parametrize("split", [False, True])
def test_oversized_length_raises_with_context_and_stops(split: bool) -> None:
    good = encode_message(0x10, bytes(320))
    bad = b"\x10\x03\xe9" + bytes(10)  # 1001 bytes announced, max 1000
    data = good + bad
    chunks = [data[i : i + 1] for i in range(len(data))] if split else [data]
    got: list[tuple[int, bytes]] = []
    parser = AudioSocketParser(lambda k, p: got.append((k, p)), max_payload=1000)
    with pytest.raises(ProtocolError) as err:
        for c in chunks:
            parser.feed(c)
    assert len(got) == 1  # the message before the garbage was delivered
    assert "kind 0x10 with length 1001 (max 1000) at byte 323" in str(err.value)
    assert err.value.raw == bad[:16] if not split else err.value.raw[:3] == bad[:3]
    parser.feed(good)  # stopped: nothing more is parsed
    assert len(got) == 1


def test_http_request_is_garbage() -> None:
    with pytest.raises(ProtocolError, match="kind 0x47 with length 17748"):
        _parse([b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"])


def test_a_failing_handler_does_not_break_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    got: list[int] = []

    def handler(kind: int, payload: bytes) -> None:
        if kind == 0x03:
            raise RuntimeError("boom")
        got.append(kind)

    parser = AudioSocketParser(handler)
    with caplog.at_level(logging.ERROR):
        parser.feed(STREAM)
    assert got == [k for k, _ in MESSAGES if k != 0x03]
    assert "kind 0x03: handler failed" in caplog.text


# Asterisk's enum ast_audiosocket_msg_kind (include/asterisk/res_audiosocket.h): kind,
# slin rate, 20 ms payload and its header.
RATE_GOLDEN = [
    (0x10, 8000, 320, b"\x10\x01\x40"),
    (0x11, 12000, 480, b"\x11\x01\xe0"),
    (0x12, 16000, 640, b"\x12\x02\x80"),
    (0x13, 24000, 960, b"\x13\x03\xc0"),
    (0x14, 32000, 1280, b"\x14\x05\x00"),
    (0x15, 44100, 1764, b"\x15\x06\xe4"),
    (0x16, 48000, 1920, b"\x16\x07\x80"),
    (0x17, 96000, 3840, b"\x17\x0f\x00"),
    (0x18, 192000, 7680, b"\x18\x1e\x00"),
]


def test_every_rate_kind_golden() -> None:
    assert AUDIO_RATES == {kind: rate for kind, rate, _, _ in RATE_GOLDEN}
    assert RATE_KINDS == {rate: kind for kind, rate, _, _ in RATE_GOLDEN}
    stream = b""
    for kind, rate, size, header in RATE_GOLDEN:
        assert size == rate * 20 // 1000 * 2
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        msg = encode_message(kind, payload)
        assert msg[:3] == header and msg[3:] == payload
        stream += msg
    stream += encode_message(0x19, b"\x00\x00")  # past the last rate: framed, not audio
    got, parser = _parse([stream[i : i + 1000] for i in range(0, len(stream), 1000)])
    assert [(k, len(p)) for k, p in got] == [(k, n) for k, _, n, _ in RATE_GOLDEN] + [(0x19, 2)]
    assert parser.buffered == 0 and 0x19 not in AUDIO_RATES


def test_params_reject_a_rate_without_a_kind() -> None:
    assert AudioSocketParams(sample_rate=44100).sample_rate == 44100
    assert AudioSocketParams(out_rate=48000).out_rate == 48000
    with pytest.raises(ConfigError, match="sample_rate must be one of .*got 11025"):
        AudioSocketParams(sample_rate=11025)
    with pytest.raises(ConfigError, match="out_rate must be one of .*got 22050"):
        AudioSocketParams(out_rate=22050)
    # 200 ms at 192 kHz (the fastest rate a caller may switch to) does not fit 65535 bytes.
    with pytest.raises(ConfigError, match="does not fit one AudioSocket message at 192000 Hz"):
        AudioSocketParams(audio_out_chunk_ms=200)
    assert AudioSocketParams(audio_out_chunk_ms=200, out_rate=16000).out_rate == 16000


# ------------------------------------------------------------------ calls over TCP


class Peer:
    """A scripted AudioSocket client (Asterisk's side of the connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()

    async def send(self, kind: int, payload: bytes = b"") -> None:
        self.writer.write(encode_message(kind, payload))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next(self) -> tuple[int, bytes, float] | None:
        """The next message and its arrival time; None at EOF (bounded)."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(3), WAIT)
        except asyncio.IncompleteReadError as exc:
            assert exc.partial == b"", exc.partial
            return None
        n = (header[1] << 8) | header[2]
        payload = await asyncio.wait_for(self.reader.readexactly(n), WAIT) if n else b""
        return header[0], payload, self.loop.time()

    async def audio(self, count: int) -> list[tuple[int, bytes, float]]:
        """The next ``count`` messages, all audio."""
        got = []
        for _ in range(count):
            msg = await self.next()
            assert msg is not None and msg[0] != 0x00, msg
            got.append(msg)
        return got

    async def until_eof(self) -> list[tuple[int, bytes, float]]:
        """Every message up to the server closing the connection."""
        got = []
        while (msg := await self.next()) is not None:
            got.append(msg)
        return got

    def close(self) -> None:
        self.writer.close()


class Server:
    """A running ``serve_audiosocket`` on an ephemeral port over a worker state."""

    def __init__(self, state: ServerState, port: int, calls: list[CallInfo]) -> None:
        self.state = state
        self.port = port
        self.calls = calls
        """What the app factory was called with, one per call."""
        self.started: asyncio.Queue[None] = asyncio.Queue()

    async def connect(self, *, send_uuid: bool = True, wait_running: bool = True) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        peer = Peer(reader, writer)
        if send_uuid:
            await peer.send(0x01, CALL_UUID.bytes)
            if wait_running:
                await asyncio.wait_for(self.started.get(), WAIT)
        return peer

    async def calls_ended(self) -> None:
        """Bounded wait for every call task to finish; then no slot is held."""
        tasks = list(self.state.calls)
        if tasks:
            await asyncio.wait(tasks, timeout=WAIT)
        assert self.state.admission.active == 0, self.state.health()


@contextlib.asynccontextmanager
async def server(
    app: Callable[[CallInfo], list[FrameProcessor]] | None = None, **kw: Any
) -> AsyncIterator[Server]:
    """The AudioSocket server; ``kw`` sets ServerConfig fields (pipeline rates: 8 kHz, an
    echo is byte-exact) and ``serve_audiosocket`` options."""
    kw.setdefault("audio_in_sample_rate", 8000)
    kw.setdefault("audio_out_sample_rate", 8000)
    serve_kw = {k: kw.pop(k) for k in ("sample_rate", "out_rate", "handshake_timeout") if k in kw}
    factory = app or (lambda call: [EchoProcessor()])
    holder: list[Server] = []
    calls: list[CallInfo] = []

    def build(call: CallInfo) -> list[FrameProcessor]:
        calls.append(call)
        return [StartFlag(holder[0].started), *factory(call)]

    state = ServerState(ServerConfig(app=build, **kw))
    srv = await serve_audiosocket("127.0.0.1", 0, state=state, **serve_kw)
    s = Server(state, srv.sockets[0].getsockname()[1], calls)
    holder.append(s)
    try:
        yield s
    finally:
        srv.close()
        await drain_state(state, 0.0)


@pytest.mark.serial  # timing-sensitive (paced in real time, 0.5 s slack): .ci/run runs it alone, after the parallel run
async def test_echo_of_a_tone_comes_back_resampled_and_paced_in_real_time() -> None:
    async with server(audio_in_sample_rate=16000, audio_out_sample_rate=24000) as s:
        peer = await s.connect()
        assert s.calls[0].carrier == "audiosocket" and s.calls[0].call_id == str(CALL_UUID)
        assert s.calls[0].remote is not None and s.calls[0].remote.startswith("127.0.0.1:")
        utterance = tone(440.0, 1.5, 8000, amplitude=0.5)  # 75 × 20 ms, sent at once
        for i in range(0, len(utterance), 320):
            await peer.send(0x10, utterance[i : i + 320])
        # 8 kHz → 16 kHz pipeline → 8 kHz wire: each resampler holds back up to ~120 ms.
        got = await peer.audio(45)
        assert {kind for kind, _, _ in got} == {0x10}
        assert {len(p) for _, p, _ in got} == {320}
        audio = b"".join(p for _, p, _ in got)
        assert abs(_peak_hz(audio[640:], 8000) - 440.0) <= 10.0
        # Paced by the shared output clock: two chunks ahead, then one per 20 ms.
        t0 = got[0][2]
        for k, (_, _, t) in enumerate(got):
            assert t - t0 >= (k - 2) * 0.020 - 0.008, (k, t - t0)
        assert got[-1][2] - t0 <= 44 * 0.020 + 0.5  # and not slower than real time
        await peer.send(0x00)  # the client hangs up: the pipeline ends, the server closes
        rest = await peer.until_eof()
        assert all(kind != 0x00 for kind, _, _ in rest)  # no hang-up answered to a hang-up
        await s.calls_ended()
        assert s.state.admission.completed == 1 and s.state.finished_calls == 1


async def test_caller_audio_at_16_khz_and_a_16_khz_wire() -> None:
    async with server(sample_rate=16000, audio_in_sample_rate=16000, audio_out_sample_rate=16000) as s:
        peer = await s.connect()
        utterance = tone(1000.0, 0.4, 16000, amplitude=0.5)
        for i in range(0, len(utterance), 640):
            await peer.send(0x12, utterance[i : i + 640])  # kind 0x12: slin16
        got = await peer.audio(16)
        assert {kind for kind, _, _ in got} == {0x12}  # the wire rate's kind
        assert {len(p) for _, p, _ in got} == {640}  # 20 ms at 16 kHz
        assert abs(_peak_hz(b"".join(p for _, p, _ in got)[1280:], 16000) - 1000.0) <= 20.0
        peer.close()
        await s.calls_ended()


class Keys(FrameProcessor):
    """Records DTMF. ``1``: 2 s of 440 Hz; ``2``: interruption; ``3``: 0.1 s of 1 kHz;
    ``9``: 0.4 s of 440 Hz then the end of the call; ``#``: end of the call."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputDTMFFrame):
            await self.push_frame(frame, direction)
            return
        key = frame.button.value
        self.keys.append(key)
        speech = {"1": (440.0, 2.0), "3": (1000.0, 0.1), "9": (440.0, 0.4)}.get(key)
        if speech is not None:
            pcm = tone(speech[0], speech[1], 24000, amplitude=0.5)
            await self.push_frame(
                OutputAudioRawFrame(audio=pcm, sample_rate=24000), FrameDirection.DOWNSTREAM
            )
        if key == "2":
            await self.broadcast_interruption()
        if key in "9#":
            await self.push_frame(EndTaskFrame(reason="caller is done"), FrameDirection.UPSTREAM)


async def test_dtmf_becomes_input_dtmf_frames_and_bad_digits_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = Keys()
    async with server(app=lambda call: [keys]) as s:
        peer = await s.connect()
        with caplog.at_level(logging.WARNING, logger="flowcat.transports.audiosocket"):
            for digit in (b"5", b"*", b"x", b"12", b"a", b"#"):
                await peer.send(0x03, digit)
            rest = await peer.until_eof()  # '#' ends the call: the server sends 0x00 and closes
        assert keys.keys == ["5", "*", "A", "#"]
        assert [(k, p) for k, p, _ in rest] == [(0x00, b"")]
        assert caplog.text.count("DTMF payload is not one keypad digit") == 2
        await s.calls_ended()


async def test_end_frame_sends_the_hangup_after_the_queued_audio() -> None:
    async with server(app=lambda call: [Keys()]) as s:
        peer = await s.connect()
        await peer.send(0x03, b"9")  # 0.4 s of bot audio, then EndTaskFrame
        msgs = await peer.until_eof()
        assert msgs[-1][:2] == (0x00, b"")
        audio = msgs[:-1]
        assert audio and all(kind == 0x10 for kind, _, _ in audio)
        pcm = b"".join(p for _, p, _ in audio)
        assert len(pcm) == 6400  # 0.4 s at 8 kHz, all of it (and no more) drained before the hang-up
        assert abs(_peak_hz(pcm, 8000) - 440.0) <= 10.0
        assert msgs[-1][2] - audio[0][2] >= (len(audio) - 2) * 0.020 - 0.01  # the hang-up waited
        await s.calls_ended()


async def test_interruption_stops_the_queued_audio() -> None:
    async with server(app=lambda call: [Keys()]) as s:
        peer = await s.connect()
        await peer.send(0x03, b"1")  # 2 s of 440 Hz queued
        before = await peer.audio(5)
        await peer.send(0x03, b"2")  # barge-in: the queue is emptied (no clear message exists)
        await peer.send(0x03, b"3")  # then 0.1 s of 1 kHz
        after: list[bytes] = []
        while True:
            _, p, _ = (await peer.audio(1))[0]
            if abs(_peak_hz(p, 8000) - 1000.0) <= 60.0:
                break
            after.append(p)
        # Only what was on the wire or in flight when the barge-in arrived; not the other ~1.9 s.
        assert len(before) + len(after) <= 12, len(after)
        peer.close()
        await s.calls_ended()


async def test_malformed_unknown_and_error_messages_are_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server() as s:
        peer = await s.connect()
        with caplog.at_level(logging.INFO, logger="flowcat.transports.audiosocket"):
            await peer.send(0x42, b"future")
            await peer.send(0x19, b"\x01\x00" * 320)  # not an audio kind (0x18 is the last)
            await peer.send(0xFF, b"\x02")
            await peer.send(0x10, b"\x01\x02\x03")  # odd length
            await peer.send(0x10)  # empty
            await peer.send(0x01, CALL_UUID.bytes)  # a second UUID
            await peer.send(0x10, b"\x10\x00" * 160)
            got = await peer.audio(1)
        assert got[0][0] == 0x10 and len(got[0][1]) == 320
        assert "kind 0x42 with 6 bytes (unknown message kind)" in caplog.text
        assert "kind 0x19 with 640 bytes (unknown message kind)" in caplog.text
        assert "reported an error: 02 (frame forwarding error)" in caplog.text
        assert caplog.text.count("audio payload of odd or zero length") == 2
        assert s.state.admission.active == 1
        peer.close()
        await s.calls_ended()


async def test_garbage_header_closes_only_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    async with server() as s:
        good = await s.connect()
        with caplog.at_level(logging.WARNING):
            http = await s.connect(send_uuid=False)
            await http.send_raw(b"GET / HTTP/1.1\r\nHost: pbx\r\n\r\n")
            assert [m[:2] for m in await http.until_eof()] == [(0x00, b"")]
            mid_call = await s.connect(wait_running=True)
            await mid_call.send_raw(b"\x10\xff\xff" + bytes(100))  # 65535 bytes announced
            assert [m[0] for m in await mid_call.until_eof()][-1] == 0x00
        assert "kind 0x47 with length 17748" in caplog.text
        assert "kind 0x10 with length 65535 (max 16384) at byte 19" in caplog.text
        await good.send(0x10, b"\x22\x00" * 160)  # the other call is unaffected
        assert (await good.audio(1))[0][1] == b"\x22\x00" * 160
        assert s.state.admission.active == 1
        good.close()
        await s.calls_ended()
        assert s.state.admission.completed == 3


async def test_handshake_requires_the_uuid_first_and_in_time(caplog: pytest.LogCaptureFixture) -> None:
    async with server(handshake_timeout=0.3) as s:
        with caplog.at_level(logging.WARNING):
            dtmf_first = await s.connect(send_uuid=False)
            await dtmf_first.send(0x03, b"1")
            assert [m[:2] for m in await dtmf_first.until_eof()] == [(0x00, b"")]
            silent = await s.connect(send_uuid=False)
            assert [m[:2] for m in await silent.until_eof()] == [(0x00, b"")]
        assert "first message is kind 0x03 with 1 bytes, not the call's UUID" in caplog.text
        assert "no UUID from" in caplog.text
        await s.calls_ended()
        assert s.state.finished_calls == 2 and not s.calls


async def test_over_capacity_the_connection_gets_a_hangup(caplog: pytest.LogCaptureFixture) -> None:
    async with server(capacity=1) as s:
        first = await s.connect()
        with caplog.at_level(logging.WARNING, logger="flowcat.server"):
            second = await s.connect(wait_running=False)
            assert [m[:2] for m in await second.until_eof()] == [(0x00, b"")]
        assert "refused the call from 127.0.0.1" in caplog.text and "at capacity" in caplog.text
        health = s.state.health()
        assert (health["active"], health["accepted"], health["rejected"]) == (1, 1, 1)
        await first.send(0x10, b"\x05\x00" * 160)  # the admitted call is unaffected
        assert len((await first.audio(1))[0][1]) == 320
        first.close()
        await s.calls_ended()
        third = await s.connect()  # the slot is free again
        third.close()
        await s.calls_ended()


# ------------------------------------------------------------------ the wire format follows the call


def _twenty_ms(msgs: list[tuple[int, bytes, float]], kind: int) -> None:
    """Every message is of ``kind`` and carries 20 ms at its rate. The base output sends
    a partial chunk when its queue runs dry (the first burst of a resampled turn, the
    tail of a turn): at most two messages may be shorter, never longer."""
    full = AUDIO_RATES[kind] * 20 // 1000 * 2
    sizes = [len(p) for _, p, _ in msgs]
    assert {k for k, _, _ in msgs} == {kind}
    assert max(sizes) == full and sizes.count(full) >= len(sizes) - 2, sizes
    assert all(n and not n & 1 for n in sizes)


def test_queued_bot_audio_is_converted_around_the_frames_in_the_queue() -> None:
    pcm = tone(440.0, 0.5, 8000, amplitude=0.5)  # 8000 bytes
    stop, marker = TTSStoppedFrame(), object()
    queue = deque([pcm[i : i + 320] for i in range(0, 3200, 320)] + [stop, marker])
    queue.extend(pcm[i : i + 320] for i in range(3200, 7680, 320))
    out, pending = requeue(queue, pcm[7680:7900], 8000, 16000, 640, 1)
    items = list(out)
    # Each run doubles in length and is re-cut at 640 bytes; frames and markers keep their
    # place; the partial chunk continues the last run and what is left is the new one.
    assert items[10:12] == [stop, marker] and len(items) == 10 + 2 + 14
    assert all(len(c) == 640 for c in items[:10] + items[12:]) and len(pending) == 440
    audio = b"".join(c for c in items if type(c) is bytes) + pending
    assert len(audio) == 2 * 7900 and abs(_peak_hz(audio, 16000) - 440.0) <= 5.0
    # A run cut by a frame keeps its short last chunk (20 ms at 8 kHz → 1764 bytes at 44.1 kHz).
    out, pending = requeue(deque([pcm[:320], pcm[320:480], stop]), b"", 8000, 44100, 1764, 1)
    assert [len(i) if type(i) is bytes else i for i in out] == [1764, 882, stop] and pending == b""


async def _send_tone(peer: Peer, kind: int, hz: float, secs: float) -> None:
    rate = AUDIO_RATES[kind]
    pcm, size = tone(hz, secs, rate, amplitude=0.5), rate * 20 // 1000 * 2
    for i in range(0, len(pcm), size):
        await peer.send(kind, pcm[i : i + size])


@pytest.mark.parametrize(("kind", "rate"), sorted(AUDIO_RATES.items()))
async def test_each_rate_kind_is_echoed_in_its_own_kind(kind: int, rate: int) -> None:
    # A 16 kHz pipeline; the server's default wire rate (8 kHz) holds only until the first audio.
    async with server(audio_in_sample_rate=16000, audio_out_sample_rate=16000) as s:
        peer = await s.connect()
        await _send_tone(peer, kind, 1000.0, 0.6)
        got = await peer.audio(12)
        _twenty_ms(got, kind)
        assert abs(_peak_hz(b"".join(p for _, p, _ in got[4:]), rate) - 1000.0) <= 15.0
        peer.close()
        await s.calls_ended()


async def test_slin48_echo_comes_back_as_slin48_resampled_and_paced_in_real_time() -> None:
    # Caller 48 kHz → 16 kHz pipeline in → echo → 24 kHz pipeline out → 48 kHz wire.
    async with server(audio_in_sample_rate=16000, audio_out_sample_rate=24000) as s:
        peer = await s.connect()
        await _send_tone(peer, 0x16, 1000.0, 2.0)  # 100 messages, sent at once
        first = await peer.audio(1)
        t0 = first[0][2]
        window = list(first)
        while (msg := (await peer.audio(1))[0])[2] - t0 <= 1.0:
            window.append(msg)
        _twenty_ms(window, 0x16)
        # One message per 20 ms plus the two-chunk send-ahead: 52 in the first second.
        assert 47 <= len(window) <= 54, len(window)
        assert abs(_peak_hz(b"".join(p for _, p, _ in window[5:]), 48000) - 1000.0) <= 5.0
        peer.close()
        await s.calls_ended()


async def test_before_the_first_caller_audio_bot_audio_uses_the_default_rate() -> None:
    for default, kind in ((8000, 0x10), (24000, 0x13)):
        async with server(app=lambda call: [Keys()], sample_rate=default) as s:
            peer = await s.connect()
            await peer.send(0x03, b"3")  # 0.1 s of 1 kHz, before any caller audio
            before = await peer.audio(4)
            _twenty_ms(before, kind)
            assert abs(_peak_hz(b"".join(p for _, p, _ in before), default) - 1000.0) <= 40.0
            await peer.send(0x12, bytes(640))  # the caller's first audio: slin16
            await peer.send(0x03, b"3")
            after = await peer.audio(4)
            _twenty_ms(after, 0x12)
            assert abs(_peak_hz(b"".join(p for _, p, _ in after), 16000) - 1000.0) <= 40.0
            peer.close()
            await s.calls_ended()


async def test_a_kind_switch_mid_call_is_logged_once_and_followed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server(audio_in_sample_rate=16000, audio_out_sample_rate=24000) as s:
        peer = await s.connect()
        with caplog.at_level(logging.INFO, logger="flowcat.transports.audiosocket"):
            await _send_tone(peer, 0x12, 1000.0, 0.5)
            assert {(k, len(p)) for k, p, _ in await peer.audio(8)} == {(0x12, 640)}
            await _send_tone(peer, 0x13, 1500.0, 1.0)  # the channel's format changes to slin24
            got = await peer.audio(60)
        kinds = [k for k, _, _ in got]
        switch = kinds.index(0x13)
        assert set(kinds[:switch]) <= {0x12} and set(kinds[switch:]) == {0x13}  # no way back
        _twenty_ms(got[switch:], 0x13)
        assert abs(_peak_hz(b"".join(p for _, p, _ in got[-15:]), 24000) - 1500.0) <= 20.0
        assert caplog.text.count("caller audio changed") == 1
        assert "from kind 0x12 (16000 Hz) to 0x13 (24000 Hz); bot audio follows at 24000 Hz" in caplog.text
        peer.close()
        await s.calls_ended()


async def test_bot_audio_queued_at_the_default_rate_is_resampled_when_the_caller_shows_its_rate() -> None:
    async with server(app=lambda call: [Keys()]) as s:
        peer = await s.connect()
        await peer.send(0x03, b"9")  # 0.4 s of 440 Hz queued at the default 8 kHz, then the end
        head = await peer.audio(3)
        await peer.send(0x12, bytes(640))  # the caller's first audio: slin16
        msgs = await peer.until_eof()
        assert msgs[-1][:2] == (0x00, b"")
        got = head + msgs[:-1]
        kinds = [k for k, _, _ in got]
        switch = kinds.index(0x12)
        assert set(kinds[:switch]) == {0x10} and set(kinds[switch:]) == {0x12}
        assert len(kinds) - switch >= 5
        # All of the 0.4 s went out, part at 8 kHz and the rest converted to 16 kHz.
        secs = sum(len(p) / (2 * AUDIO_RATES[k]) for k, p, _ in got)
        assert abs(secs - 0.4) <= 0.03, secs
        _twenty_ms(got[switch:], 0x12)
        assert abs(_peak_hz(b"".join(p for k, p, _ in got if k == 0x12), 16000) - 440.0) <= 20.0
        await s.calls_ended()


async def test_out_rate_forces_the_wire_rate_whatever_the_caller_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server(out_rate=16000) as s:
        peer = await s.connect()
        with caplog.at_level(logging.INFO, logger="flowcat.transports.audiosocket"):
            await _send_tone(peer, 0x10, 1000.0, 0.4)
            first = await peer.audio(6)
            await _send_tone(peer, 0x16, 1000.0, 0.6)
            later = await peer.audio(20)
        _twenty_ms(first, 0x12)
        _twenty_ms(later, 0x12)
        assert abs(_peak_hz(b"".join(p for _, p, _ in later[-10:]), 16000) - 1000.0) <= 20.0
        assert "to 0x16 (48000 Hz); bot audio stays at out_rate 16000 Hz" in caplog.text
        peer.close()
        await s.calls_ended()
