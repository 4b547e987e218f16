"""Fuzzing the WebRTC playground's endpoints: ``POST /api/offer`` bodies (JSON around SDP) and
the events WebSocket (``/api/events/{pc_id}``).

Properties, per input:

* ``/api/offer``: the answer is 200 (an answer SDP), 400, 404 or 413 — never a server error;
  a refused offer gives its admission slot back (``active`` returns to 0), a call that was
  accepted is closed by the test and gives it back too; a real offer after any input is
  still answered;
* events WebSocket: whatever the page sends (text, binary, huge, random) is read and
  dropped: the socket stays open, and the call's events still reach it.

See tests/_fuzz.py for the settings (``FLOWCAT_FUZZ_EXAMPLES``) and the saved corpus
(``tests/fixtures/fuzz/webrtc-offer/``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _fuzz import FUZZ, corpus_params, messages_from
from _helpers import require

require("aiortc")

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from flowcat.frames import Frame  # noqa: E402
from flowcat.runtime import FrameDirection, FrameProcessor  # noqa: E402
from flowcat.server import ServerConfig, create_app  # noqa: E402
from flowcat.server._security import Security  # noqa: E402
from flowcat.server._state import STATE_KEY  # noqa: E402
from flowcat.server._webrtc_routes import WEBRTC_KEY  # noqa: E402
from flowcat.transports._webrtc import set_ice_host_addresses  # noqa: E402

pytestmark = pytest.mark.fuzz

_LOOP = asyncio.new_event_loop()
OK_STATUSES = {200, 400, 404, 413}


def run(coro: Any) -> Any:
    return _LOOP.run_until_complete(coro)


class Passthrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Server:
    def __init__(self) -> None:
        # no rate limit (thousands of offers), no idle end (the events call carries no audio for minutes)
        self.app = create_app(
            ServerConfig(app=lambda _c: [Passthrough()], capacity=4, security=Security(call_rate=0),
                         idle_timeout_secs=None)
        )
        self.runner = web.AppRunner(self.app)
        self.url = ""
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()

    async def stop(self) -> None:
        await self.end_calls()
        assert self.http is not None
        await self.http.close()
        await self.runner.cleanup()

    async def end_calls(self) -> None:
        calls = self.app[WEBRTC_KEY].calls
        for entry in list(calls.values()):
            if entry.transport is not None:
                await entry.transport.close()
            if entry.task is not None:
                await asyncio.wait_for(asyncio.shield(entry.task), 10)
        for _ in range(100):  # the slot is released when the call's task has ended
            if self.app[STATE_KEY].admission.active == 0:
                return
            await asyncio.sleep(0.01)

    async def offer(self, body: bytes) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.post(
            f"{self.url}/api/offer", data=body, headers={"Content-Type": "application/json"}
        ) as r:
            text = await r.text()
            return r.status, text


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    set_ice_host_addresses(["127.0.0.1"])
    srv = Server()
    run(srv.start())
    yield srv
    run(srv.stop())
    set_ice_host_addresses(None)
    _LOOP.close()


async def _real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


_SDP: list[str] = []


def real_sdp() -> str:
    if not _SDP:
        _SDP.append(run(_real_offer()))
    return _SDP[0]


@st.composite
def sdp_mutations(draw: st.DrawFn, sdp: str) -> str:
    """The offer's SDP with lines dropped, doubled, swapped, cut, garbled or added."""
    lines = sdp.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "cut", "value", "insert", "number", "swap", "crlf"]))
        line = lines[i]
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, line)
        elif op == "cut":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif op == "value":
            key, _, _ = line.partition("=")
            lines[i] = key + "=" + draw(st.text(max_size=60))
        elif op == "insert":
            lines.insert(
                i,
                draw(
                    st.sampled_from(
                        [
                            "m=audio 9 UDP/TLS/RTP/SAVPF",
                            "m=video 0 RTP/AVP 0",
                            "a=",
                            "a=rtpmap:111",
                            "a=fingerprint:sha-256 ZZ",
                            "c=IN IP6 ::1",
                            "a=candidate:1 1 udp 1 127.0.0.1 99999 typ host",
                            "v=1",
                            "a=group:BUNDLE 7 8 9",
                            "a=ssrc:-1 cname:x",
                            "\x00",
                            "é" * 50,
                        ]
                    )
                ),
            )
        elif op == "number":
            lines[i] = "".join(
                draw(st.sampled_from(["-1", "0", "99999999999999999999", "1e9", "NaN"]))
                if ch.isdigit()
                else ch
                for ch in line
            )
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = line.replace(" ", "\n", 1)
    return "\r\n".join(lines)


@st.composite
def offer_bodies(draw: st.DrawFn) -> bytes:
    sdp = real_sdp()
    kind = draw(st.sampled_from(["sdp", "sdp", "sdp", "json", "raw"]))
    if kind == "raw":
        return draw(st.one_of(st.binary(max_size=400), st.text(max_size=200).map(str.encode)))
    if kind == "json":
        msg = draw(
            messages_from([{"sdp": sdp, "type": "offer"}, {"sdp": sdp, "type": "offer", "agent": "x"}])
        )
        return msg.encode("utf-8", "surrogatepass") if isinstance(msg, str) else msg
    body = {"sdp": draw(sdp_mutations(sdp)), "type": "offer"}
    return json.dumps(body).encode()


def check_offer(srv: Server, body: bytes) -> None:
    async def go() -> None:
        status, text = await srv.offer(body)
        assert status in OK_STATUSES, (status, text[:300])
        await srv.end_calls()
        state = srv.app[STATE_KEY]
        assert state.admission.active == 0, state.admission.snapshot()
        assert srv.app[WEBRTC_KEY].calls == {} or all(
            e.task is None or e.task.done() for e in srv.app[WEBRTC_KEY].calls.values()
        )

    run(go())


def test_offer_endpoint_answers_fuzzed_bodies(server: Server) -> None:
    @FUZZ
    @given(body=offer_bodies())
    def prop(body: bytes) -> None:
        check_offer(server, body)

    prop()
    # the endpoint still takes a real offer
    check_offer(server, json.dumps({"sdp": real_sdp(), "type": "offer"}).encode())


@pytest.mark.parametrize(("file", "message"), corpus_params("webrtc-offer"))
def test_offer_corpus(server: Server, file: str, message: str | bytes) -> None:
    check_offer(server, message.encode() if isinstance(message, str) else message)


def test_events_socket_survives_fuzzed_messages(server: Server) -> None:
    async def open_call() -> tuple[str, aiohttp.ClientWebSocketResponse, RTCPeerConnection]:
        # a real peer that connects, so the call stays up (one that never connects is closed)
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("events")
        await pc.setLocalDescription(await pc.createOffer())
        status, text = await server.offer(
            json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
        )
        assert status == 200, text
        answer = json.loads(text)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        assert server.http is not None
        ws = await server.http.ws_connect(f"{server.url}/api/events/{answer['pc_id']}")
        return answer["pc_id"], ws, pc

    pc_id, ws, peer = run(open_call())
    entry = server.app[WEBRTC_KEY].calls[pc_id]
    seeds: list[Any] = [{"type": "ping"}, {"type": "user-transcription", "data": {"text": "hi"}}]

    async def send(messages: list[str | bytes], n: int) -> None:
        for m in messages:
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            else:
                await ws.send_str(m.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
        entry.events.emit("fuzz-probe", {"n": n})  # the call's events still reach the page
        while True:
            msg = await asyncio.wait_for(ws.receive(), 5.0)
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
            event = json.loads(msg.data)
            if event.get("type") == "fuzz-probe" and event["data"]["n"] == n:
                return

    count = iter(range(10**9))

    @FUZZ
    @given(messages=st.lists(messages_from(seeds), min_size=1, max_size=4))
    def prop(messages: list[str | bytes]) -> None:
        run(send(messages, next(count)))

    try:
        prop()
    finally:
        run(ws.close())
        run(peer.close())
