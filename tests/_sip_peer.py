"""A scripted SIP peer for the SIPServer tests: raw UDP sockets on 127.0.0.1, messages built by hand."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable
from typing import Any

from flowcat import FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.frames import Frame, InputAudioRawFrame, InputDTMFFrame
from flowcat.transports.sip import SIPMessage, SIPTransport, parse_message

WAIT = 5.0


class Peer(asyncio.DatagramProtocol):
    """One UDP socket that records every SIP message it receives."""

    def __init__(self) -> None:
        self.inbox: list[SIPMessage] = []
        self.raw: list[bytes] = []
        self._changed = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @classmethod
    async def open(cls) -> Peer:
        loop = asyncio.get_running_loop()
        peer = cls()
        tr, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
        peer.port = tr.get_extra_info("sockname")[1]
        return peer

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.raw.append(data)
        self.inbox.append(parse_message(data))
        self._changed.set()

    def send(self, data: bytes | str, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data.encode() if isinstance(data, str) else data, ("127.0.0.1", port))

    async def expect(
        self, pred: Callable[[SIPMessage], bool], count: int = 1, timeout: float = WAIT
    ) -> list[SIPMessage]:
        async def wait() -> list[SIPMessage]:
            while True:
                got = [m for m in self.inbox if pred(m)]
                if len(got) >= count:
                    return got
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def free_sip_port() -> int:
    """A port free for UDP and for TCP on 127.0.0.1 now. A SIP listener (flowcat's, baresip's) binds
    both, and a UDP-only pick may be an outgoing TCP connection's local port: the TCP listen then fails."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listeners bind
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP in 50 tries")


def status(code: int, method: str = "INVITE") -> Callable[[SIPMessage], bool]:
    return lambda m: m.status == code and m.cseq[1] == method


def request(method: str) -> Callable[[SIPMessage], bool]:
    return lambda m: m.method == method


class Dialog:
    """The caller's side of one call: builds INVITE, ACK, CANCEL, BYE, re-INVITE."""

    def __init__(
        self, peer: Peer, server_port: int, *, record_route: list[str] | None = None, te_pt: int = 101
    ) -> None:
        self.peer = peer
        self.server_port = server_port
        self.call_id = secrets.token_hex(8) + "@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.branch = "z9hG4bK" + secrets.token_hex(6)
        self.record_route = record_route or []
        self.te_pt = te_pt
        self.to_tag = ""
        self.cseq = 1

    def sdp(self, direction: str = "sendrecv", rtp_port: int = 40000) -> str:
        return (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 {self.te_pt}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:{self.te_pt} telephone-event/8000\r\na={direction}\r\n"
        )

    def _headers(self, method: str, cseq: int, branch: str, to_tag: str = "") -> str:
        to = f"<sip:agent@127.0.0.1:{self.server_port}>" + (f";tag={to_tag}" if to_tag else "")
        rr = "".join(f"Record-Route: {r}\r\n" for r in self.record_route) if method == "INVITE" else ""
        return (
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.peer.port};branch={branch};rport\r\n"
            f'{rr}From: "Alice" <sip:+15551234@127.0.0.1>;tag={self.tag}\r\nTo: {to}\r\n'
            f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:alice@127.0.0.1:{self.peer.port}>\r\nMax-Forwards: 70\r\n"
        )

    def invite(self, direction: str = "sendrecv", rtp_port: int = 40000) -> str:
        body = self.sdp(direction, rtp_port)
        return (
            f"INVITE sip:agent@127.0.0.1:{self.server_port} SIP/2.0\r\n"
            + self._headers("INVITE", 1, self.branch)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        )

    def send_invite(self, **kw: Any) -> None:
        self.peer.send(self.invite(**kw), self.server_port)

    def ack(self, to_tag: str, *, for_2xx: bool = True) -> None:
        branch = "z9hG4bK" + secrets.token_hex(6) if for_2xx else self.branch
        self.peer.send(
            f"ACK sip:agent@127.0.0.1:{self.server_port} SIP/2.0\r\n"
            + self._headers("ACK", 1, branch, to_tag)
            + "Content-Length: 0\r\n\r\n",
            self.server_port,
        )

    def cancel(self) -> None:
        self.peer.send(
            f"CANCEL sip:agent@127.0.0.1:{self.server_port} SIP/2.0\r\n"
            + self._headers("CANCEL", 1, self.branch)
            + "Content-Length: 0\r\n\r\n",
            self.server_port,
        )

    def bye(self, to_tag: str) -> None:
        self.cseq += 1
        self.peer.send(
            f"BYE sip:agent@127.0.0.1:{self.server_port} SIP/2.0\r\n"
            + self._headers("BYE", self.cseq, "z9hG4bK" + secrets.token_hex(6), to_tag)
            + "Content-Length: 0\r\n\r\n",
            self.server_port,
        )

    def reinvite(self, to_tag: str, direction: str) -> str:
        self.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(6)
        body = self.sdp(direction)
        self.peer.send(
            f"INVITE sip:agent@127.0.0.1:{self.server_port} SIP/2.0\r\n"
            + self._headers("INVITE", self.cseq, branch, to_tag)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}",
            self.server_port,
        )
        return branch


class Recorder(FrameProcessor):
    """Records caller audio and DTMF; passes everything on."""

    def __init__(self) -> None:
        super().__init__(name="recorder")
        self.audio = bytearray()
        self.dtmf: list[str] = []
        self.got_audio = asyncio.Event()
        self.got_dtmf = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: Any) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.audio += frame.audio
            self.got_audio.set()
        elif isinstance(frame, InputDTMFFrame):
            self.dtmf.append(frame.button.value)
            self.got_dtmf.set()
        await self.push_frame(frame, direction)


class App:
    """An app factory that records each call (transport, task, recorder)."""

    def __init__(self, *, echo: bool = False, decline: bool = False) -> None:
        self.echo = echo
        self.decline = decline
        self.calls: list[tuple[SIPTransport, PipelineTask, Recorder]] = []
        self.called = asyncio.Event()

    def __call__(self, transport: SIPTransport) -> PipelineTask | None:
        self.called.set()
        if self.decline:
            return None
        rec = Recorder()
        procs: list[FrameProcessor] = [transport.input(), rec]
        if self.echo:
            from flowcat.server import EchoProcessor

            procs.append(EchoProcessor())
        procs.append(transport.output())
        task = PipelineTask(
            Pipeline(procs), params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000)
        )
        self.calls.append((transport, task, rec))
        return task
