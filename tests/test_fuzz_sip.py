"""Fuzzing the SIP media path: malformed RTP into a live call, and mutated SDP offers.

Properties:

* RTP: a call is answered by a real :class:`SIPServer` on 127.0.0.1; batches of
  mutated and malformed RTP packets (truncated headers, absurd CSRC counts and
  extension lengths, bad padding, the call's own SSRC and payload types with wild
  sequence numbers and timestamps, random bytes) are sent to its RTP port from the
  caller's address, each batch followed by the caller's next valid audio packet.
  Nothing raises, the valid packet's audio reaches the pipeline within a few more
  packets (a corrupted sequence number may cost a resync, never the call), the
  jitter buffer holds no more than its depth, and after the run the call is still up
  and a clean stretch of audio arrives bit-exact. ``FLOWCAT_FUZZ_EXAMPLES`` batches
  of 50 packets (default 200: 10,000 packets).
* SDP: :func:`parse_offer`, :func:`negotiate` and :func:`build_answer` raise only
  :class:`SDPError` for 10,000 mutated offers; a live server answers a sample of
  them with ``200`` or ``488`` and keeps answering calls.

The SIP message parser's own 10,000-message run is in tests/test_sip_message.py. See
tests/_fuzz.py for the settings and the saved corpus (tests/fixtures/fuzz/rtp/).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _fuzz import EXAMPLES, FUZZ, corpus, corpus_params
from _sip_peer import WAIT, App, Dialog, Peer, status
from flowcat.audio import ulaw_to_pcm16
from flowcat.audio.dtmf import build_telephone_event
from flowcat.errors import SDPError
from flowcat.transports.sip import (
    SIPServer,
    Timers,
    build_answer,
    build_rtp,
    negotiate,
    parse_name_addr,
    parse_offer,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(600)]

_LOOP = asyncio.new_event_loop()
RTP = (33000, 33100)
PER_BATCH = 50
TE_PT = 101


def run(coro: Any) -> Any:
    return _LOOP.run_until_complete(asyncio.wait_for(coro, 30))


class RawPeer(asyncio.DatagramProtocol):
    """The caller's RTP socket: sends datagrams, counts what flowcat sends back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.received = 0
        self.waiting = b""
        self.synced = asyncio.Event()
        self.got = asyncio.Event()

    @classmethod
    async def open(cls) -> RawPeer:
        peer = cls()
        tr, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: peer, local_addr=("127.0.0.1", 0)
        )
        peer.port = tr.get_extra_info("sockname")[1]
        return peer

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.got.set()
        if self.waiting and self.waiting in data:
            self.synced.set()

    async def sync(self, server_port: int, call_id: str) -> None:
        """An OPTIONS behind everything sent so far; its answer means the server read them all."""
        self.waiting = call_id.encode()
        self.synced.clear()
        self.send(
            f"OPTIONS sip:agent@127.0.0.1:{server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{call_id};rport\r\n"
            f"From: <sip:fuzz@127.0.0.1>;tag=f\r\nTo: <sip:agent@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode(),
            server_port,
        )
        await asyncio.wait_for(self.synced.wait(), WAIT)

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LiveCall:
    """One answered call and the caller's RTP socket (module-wide: every example talks to it)."""

    def __init__(self) -> None:
        self.app = App()
        self.srv = SIPServer(self.app, port=0, rtp_ports=RTP, timers=Timers(t1=0.05))
        self.sip: Peer
        self.rtp: RawPeer
        self.fuzz_peer: RawPeer
        self.port = 0
        self.seq = 1000
        self.ts = 5000
        self.ssrc = 0x0A0B0C0D
        self.valid_sent = 0
        self.sent = 0
        self.sip_sent = 0
        self.errors: list[dict[str, Any]] = []
        """Exceptions the event loop caught (a datagram handler raising)."""

    async def start(self) -> None:
        await self.srv.start()
        self.sip = await Peer.open()
        self.rtp = await RawPeer.open()
        self.fuzz_peer = await RawPeer.open()  # sends the SIP mutants, takes the responses unparsed
        d = Dialog(self.sip, self.srv.port, te_pt=TE_PT)
        self.dialog = d
        d.send_invite(rtp_port=self.rtp.port)
        ok = (await self.sip.expect(status(200)))[0]
        self.to_tag = parse_name_addr(ok.get("To") or "").tag or ""
        d.ack(self.to_tag)
        self.port = parse_offer(ok.body).port
        self.transport, self.task, self.rec = self.app.calls[0]
        await self.valid(1)

    def payload(self) -> bytes:
        """A distinct 160-byte μ-law payload per valid packet (never the two zero codes)."""
        rnd = random.Random(self.valid_sent)
        return bytes(rnd.choice(range(0x10, 0x70)) for _ in range(160))

    async def valid(self, tries: int) -> bytes:
        """Send the caller's next audio packet(s) until one of them reaches the pipeline. A try ends
        when the packet's audio arrived, or as soon as the server has read it and its jitter buffer
        did not release it (held or dropped as late after a hostile packet), at most after 0.5 s."""
        rec = self.rec
        for _ in range(tries):
            payload = self.payload()
            pcm = ulaw_to_pcm16(payload)
            mark = len(rec.audio)
            self.rtp.send(build_rtp(0, False, self.seq, self.ts, self.ssrc, payload), self.port)
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + 160) & 0xFFFFFFFF
            self.valid_sent += 1
            self.sent += 1
            try:
                if await asyncio.wait_for(self._arrived(pcm, mark), 0.5):
                    return pcm
            except TimeoutError:
                continue
        raise AssertionError(f"no valid audio got through in {tries} packets")

    async def _arrived(self, pcm: bytes, mark: int) -> bool:
        """True once ``pcm`` reached the pipeline; False once the server read every datagram sent
        and the last audio its jitter buffer released is not ``pcm`` (this packet is held or lost)."""
        rec, media = self.rec, self.transport.media
        assert media is not None
        while media.packets_in + media.bad_packets + media.foreign < self.sent:
            if pcm in rec.audio[mark:]:
                return True
            await asyncio.sleep(0.001)  # the server's socket read: bounded by the caller's timeout
        if media._rx_pcm != pcm and pcm not in rec.audio[mark:]:
            return False
        while pcm not in rec.audio[mark:]:
            rec.got_audio.clear()
            await rec.got_audio.wait()
        return True

    async def stop(self) -> None:
        await self.srv.stop()
        self.sip.close()
        self.rtp.close()
        self.fuzz_peer.close()


@pytest.fixture(scope="module")
def call() -> Iterator[LiveCall]:
    live = LiveCall()
    _LOOP.set_exception_handler(lambda loop, ctx: live.errors.append(ctx))
    run(live.start())
    try:
        yield live
        # every batch arrived (UDP on loopback), and the call still ends normally: BYE → 200
        media = live.transport.media
        assert media is not None and media.packets_in + media.bad_packets + media.foreign >= live.sent
        live.dialog.bye(live.to_tag)
        run(
            live.sip.expect(
                lambda m: m.status == 200 and m.call_id == live.dialog.call_id and m.cseq[1] == "BYE"
            )
        )
        run(live.srv.wait_calls_ended())  # the fuzz's own calls end too (never ACKed: Timer H)
        assert live.srv.active_calls == 0 and live.srv.rtp_ports.in_use == 0
    finally:
        run(live.stop())
        _LOOP.close()


# ------------------------------------------------------------------ RTP mutants


@st.composite
def rtp_packet(draw: st.DrawFn) -> bytes:
    """A malformed or hostile RTP packet aimed at the call (see the module docstring)."""
    kind = draw(
        st.sampled_from(
            ["fields", "fields", "flip", "flip", "truncate", "header", "random", "event", "empty"]
        )
    )
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\x80", b"\x80\x00", b"\x80" * 11]))
    pt = draw(st.sampled_from([0, 0, 8, TE_PT, 13, 127, draw(st.integers(0, 127))]))
    seq = draw(st.integers(0, 0xFFFF))
    ts = draw(st.integers(0, 0xFFFFFFFF))
    ssrc = draw(st.sampled_from([0x0A0B0C0D, 0, 0xFFFFFFFF, draw(st.integers(0, 0xFFFFFFFF))]))
    if pt == TE_PT:
        payload = build_telephone_event(draw(st.integers(0, 255)), end=draw(st.booleans()),
                                        duration=draw(st.integers(0, 0xFFFF)))  # fmt: skip
        payload = payload[: draw(st.integers(0, 4))] if draw(st.booleans()) else payload
    else:
        payload = draw(st.binary(max_size=400))
    pkt = bytearray(build_rtp(pt, draw(st.booleans()), seq, ts, ssrc, payload))
    if kind == "event":
        pkt[1] = (pkt[1] & 0x80) | TE_PT
    elif kind == "header":  # CSRC count, extension and padding bits with lengths that lie
        pkt[0] = 0x80 | draw(st.integers(0, 0x3F))
        if pkt[0] & 0x10 and draw(st.booleans()):
            at = 12 + 4 * (pkt[0] & 0x0F)
            pkt[at:at] = b"\xbe\xde" + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        if pkt[0] & 0x20 and pkt:
            pkt[-1] = draw(st.integers(0, 255))
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(pkt) - 1))
            pkt[at] = draw(st.integers(0, 255))
    elif kind == "truncate":
        del pkt[draw(st.integers(0, len(pkt))) :]
    return bytes(pkt)


def _check(live: LiveCall) -> None:
    assert not live.errors, live.errors[:3]
    media = live.transport.media
    assert media is not None, "the call's media was torn down"
    assert len(media.jitter._held) <= media.jitter.max_depth + 1
    assert live.dialog.call_id in live.srv.calls and not live.task.has_finished()


@FUZZ
@given(st.lists(rtp_packet(), min_size=PER_BATCH, max_size=PER_BATCH))
def test_fuzz_rtp_into_a_live_call(call: LiveCall, packets: list[bytes]) -> None:
    async def batch() -> None:
        for pkt in packets:
            call.rtp.send(pkt, call.port)
        call.sent += sum(1 for p in packets if p)  # asyncio does not send an empty datagram
        # the caller's next packet gets through (a resync at worst: at most a few packets)
        await call.valid(12)

    run(batch())
    _check(call)


@pytest.mark.parametrize(("name", "data"), corpus_params("rtp"))
def test_rtp_corpus_into_a_live_call(call: LiveCall, name: str, data: bytes) -> None:
    async def one() -> None:
        call.rtp.send(data, call.port)
        call.sent += bool(data)
        await call.valid(12)

    run(one())
    _check(call)


def test_after_the_fuzz_the_call_is_intact_and_audio_is_bit_exact(call: LiveCall) -> None:
    """After (or between) the fuzz batches a clean stretch arrives whole and in order."""

    async def clean() -> bool:
        await call.valid(12)  # resynchronised on the caller's stream
        mark = len(call.rec.audio)
        sent = b""
        for _ in range(20):
            sent += await call.valid(1)
        return bytes(call.rec.audio[mark:]) == sent and sent != b""

    assert run(clean())
    _check(call)


# ------------------------------------------------------------------ SIP into the live server

SIP_SEEDS: list[bytes] = []


class LoopbackOnly:
    """The server's SIP socket, wrapped: responses go to 127.0.0.0/8 only (a mutated Via may name
    any host; the fuzz must never send a datagram off this machine); the rest are counted."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.elsewhere = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        if str(addr[0]).startswith("127."):
            self.transport.sendto(data, addr)
        else:
            self.elsewhere += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _sip_seeds(live: LiveCall) -> list[bytes]:
    """Requests like the caller's, to the live server: another call's INVITE (SDP and all), an
    OPTIONS, a BYE and a re-INVITE of an unknown dialog, a response, a CANCEL."""
    d = Dialog(live.fuzz_peer, live.srv.port)  # type: ignore[arg-type]  # builds text only
    bye = d.invite().replace("INVITE sip:", "BYE sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
    return [
        d.invite().encode(),
        d.invite().replace("INVITE", "OPTIONS").encode(),
        bye.replace(
            "To: <sip:agent@127.0.0.1:" + str(live.srv.port) + ">", "To: <sip:a@127.0.0.1>;tag=x"
        ).encode(),
        b"SIP/2.0 200 OK\r\n" + d.invite().split("\r\n", 1)[1].encode(),
        d.invite().replace("INVITE sip:", "CANCEL sip:", 1).encode(),
    ]


def mutate_sip(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(0, 6)):
        op = rng.randint(0, 3)
        pos = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randint(0, 255)
        elif op == 1:
            data[pos:pos] = rng.choice(
                [b"\r\n", b":", b";", b"<", b" ", b"\x00", b"SIP/2.0", b"tag=", b"\r\n\r\n"]
            )
        elif op == 2:
            data[pos : pos + rng.randint(1, 40)] = b""
        else:
            data[pos:pos] = bytes(data[pos : pos + rng.randint(1, 80)])
    return bytes(data)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fuzz_sip_messages_into_the_live_server(call: LiveCall, rng: random.Random) -> None:
    """Mutated requests and responses (and unmutated ones: new calls, OPTIONS) at the server
    while the call is up: it keeps answering, the call's audio keeps flowing."""
    if not SIP_SEEDS:
        SIP_SEEDS.extend(_sip_seeds(call))
        ep = call.srv.endpoint
        ep.transport = LoopbackOnly(ep.transport)  # type: ignore[assignment]

    async def batch() -> None:
        for _ in range(PER_BATCH):
            msg = mutate_sip(rng, SIP_SEEDS)
            # another Call-ID per message: a mutant never continues the live call's dialog
            msg = msg.replace(b"Call-ID: ", b"Call-ID: f" + str(rng.getrandbits(32)).encode(), 1)
            call.fuzz_peer.send(msg, call.srv.port)
            await asyncio.sleep(0)  # the server reads as they come (a burst would overflow its socket)
        call.sip_sent += PER_BATCH
        await call.fuzz_peer.sync(call.srv.port, f"sync{call.sip_sent}")  # it answers still, in order
        await call.valid(12)

    run(batch())
    _check_sip(call)


def _check_sip(live: LiveCall) -> None:
    assert not live.errors, live.errors[:3]
    assert live.task is not None and not live.task.has_finished()
    assert live.dialog.call_id in live.srv.calls
    assert live.transport.media is not None


async def _fatal_errors(coro_fn: Any) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        await coro_fn()
    finally:
        loop.set_exception_handler(old)
    return errors


BAD_ADDRESSES = [("127.0.0.1\x00", 5060), ("127.0.0.1\udcff", 5060), ("ex ample", 5060), ("127.0.0.1", 70000),
                 ("127.0.0.1", 0), ("é.example", 5060)]  # fmt: skip


async def test_a_garbage_destination_never_reaches_the_sip_socket() -> None:
    """Fuzz finding: the server's BYE to a fuzzed INVITE's Contact host ('127.0.0.1' plus a
    byte that is not ASCII) raised inside asyncio's sendto, which closed the SIP socket: the
    server went deaf. Such a destination is now dropped and counted."""
    from flowcat.transports.sip._endpoint import SIPEndpoint

    class Core:
        def on_request(self, txn: object) -> None: ...

        def on_ack(self, ack: object, addr: object) -> None: ...

    sink = await RawPeer.open()
    ep = SIPEndpoint(Core(), Timers())
    loop = asyncio.get_running_loop()
    tr, _ = await loop.create_datagram_endpoint(lambda: ep, local_addr=("127.0.0.1", 0))

    async def go() -> None:
        for addr in BAD_ADDRESSES:
            ep.send(b"OPTIONS", addr)
        ep.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("127.0.0.1", sink.port))
        await sink.got.wait()

    try:
        errors = await asyncio.wait_for(_fatal_errors(go), WAIT)
        assert errors == [] and not tr.is_closing()
        assert ep.bad_destinations == len(BAD_ADDRESSES) and ep.messages_out == 1
    finally:
        tr.close()
        sink.close()


async def test_an_sdp_address_no_socket_takes_is_not_sent_to_until_latched() -> None:
    from flowcat.transports.sip import Negotiated, RTPSession

    peer = await RawPeer.open()
    session = RTPSession(
        "t", Negotiated("PCMU", 0, None, ("127.0.0.1\udcff", 4000), "sendrecv"), {"127.0.0.1"}
    )
    loop = asyncio.get_running_loop()
    tr, _ = await loop.create_datagram_endpoint(lambda: session, local_addr=("127.0.0.1", 0))
    heard = asyncio.Event()

    class Sink:
        def on_rtp_audio(self, pcm: bytes) -> None:
            heard.set()

        def on_rtp_dtmf(self, key: object) -> None: ...

    session.sink = Sink()  # type: ignore[assignment]

    async def go() -> None:
        session.send_pcm(bytes(320))  # nowhere to send yet: nothing sent, the socket stays open
        assert session.packets_out == 0
        peer.send(build_rtp(0, False, 1, 160, 7, b"\xff" * 160), tr.get_extra_info("sockname")[1])
        await heard.wait()
        assert session.latched
        session.send_pcm(bytes(320))
        await peer.got.wait()

    try:
        errors = await asyncio.wait_for(_fatal_errors(go), WAIT)
        assert errors == [] and not tr.is_closing() and session.packets_out == 1
    finally:
        tr.close()
        peer.close()


# ------------------------------------------------------------------ SDP

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
SDP_SEEDS = [
    OFFER,
    OFFER.replace("0 8 101", "8 120").replace("101", "120"),
    OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0").replace("sendrecv", "sendonly"),
    "v=0\r\nc=IN IP6 ::1\r\nm=video 5000 RTP/AVP 96\r\nm=audio 0 RTP/AVP 0\r\n",
]
SDP_TOKENS = ["\r\n", "\n", " ", "=", ":", "/", "m=audio ", "c=IN IP4 ", "a=rtpmap:", "99999999999", "-1",
              "RTP/SAVP", "\x00", "\ufffd", "a=inactive", "m=audio 70000 RTP/AVP", "IN IP6 [", "0"]  # fmt: skip


def mutate_sdp(rng: random.Random) -> str:
    text = rng.choice(SDP_SEEDS)
    for _ in range(rng.randint(1, 8)):
        op = rng.randint(0, 3)
        pos = rng.randint(0, len(text))
        if op == 0:
            text = text[:pos] + chr(rng.randint(0, 0x2FF)) + text[pos + 1 :]
        elif op == 1:
            text = text[:pos] + rng.choice(SDP_TOKENS) + text[pos:]
        elif op == 2:
            text = text[:pos] + text[pos + rng.randint(1, 30) :]
        else:
            text = text[:pos] + text[pos : pos + rng.randint(1, 60)] + text[pos:]
    return text


def answer_or_refuse(text: str) -> bytes | None:
    """What the server does with an offer: an answer, or None for a 488 (SDPError)."""
    try:
        neg = negotiate(parse_offer(text.encode("utf-8", "surrogatepass")), ("PCMU", "PCMA"))
        return build_answer(neg, "127.0.0.1", 30000, session_id=1, version=1)
    except SDPError:
        return None


SDP_PER_EXAMPLE = -(-10_000 // max(EXAMPLES, 1))  # at least 10,000 offers in all


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fuzz_mutated_sdp_offers_raise_only_sdp_error(rng: random.Random) -> None:
    for _ in range(SDP_PER_EXAMPLE):
        text = mutate_sdp(rng)
        try:
            answer = answer_or_refuse(text)
        except Exception as exc:  # pragma: no cover - a finding
            raise AssertionError(f"{type(exc).__name__} for {text!r}") from exc
        if answer is not None:
            assert b"m=audio 30000 RTP/AVP" in answer


def test_a_live_server_answers_mutated_offers_with_200_or_488_and_keeps_working() -> None:
    async def go() -> None:
        app = App()
        srv = SIPServer(app, port=0, rtp_ports=(33200, 33300), timers=Timers(t1=0.05))
        await srv.start()
        peer = await Peer.open()
        try:
            rng = random.Random(18)
            for i in range(60):
                d = Dialog(peer, srv.port)
                body = mutate_sdp(rng) if i < 59 else OFFER  # the last one is clean
                head = d.invite().split("\r\n\r\n", 1)[0].rsplit("Content-Length: ", 1)[0]
                peer.send(f"{head}Content-Length: {len(body.encode())}\r\n\r\n{body}", srv.port)
                final = await peer.expect(
                    lambda m, c=d.call_id: m.call_id == c and (m.status or 0) >= 200, timeout=3 * WAIT
                )
                code = final[0].status
                assert code in (200, 488), code
                if code == 200:
                    d.ack(parse_name_addr(final[0].get("To") or "").tag or "")
                    d.bye(parse_name_addr(final[0].get("To") or "").tag or "")
            assert code == 200
            await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
            assert srv.active_calls == 0 and srv.rtp_ports.in_use == 0
        finally:
            await srv.stop()
            peer.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(go(), 120))
    finally:
        loop.close()


def test_the_rtp_corpus_exists() -> None:
    assert len(corpus("rtp")) >= 3
