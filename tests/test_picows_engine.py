"""The picows media engine (``flowcat serve --engine picows``) on real sockets on 127.0.0.1.

In-process: the engine's server (``serve_picows``) over a worker state, talked to
by aiohttp and picows clients. Out of process: ``flowcat serve --engine picows``
with the aiohttp app on ``--http-port`` (its SO_REUSEPORT workers and SIGTERM drain are
tested on both engines in test_server_workers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import _server_helpers as servers
from _helpers import require
from flowcat.audio import pcm16_to_ulaw, tone, ulaw_to_pcm16
from flowcat.frames import EndTaskFrame, Frame, InputDTMFFrame
from flowcat.runtime import FrameDirection, FrameProcessor
from flowcat.server import CallInfo, EchoProcessor, ServerConfig, ServerState, default_app
from test_transport_support import StartFlag

picows = require("picows")
e2e = require("test_e2e_carriers")
server_tests = require("test_server")
stop_after = servers.stop_after  # the fixture: kills servers a test left running

from flowcat.server._calls import drain_state  # noqa: E402
from flowcat.server._picows_engine import serve_picows  # noqa: E402

BINARY, TEXT, CONT, CLOSE = (
    picows.WSMsgType.BINARY,
    picows.WSMsgType.TEXT,
    picows.WSMsgType.CONTINUATION,
    picows.WSMsgType.CLOSE,
)
TWILIO = e2e.SPECS["twilio"]


class Engine:
    """A running picows engine: its worker state, port and an aiohttp client session."""

    def __init__(self, state: ServerState, port: int, session: aiohttp.ClientSession) -> None:
        self.state = state
        self.port = port
        self.session = session
        self.started: asyncio.Queue[None] = asyncio.Queue()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def ws_connect(self, path: str, **kw: Any) -> aiohttp.ClientWebSocketResponse:
        """aiohttp client WebSocket (also the ``client`` of the e2e carrier scenario)."""
        return await self.session.ws_connect(self.url(path), **kw)

    async def json(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.url(path)) as r:
            return r.status, await r.json()

    async def running(self) -> None:
        """Bounded wait for the next call's pipeline to have started (audio sent before is dropped)."""
        await asyncio.wait_for(self.started.get(), 5.0)


@contextlib.asynccontextmanager
async def engine(**kw: Any) -> AsyncIterator[Engine]:
    """The engine on an ephemeral port; every call's pipeline starts with a :class:`StartFlag`."""
    app = kw.pop("app", default_app)
    opts: dict[str, Any] = {"audio_in_sample_rate": 8000, "audio_out_sample_rate": 8000}
    opts.update(kw)
    state = ServerState(ServerConfig(app=lambda call: [StartFlag(e.started), *app(call)], **opts))
    server = await serve_picows(state, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            e = Engine(state, port, session)
            yield e
    finally:
        server.close()
        await drain_state(state, 0.0)


async def calls_ended(e: Engine) -> None:
    """Bounded wait for every call task of the engine to finish; then no slot is held."""
    tasks = list(e.state.calls)
    if tasks:
        await asyncio.wait(tasks, timeout=5.0)
    assert e.state.admission.active == 0, e.state.health()


class Peer(picows.WSListener):  # type: ignore[misc]
    """picows client listener: every frame received goes into a queue (None: disconnected)."""

    def __init__(self) -> None:
        super().__init__()
        self.q: asyncio.Queue[tuple[Any, bytes, Any] | None] = asyncio.Queue()

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        code = frame.get_close_code() if frame.msg_type == CLOSE else None
        self.q.put_nowait((frame.msg_type, frame.get_payload_as_bytes(), code))

    def on_ws_disconnected(self, transport: Any) -> None:
        self.q.put_nowait(None)

    async def next(self, *types: Any) -> tuple[Any, bytes, Any]:
        """The next frame of one of ``types`` (bounded)."""
        while True:
            item = await asyncio.wait_for(self.q.get(), 5.0)
            assert item is not None, "disconnected"
            if item[0] in types:
                return item


def test_picows_is_optional() -> None:
    """flowcat.transports imports without picows; using the engine names the extra."""
    code = (
        "import sys\n"
        "sys.modules['picows'] = None  # as if not installed\n"
        "import flowcat.transports as t\n"
        "from flowcat.errors import MissingExtraError\n"
        "try:\n"
        "    t.PicowsTransport\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "flowcat[picows]" in out.stdout, out.stdout + out.stderr
    cli = [
        sys.executable,
        "-c",
        "import sys; sys.modules['picows'] = None; from flowcat.cli import main; "
        "sys.exit(main(['serve', '--engine', 'picows']))",
    ]
    res = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "flowcat[picows]" in res.stderr


# ---------------------------------------------------------------- health, admission


async def test_healthz_and_readyz_answer_the_aiohttp_apps_json() -> None:
    async with engine(capacity=7, worker_id=3) as e:
        status, body = await e.json("/healthz")
        assert status == 200 and body == e.state.health()
        assert (body["status"], body["worker"], body["capacity"], body["active"]) == ("ok", 3, 7, 0)
        assert (await e.json("/readyz"))[0] == 200
        async with e.session.get(e.url("/nothing-here")) as r:
            assert r.status == 404
        e.state.admission.draining = True
        status, body = await e.json("/readyz")
        assert status == 503 and body["status"] == "draining"
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await e.ws_connect("/ws")
        assert err.value.status == 503


async def test_plain_get_to_a_media_route_is_refused_and_not_counted_as_a_call() -> None:
    async with engine(capacity=1) as e:
        for path in ("/ws", "/twilio/ws"):
            async with e.session.get(e.url(path)) as r:
                assert r.status == 400, path
        _, body = await e.json("/healthz")
        counters = {k: body[k] for k in ("active", "accepted", "rejected", "completed")}
        assert counters == {"active": 0, "accepted": 0, "rejected": 0, "completed": 0}


async def test_past_capacity_the_upgrade_gets_503_with_retry_after() -> None:
    async with engine(capacity=1) as e:
        ws1 = await e.ws_connect("/ws")
        for path in ("/ws", "/twilio/ws"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await e.ws_connect(path)
            assert err.value.status == 503
            assert err.value.headers is not None and err.value.headers["Retry-After"] == "1"
        status, body = await e.json("/readyz")
        assert status == 503
        assert (body["active"], body["rejected"], body["accepted"]) == (1, 2, 1)
        # The admitted call is unaffected; when it ends its slot is free again.
        await ws1.send_bytes(b"\x01\x02" * 160)
        assert (await asyncio.wait_for(ws1.receive(), 3.0)).data == b"\x01\x02" * 160
        await ws1.close()
        await calls_ended(e)
        ws2 = await e.ws_connect("/ws")
        await ws2.close()


async def test_unknown_carrier_and_bad_signature_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
    async with engine(verify_signatures=True) as e:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await e.ws_connect("/nosuchcarrier/ws")
        assert err.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await e.ws_connect("/twilio/ws", headers={"X-Twilio-Signature": "AAAA"})
        assert err.value.status == 403
        # Twilio signs the wss:// (here ws://) URL it dialled, not an http:// one.
        http_sig = server_tests._twilio_signature(e.url("/twilio/ws"), {}, "secret-token")
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await e.ws_connect("/twilio/ws", headers={"X-Twilio-Signature": http_sig})
        assert err.value.status == 403
        ws_url = "ws://" + e.url("/twilio/ws").partition("://")[2]
        sig = server_tests._twilio_signature(ws_url, {}, "secret-token")
        ws = await e.ws_connect("/twilio/ws", headers={"X-Twilio-Signature": sig})
        await ws.close()
        assert e.state.admission.rejected == 0 and e.state.admission.accepted == 1


# ---------------------------------------------------------------- raw calls


async def test_raw_call_echoes_bytes_through_the_pipeline_paced() -> None:
    async with engine() as e:
        ws = await e.ws_connect("/ws?sample_rate=8000")
        await e.running()
        payloads = [bytes([i, 0x10]) * 160 for i in range(25)]  # 25 × 20 ms of 8 kHz PCM16
        for p in payloads:  # at once
            await ws.send_bytes(p)
        loop = asyncio.get_running_loop()
        got, arrivals = [], []
        for _ in payloads:
            got.append((await asyncio.wait_for(ws.receive(), 3.0)).data)
            arrivals.append(loop.time())
        assert got == payloads
        # Paced by the output clock: two chunks ahead, then one per 20 ms (23 × 20 ms = 460 ms).
        assert arrivals[-1] - arrivals[0] >= 0.35
        assert e.state.health()["active"] == 1
        await ws.close()  # CLOSE answered by the server; the call ends
        assert ws.close_code == 1000
        await calls_ended(e)
        assert e.state.admission.completed == 1 and e.state.finished_calls == 1


async def test_raw_wire_rate_differs_from_the_output_rate_audio_is_resampled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An output at 16 kHz on a raw 8 kHz wire: the writer's raw-bytes shortcut is only
    for chunks at the wire rate; these go through the serializer's resampler."""
    import numpy as np

    from flowcat.runtime import PipelineParams
    from flowcat.server import _calls

    monkeypatch.setattr(
        _calls,
        "_params",
        lambda cfg, i=None, o=None: PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=16000),
    )
    async with engine() as e:
        ws = await e.ws_connect("/ws?sample_rate=8000")
        await e.running()
        sent = tone(440, 1.0, 8000)
        for i in range(0, len(sent), 320):
            await ws.send_bytes(sent[i : i + 320])
        got = b""
        while len(got) < 9600:  # 0.6 s: the two resamplers hold some back
            msg = await asyncio.wait_for(ws.receive(), 3.0)
            assert msg.type == aiohttp.WSMsgType.BINARY
            got += msg.data
        x = np.frombuffer(got, dtype="<i2").astype(np.float64)[800:]
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        peak = float(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spec))])
        # 16 kHz bytes played at 8 kHz would peak at 220 Hz.
        assert abs(peak - 440) < 15 and np.sqrt(np.mean(x**2)) > 0.25 * 32767 * 0.5
        await ws.close()


async def test_audio_sent_right_after_the_upgrade_is_echoed() -> None:
    async with engine() as e:
        ws = await e.ws_connect("/ws?sample_rate=8000")
        await ws.send_bytes(b"\x07\x00" * 160)  # before the pipeline has started: held, then fed
        assert (await asyncio.wait_for(ws.receive(), 3.0)).data == b"\x07\x00" * 160
        await ws.close()


def test_only_the_last_messages_before_the_start_are_fed() -> None:
    from flowcat.transports import PicowsListener

    class Sink:
        name = "sink"

        def __init__(self) -> None:
            self.fed: list[str | bytes] = []

        def feed(self, data: str | bytes) -> None:
            self.fed.append(data)

    lis = PicowsListener()
    for i in range(5):
        lis._hold(bytes([i]))
    sink = Sink()
    lis.attach(sink, keep=2)  # type: ignore[arg-type]
    assert sink.fed == [b"\x03", b"\x04"] and lis.dropped == 3
    lis._feed(b"\x05")  # from now on every message goes straight to the transport
    assert sink.fed[-1] == b"\x05"


async def test_fragmented_message_is_reassembled_around_a_ping() -> None:
    async with engine() as e:
        tr, peer = await picows.ws_connect(Peer, f"ws://127.0.0.1:{e.port}/ws?sample_rate=8000")
        await e.running()
        data = bytes((i * 7) & 0xFF for i in range(640))  # 40 ms: echoed as two 20 ms chunks
        tr.send(BINARY, data[:100], fin=False)
        tr.send_ping(b"still there?")
        tr.send(CONT, data[100:401], fin=False)
        tr.send(CONT, data[401:], fin=True)
        assert (await peer.next(picows.WSMsgType.PONG))[1] == b"still there?"
        got = b""
        while len(got) < len(data):
            got += (await peer.next(BINARY))[1]
        assert got == data
        tr.disconnect()
        await calls_ended(e)


async def test_oversize_fragmented_message_closes_with_1009() -> None:
    async with engine(max_msg_size=1000) as e:
        tr, peer = await picows.ws_connect(Peer, f"ws://127.0.0.1:{e.port}/ws")
        tr.send(BINARY, bytes(600), fin=False)
        tr.send(CONT, bytes(600), fin=True)
        _, _, code = await peer.next(CLOSE)
        assert code == picows.WSCloseCode.MESSAGE_TOO_BIG
        await calls_ended(e)


async def test_malformed_raw_messages_are_skipped_and_the_call_goes_on() -> None:
    async with engine() as e:
        tr, peer = await picows.ws_connect(Peer, f"ws://127.0.0.1:{e.port}/ws?sample_rate=8000")
        await e.running()
        tr.send(TEXT, b"text is not PCM")
        tr.send(BINARY, b"\x01\x02\x03")  # odd length
        tr.send(TEXT, b"\xff\xfe not utf-8")
        good = b"\x05\x06" * 160
        tr.send(BINARY, good)
        assert (await peer.next(BINARY, TEXT))[1:2] == (good,)
        assert e.state.admission.active == 1
        tr.disconnect()


async def test_a_failing_app_factory_closes_the_socket_with_1011() -> None:
    def broken(call: CallInfo) -> list[FrameProcessor]:
        raise RuntimeError("no app today")

    async with engine(app=broken) as e:
        ws = await e.ws_connect("/ws")
        msg = await asyncio.wait_for(ws.receive(), 5.0)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011
        await calls_ended(e)
        assert e.state.admission.completed == 1


class EndOnPound(FrameProcessor):
    """Records keypad presses; ``#`` ends the call."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []
        self.pressed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            self.keys.append(frame.button.value)
            self.pressed.set()
            if frame.button.value == "#":
                await self.push_frame(EndTaskFrame(reason="caller pressed #"), FrameDirection.UPSTREAM)


# ---------------------------------------------------------------- carrier calls


async def test_twilio_call_handshake_media_dtmf_bad_json_and_end(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    keys: list[EndOnPound] = []
    calls: list[CallInfo] = []

    def app(call: CallInfo) -> list[FrameProcessor]:
        calls.append(call)
        keys.append(EndOnPound())
        return [keys[-1], EchoProcessor()]

    async with engine(app=app) as e:
        ws = await e.ws_connect("/twilio/ws?tenant=x")
        for msg in TWILIO.handshake:
            await ws.send_str(msg)
        await e.running()
        await ws.send_str("{this is not json")  # logged and skipped
        sent = [pcm16_to_ulaw(tone(440.0 + 100 * k, 0.02, 8000, 0.3)) for k in range(5)]
        for payload in sent:
            await ws.send_str(TWILIO.media_in(payload))
        echoed = b""
        while len(echoed) < 5 * 160:
            msg = await asyncio.wait_for(ws.receive(), 3.0)
            payload = TWILIO.media_out(msg.data)
            if payload:
                echoed += payload
        # μ-law in → PCM16 → echo → μ-law out at 8 kHz: the same audio came back.
        assert ulaw_to_pcm16(echoed) == ulaw_to_pcm16(b"".join(sent))
        assert calls[0].carrier == "twilio" and calls[0].call_id == "CA0001"
        assert calls[0].custom_parameters["tenant"] == "acme" and calls[0].query == {"tenant": "x"}
        await ws.send_str(TWILIO.dtmf("5"))
        await asyncio.wait_for(keys[0].pressed.wait(), 3.0)
        assert keys[0].keys == ["5"]
        # '#' ends the call from the pipeline: the server closes the socket with 1000.
        await ws.send_str(TWILIO.dtmf("#"))
        while True:
            msg = await asyncio.wait_for(ws.receive(), 5.0)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        assert ws.close_code == 1000
        assert keys[0].keys == ["5", "#"]
        await calls_ended(e)


async def test_handshake_without_a_start_message_is_closed_with_1008() -> None:
    async with engine() as e:
        ws = await e.ws_connect("/twilio/ws")
        for _ in range(16):
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
        msg = await asyncio.wait_for(ws.receive(), 5.0)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
        await calls_ended(e)


@pytest.mark.parametrize("carrier", ["twilio", "vonage"])
async def test_carrier_call_end_to_end_with_barge_in(carrier: str) -> None:
    """The aiohttp e2e scenario on this engine: paced bot tone, then a clear on barge-in."""
    e2e.BOTS.clear()
    async with engine(
        app=e2e.bot_app, audio_in_sample_rate=16000, audio_out_sample_rate=24000, verify_signatures=False
    ) as e:
        await e2e._scenario(e, e2e.SPECS[carrier])


# ---------------------------------------------------------------- flowcat serve --engine picows
# Worker sharing and the SIGTERM drain run on both engines in test_server_workers.py.


def _post(port: int, path: str, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=2.0) as r:
        return r.status, r.read()


def test_serve_puts_the_webhooks_on_the_http_port(stop_after: list[subprocess.Popen[bytes]]) -> None:
    port, http_port = servers.free_port(), servers.free_port()
    proc = servers.serve(port, "--engine", "picows", "--http-port", str(http_port), "--workers", "1")
    stop_after.append(proc)
    health = servers.wait_up(port, proc)
    other = servers.wait_up(http_port, proc)
    # One worker, one admission state, two ports (the collector's live stats may move between
    # the two reads: the event-loop lag probe of /metrics allocates a little every 0.25 s).
    health.pop("gc", None), other.pop("gc", None)
    assert health == other
    # The answer webhook is on the HTTP port and points the carrier at the media port.
    status, body = _post(http_port, "/twilio/answer", b"CallSid=CA1&From=%2B15550001")
    assert status == 200 and f"ws://127.0.0.1:{port}/twilio/ws".encode() in body
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
