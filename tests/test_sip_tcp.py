"""SIP over TCP and TLS (RFC 3261 §18): stream framing, connection reuse, large requests, TLS.

Scripted peers on real sockets on 127.0.0.1 (asyncio streams, UDP), two flowcat servers
over TLS with a self-signed certificate made by the test; the sipp runs are in
tests/test_sip_tcp_interop.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from _helpers import self_signed_cert
from _sip_peer import WAIT, App, Dialog, Peer, status
from flowcat.errors import SIPCallError, SIPParseError
from flowcat.transports.sip import SIPMessage, SIPServer, Timers, parse_message, parse_name_addr, parse_via
from flowcat.transports.sip._tcp import MAX_HEADER_BYTES, PING, StreamFramer

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(60)]

RTP = (34000, 34200)


def _msg(method: str, body: bytes = b"", extra: str = "", length: str | None = None) -> bytes:
    n = str(len(body)) if length is None else length
    head = (
        f"{method} sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKa1\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: c1\r\n"
        f"CSeq: 1 {method}\r\n{extra}l: {n}\r\n\r\n"
    )
    return head.encode() + body


# ---------------------------------------------------------------- framing


def test_framer_splits_a_stream_by_content_length_whatever_the_chunking() -> None:
    stream = PING + _msg("OPTIONS") + b"\r\n" + _msg("MESSAGE", b"hello\r\n\r\nworld") + _msg("OPTIONS")
    for size in (1, 3, 7, len(stream)):
        framer = StreamFramer(65535)
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += framer.feed(stream[i : i + size])
        assert out[0] is PING
        msgs = [parse_message(m) for m in out[1:]]
        assert [m.method for m in msgs] == ["OPTIONS", "MESSAGE", "OPTIONS"]
        assert msgs[1].body == b"hello\r\n\r\nworld"  # a blank line inside the body is body


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_msg("OPTIONS").replace(b"l: 0\r\n", b""), "no Content-Length"),
        (_msg("OPTIONS", length="x1"), "bad Content-Length"),
        (_msg("OPTIONS", length="70000"), "exceeds the limit"),
        (b"OPTIONS sip:a SIP/2.0\r\n" + b"X: y\r\n" * 3000, "header block over"),
    ],
)
def test_framer_errors_close_the_stream(data: bytes, error: str) -> None:
    with pytest.raises(SIPParseError, match=error):
        StreamFramer(65535).feed(data)


# ---------------------------------------------------------------- a scripted TCP caller


class TCPPeer:
    """One TCP connection to the server; parses what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer(65535)
        self.inbox: list[SIPMessage] = []
        self.pongs = 0

    @classmethod
    async def connect(cls, port: int, ctx: ssl.SSLContext | None = None) -> TCPPeer:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(r, w)

    @property
    def port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def next(self) -> SIPMessage:
        async def read() -> SIPMessage:
            while True:
                data = await self.reader.read(4096)
                if not data:
                    raise ConnectionError("closed")
                for m in self.framer.feed(data):
                    self.inbox.append(parse_message(m))
                if self.inbox:
                    return self.inbox.pop(0)

        if self.inbox:
            return self.inbox.pop(0)
        return await asyncio.wait_for(read(), WAIT)

    async def send(self, data: str | bytes, chunk: int = 0) -> None:
        raw = data.encode() if isinstance(data, str) else data
        step = chunk or len(raw)
        for i in range(0, len(raw), step):
            self.writer.write(raw[i : i + step])
            await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


def tcp_dialog(peer: TCPPeer, server_port: int) -> Dialog:
    """The scripted caller's messages (tests/_sip_peer.py), with a TCP Via."""
    d = Dialog(Peer(), server_port)
    d.peer.port = peer.port
    return d


def over_tcp(text: str) -> str:
    return text.replace("SIP/2.0/UDP", "SIP/2.0/TCP").replace(";rport", "")


async def start(app: App, **kw: object) -> SIPServer:
    kw.setdefault("timers", Timers(t1=0.05, t2=0.2, t4=0.2))
    srv = SIPServer(app, port=0, rtp_ports=RTP, **kw)  # type: ignore[arg-type]
    await srv.start()
    return srv


@pytest.fixture
async def server() -> AsyncIterator[tuple[SIPServer, App]]:
    app = App()
    srv = await start(app)
    try:
        yield srv, app
    finally:
        await srv.stop()


async def test_a_call_over_tcp_in_fragments_answered_on_the_same_connection(
    server: tuple[SIPServer, App],
) -> None:
    srv, app = server
    peer = await TCPPeer.connect(srv.port)
    try:
        d = tcp_dialog(peer, srv.port)
        await peer.send(PING)  # RFC 5626 keep-alive: answered with one CRLF
        assert await asyncio.wait_for(peer.reader.readexactly(2), WAIT) == b"\r\n"
        await peer.send(over_tcp(d.invite()), chunk=7)
        got = [await peer.next() for _ in range(3)]
        assert [m.status for m in got] == [100, 180, 200]
        ok = got[2]
        assert parse_via(ok.get("Via") or "").transport == "TCP"
        assert ok.get("Contact") == f"<sip:flowcat@127.0.0.1:{srv.port};transport=tcp>"
        to_tag = parse_name_addr(ok.get("To") or "").tag or ""
        await peer.send(over_tcp(_ack(d, to_tag)))
        await asyncio.wait_for(srv.calls[d.call_id].confirmed.wait(), WAIT)
        await peer.send(over_tcp(_bye(d, to_tag)))
        bye_ok = await peer.next()
        assert (bye_ok.status, bye_ok.cseq[1]) == (200, "BYE")
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert srv.endpoint.streams is not None and srv.endpoint.streams.accepted == 1
        assert app.calls[0][0].call.call_id == d.call_id
    finally:
        peer.close()


def _ack(d: Dialog, to_tag: str) -> str:
    sent: list[str] = []
    d.peer.send = lambda data, port: sent.append(data)  # type: ignore[method-assign, assignment, misc]
    d.ack(to_tag)
    return sent[0]


def _bye(d: Dialog, to_tag: str) -> str:
    sent: list[str] = []
    d.peer.send = lambda data, port: sent.append(data)  # type: ignore[method-assign, assignment, misc]
    d.bye(to_tag)
    return sent[0]


async def test_pipelined_requests_and_a_framing_error_closes_only_that_connection(
    server: tuple[SIPServer, App],
) -> None:
    srv, _ = server
    peer = await TCPPeer.connect(srv.port)
    bad = await TCPPeer.connect(srv.port)
    try:
        two = _msg("OPTIONS") + _msg("OPTIONS").replace(b"z9hG4bKa1", b"z9hG4bKa2")
        await peer.send(two)
        replies = [await peer.next(), await peer.next()]
        assert [r.status for r in replies] == [200, 200]
        assert [parse_via(r.get("Via") or "").branch for r in replies] == ["z9hG4bKa1", "z9hG4bKa2"]
        assert replies[0].get("X-Flowcat-Load") == "calls=0;capacity=-"
        await bad.send(_msg("OPTIONS").replace(b"l: 0\r\n", b""))  # no Content-Length
        assert await asyncio.wait_for(bad.reader.read(), WAIT) == b""  # closed by the server
        assert srv.endpoint.streams is not None and srv.endpoint.streams.bad_streams == 1
        await peer.send(_msg("OPTIONS").replace(b"z9hG4bKa1", b"z9hG4bKa3"))
        assert (await peer.next()).status == 200  # the good connection is unaffected
    finally:
        peer.close()
        bad.close()


async def test_connections_over_the_cap_are_refused_the_others_served(server: tuple[SIPServer, App]) -> None:
    srv, _ = server
    streams = srv.endpoint.streams
    assert streams is not None
    streams.max_connections = 1
    first = await TCPPeer.connect(srv.port)
    await first.send(_msg("OPTIONS"))
    assert (await first.next()).status == 200  # the first is up and counted
    second = await TCPPeer.connect(srv.port)
    try:
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(second.reader.read(), WAIT) == b""
        assert streams.refused == 1
        await first.send(_msg("OPTIONS").replace(b"z9hG4bKa1", b"z9hG4bKa9"))
        assert (await first.next()).status == 200
    finally:
        first.close()
        second.close()


def test_fuzz_mutated_streams_raise_only_the_framing_or_parser_error() -> None:
    """10,000 streams of 1-3 mutated messages (tests/test_sip_message.py's mutator), cut at
    random points: the framer raises only SIPParseError (the connection would close), its
    buffer stays bounded, and every message it frames parses or raises SIPParseError."""
    from test_sip_message import mutate

    rng = random.Random(18)
    framed = errors = 0
    for _ in range(10_000):
        stream = b"".join(mutate(rng) for _ in range(rng.randint(1, 3)))
        cuts = sorted(rng.sample(range(len(stream) + 1), min(3, len(stream) + 1)))
        framer = StreamFramer(65535)
        try:
            for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
                for m in framer.feed(stream[a:b]):
                    if m is PING:
                        continue
                    framed += 1
                    with contextlib.suppress(SIPParseError):
                        parse_message(m)
                assert len(framer._buf) <= 65535 + MAX_HEADER_BYTES
        except SIPParseError:
            errors += 1
    assert framed > 1000 and errors > 1000  # both paths were exercised


async def test_a_request_over_1300_bytes_goes_over_tcp_with_a_tcp_via() -> None:
    """A UDP caller whose INVITE carries a long route set: the BYE flowcat sends along it is
    over 1300 bytes, so it goes over TCP (RFC 3261 §18.1.1) to the first route, its Via says
    TCP, and it is not retransmitted on the stream while it waits for the answer."""
    got: list[SIPMessage] = []
    arrived = asyncio.Event()
    framer = StreamFramer(65535)
    writers: list[asyncio.StreamWriter] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while data := await reader.read(4096):
            for m in framer.feed(data):
                got.append(parse_message(m))
                arrived.set()

    listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = listener.sockets[0].getsockname()[1]
    caller = await Peer.open()
    app = App()
    srv = await start(app, timers=Timers(t1=0.02, t2=0.08, t4=0.1))
    try:
        routes = [f"<sip:127.0.0.1:{proxy_port};lr>"] + [
            f"<sip:hop{i}.edge-proxy.invalid;lr;ftag=abcdefabcdef{i};did=0123456789abcdef>" for i in range(14)
        ]
        d = Dialog(caller, srv.port, record_route=routes)
        d.send_invite()
        ok = (await caller.expect(status(200)))[0]
        d.ack(parse_name_addr(ok.get("To") or "").tag or "")
        _, task, _ = app.calls[0]
        await srv.calls[d.call_id].confirmed.wait()
        await task.stop_when_done()  # flowcat hangs up: a BYE with 15 Route headers
        await asyncio.wait_for(arrived.wait(), WAIT)
        bye = got[0]
        assert bye.method == "BYE" and len(bye.encode()) > 1300
        assert bye.get_all("Route") == routes
        via = parse_via(bye.get("Via") or "")
        assert (via.transport, via.port) == ("TCP", srv.port)
        txn = next(t for t in srv.endpoint.client_txns.values() if t.request.method == "BYE")

        async def retransmitted_twice() -> None:  # Timer E fired twice (t1 = 20 ms) ...
            while txn.retransmissions < 2:  # noqa: ASYNC110 - bounded poll of a counter set by timers
                await asyncio.sleep(0.01)

        await asyncio.wait_for(retransmitted_twice(), WAIT)
        assert len(got) == 1  # ... but nothing was resent on the stream
        reply = bye.encode().decode().replace(f"BYE {bye.uri} SIP/2.0", "SIP/2.0 200 OK", 1)
        writers[0].write(reply.encode())
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert not [m for m in caller.inbox if m.method == "BYE"]
    finally:
        caller.close()
        await srv.stop()
        listener.close()


async def test_a_refused_tcp_connection_fails_the_call_at_once_not_after_timer_b() -> None:
    """Timer B is 64·T1 = 32 s here; a refused connect is a transport error (RFC 3261 §17.1.4)."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = await start(App(), timers=Timers())
    try:
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(SIPCallError, match="no answer"):
            await asyncio.wait_for(srv.dial(f"sip:nobody@127.0.0.1:{port};transport=tcp"), 10)
        assert asyncio.get_running_loop().time() - t0 < 5
        assert not srv.endpoint.client_txns and srv.rtp_ports.in_use == 0
    finally:
        await srv.stop()


# ---------------------------------------------------------------- TLS


def _contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed_cert(tmp)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx


async def test_tls_options_from_a_python_tls_client(tmp_path: Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    srv = await start(App(), tls=server_ctx, tls_port=0)
    try:
        assert srv.tls_port not in (0, srv.port)
        peer = await TCPPeer.connect(srv.tls_port, client_ctx)
        try:
            await peer.send(_msg("OPTIONS").replace(b"SIP/2.0/TCP", b"SIP/2.0/TLS"))
            ok = await peer.next()
            assert ok.status == 200 and parse_via(ok.get("Via") or "").transport == "TLS"
        finally:
            peer.close()
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
            await TCPPeer.connect(srv.tls_port, ssl.create_default_context())
    finally:
        await srv.stop()


async def test_flowcat_calls_flowcat_over_tls(tmp_path: Path) -> None:
    """Server A dials B at ``;transport=tls``: INVITE, 200, ACK and A's BYE all on one TLS
    connection, the Vias say TLS with A's TLS port; B sees the call and its end."""
    server_ctx, client_ctx = _contexts(tmp_path)
    app_a, app_b = App(), App()
    b = await start(app_b, tls=server_ctx, tls_port=0, tcp=False)
    a = await start(app_a, tls=server_ctx, tls_port=0, tls_client=client_ctx)
    assert b.endpoint.transport is not None
    b.endpoint.transport.close()  # B has no UDP socket: everything must come over TLS
    try:
        call = await a.dial(f"sip:agent@127.0.0.1:{b.tls_port};transport=tls")
        await asyncio.wait_for(app_b.called.wait(), WAIT)
        inbound = next(iter(b.calls.values()))
        await asyncio.wait_for(inbound.confirmed.wait(), WAIT)  # the ACK came (over TLS)
        via = parse_via(inbound.invite_txn.request.get("Via") or "")
        assert (via.transport, via.port) == ("TLS", a.tls_port)
        _, task, _ = app_a.calls[0]
        await task.stop_when_done()  # A hangs up
        await asyncio.wait_for(call.ended.wait(), WAIT)
        await asyncio.wait_for(b.wait_calls_ended(), WAIT)
        assert inbound.bye_received
        assert b.endpoint.streams is not None and b.endpoint.streams.accepted == 1
        assert b.endpoint.messages_in == 3  # INVITE, ACK, BYE
        assert a.endpoint.streams is not None and a.endpoint.streams.opened == 1
    finally:
        await a.stop()
        await b.stop()
