"""RTP: packets, the jitter buffer, symmetric-RTP latching and DTMF (the interop gotchas 2, 4 and 6)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from flowcat.audio import pcm16_to_ulaw, ulaw_to_pcm16
from flowcat.audio.dtmf import DTMFToneGenerator, GoertzelDTMFDetector, build_telephone_event
from flowcat.errors import TransportError
from flowcat.frames import KeypadEntry
from flowcat.transports.sip import (
    JitterBuffer,
    Negotiated,
    RTPPortAllocator,
    RTPSession,
    build_rtp,
    parse_rtp,
)

PEER = "192.0.2.10"


def test_rtp_round_trip_and_header_variants() -> None:
    pkt = build_rtp(0, True, 65535, 2**32 - 1, 0x1234, b"\xff" * 160)
    h = parse_rtp(pkt)
    assert h is not None and (h.payload_type, h.marker, h.sequence, h.timestamp, h.ssrc) == (
        0,
        True,
        65535,
        2**32 - 1,
        0x1234,
    )
    assert h.payload == b"\xff" * 160
    # one CSRC, a one-word extension and 3 bytes of padding
    raw = bytes((0x80 | 0x20 | 0x10 | 1, 8)) + b"\x00\x01" + b"\x00" * 8 + b"\x00" * 4
    raw += b"\xbe\xde\x00\x01" + b"\x11" * 4 + b"PAY" + b"\x00\x00\x03"
    h2 = parse_rtp(raw)
    assert h2 is not None and h2.payload == b"PAY" and h2.payload_type == 8
    for junk in (b"", b"\x00" * 11, b"\x40" + b"\x00" * 20, bytes((0xA0, 0)) + b"\x00" * 10 + b"\x00"):
        assert parse_rtp(junk) is None


def test_jitter_buffer_in_order_is_immediate() -> None:
    jb: JitterBuffer[int] = JitterBuffer(5)
    assert [jb.push(s, s) for s in (65534, 65535, 0, 1)] == [[65534], [65535], [0], [1]]
    assert jb.depth == 0 and jb.late == 0 and jb.lost == 0


def test_jitter_buffer_adapts_to_reordering_and_then_reorders() -> None:
    jb: JitterBuffer[int] = JitterBuffer(5)
    out: list[int] = []
    for s in (1, 3, 2):  # 2 arrives after 3 was released: late, dropped, depth grows
        out += jb.push(s, s)
    assert out == [1, 3] and jb.late == 1 and jb.lost == 1 and jb.depth == 1
    for s in (4, 6, 5, 7, 9, 8, 10):
        out += jb.push(s, s)
    assert out == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    # a lost packet is given up once more than `depth` later packets wait
    out = jb.push(12, 12) + jb.push(13, 13)
    assert out == [12, 13] and jb.lost == 2
    # a big jump (a restarted stream) resynchronises instead of waiting
    assert jb.push(30000, 30000) == [30000]


class FakeUDP:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


class Sink:
    def __init__(self) -> None:
        self.audio = bytearray()
        self.keys: list[str] = []

    def on_rtp_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    def on_rtp_dtmf(self, key: KeypadEntry) -> None:
        self.keys.append(key.value)


def session(te: int | None = 101, **kw: object) -> tuple[RTPSession, FakeUDP, Sink]:
    neg = Negotiated("PCMU", 0, te, (PEER, 4000), "sendrecv")
    s = RTPSession("t", neg, {PEER}, **kw)  # type: ignore[arg-type]
    udp = FakeUDP()
    s.connection_made(udp)
    sink = Sink()
    s.sink = sink
    return s, udp, sink


def audio(seq: int, ssrc: int = 7, payload: bytes = b"\xff" * 160) -> bytes:
    return build_rtp(0, False, seq, seq * 160, ssrc, payload)


def event(seq: int, ts: int, code: int, end: bool = False, ssrc: int = 9, pt: int = 101) -> bytes:
    return build_rtp(
        pt, False, seq, ts, ssrc, build_telephone_event(code, end=end, duration=160 * (seq % 8 + 1))
    )


def test_latching_happens_once_on_the_first_audio_packet() -> None:
    """Gotcha 2: sipp plays pcap DTMF from another port (even port 0); latch once, on audio only."""
    s, udp, _ = session()
    s.send_pcm(b"\x00" * 320)
    assert udp.sent[-1][1] == (PEER, 4000)  # before any packet: where the SDP said
    s.datagram_received(event(1, 100, 1), (PEER, 0))  # DTMF from port 0 does not latch
    assert not s.latched
    s.datagram_received(audio(1), (PEER, 40000))
    assert s.latched and s.remote == (PEER, 40000)
    s.datagram_received(audio(2, ssrc=8), (PEER, 40002))  # another source later: no re-latch
    s.send_pcm(b"\x00" * 320)
    assert udp.sent[-1][1] == (PEER, 40000)
    out = parse_rtp(udp.sent[-1][0])
    first = parse_rtp(udp.sent[0][0])
    assert out is not None and first is not None
    assert (out.sequence - first.sequence) % 65536 == 1 and (out.timestamp - first.timestamp) % 2**32 == 160
    assert first.marker and not out.marker and out.ssrc == first.ssrc


def test_packets_from_unexpected_hosts_are_dropped() -> None:
    s, _, sink = session()
    s.datagram_received(audio(1), ("198.51.100.66", 4000))
    s.datagram_received(b"not rtp", (PEER, 4000))
    assert s.foreign == 1 and s.bad_packets == 1 and not s.latched and not sink.audio


def test_audio_is_decoded_bit_exact() -> None:
    s, _, sink = session()
    payload = bytes(range(256))[:160]
    s.datagram_received(audio(1, payload=payload), (PEER, 4000))
    assert bytes(sink.audio) == ulaw_to_pcm16(payload)


def test_dtmf_digit_on_first_packet_of_each_new_ssrc_timestamp_without_end_packets() -> None:
    """Gotcha 4: baresip's last digit had no end packets; report on the first packet of a new event."""
    s, _, sink = session(te=120)
    for seq in range(1, 6):
        s.datagram_received(event(seq, 1000, 4, pt=120), (PEER, 4000))  # 5 updates, never an end
    assert sink.keys == ["4"]
    s.datagram_received(event(6, 2000, 2, pt=120), (PEER, 4000))
    s.datagram_received(event(7, 2000, 2, end=True, pt=120), (PEER, 4000))
    s.datagram_received(event(8, 2000, 2, end=True, pt=120), (PEER, 4000))  # retransmitted end
    assert sink.keys == ["4", "2"]
    # the same timestamp from a new SSRC is a new event
    s.datagram_received(event(1, 2000, 2, ssrc=99, pt=120), (PEER, 4000))
    assert sink.keys == ["4", "2", "2"]
    # PT 101 is not telephone-event on this call (the offer said 120)
    s.datagram_received(event(9, 3000, 5, pt=101), (PEER, 4000))
    assert sink.keys == ["4", "2", "2"] and s.other_payload == 1


def _tone_packets(digits: str) -> list[bytes]:
    gen = DTMFToneGenerator(8000)
    pcm = b"".join(gen.tone(d, duration_ms=100, gap_ms=80) for d in digits) + b"\x00" * 3200
    ulaw = pcm16_to_ulaw(pcm)
    return [audio(1 + i, payload=ulaw[o : o + 160]) for i, o in enumerate(range(0, len(ulaw) - 159, 160))]


def test_inband_dtmf_is_detected_after_reordering() -> None:
    """Gotcha 6: under reordering a naive in-band detector reported `1159#` for `159#`."""
    packets = _tone_packets("159#")
    # swap every 3rd pair: the stream arrives reordered throughout
    arrived = list(packets)
    for i in range(1, len(arrived) - 1, 3):
        arrived[i], arrived[i + 1] = arrived[i + 1], arrived[i]
    s, _, sink = session(te=None, inband_dtmf=True, jitter_max_packets=3)
    s.jitter.depth = 1  # as after the first reorder (adaptive growth is tested above)
    for p in arrived:
        s.datagram_received(p, (PEER, 4000))
    assert "".join(sink.keys) == "159#"
    assert s.jitter.late == 0
    # the same arrival order straight into the detector (no reordering) gets it wrong
    naive = GoertzelDTMFDetector(8000)
    keys = [k.value for p in arrived for k in naive.process(ulaw_to_pcm16(p[12:]))]
    assert "".join(keys) != "159#"


async def test_port_allocator_skips_busy_ports_and_reports_exhaustion() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1] & ~1
    busy.close()
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        busy.bind(("127.0.0.1", port))
    except OSError:
        pytest.skip("could not reserve a port pair")  # pragma: no cover
    alloc = RTPPortAllocator("127.0.0.1", port, port + 4)
    opened = []
    try:
        tr, _, got = await alloc.open(asyncio.DatagramProtocol)
        opened.append(tr)
        assert got == port + 2  # the busy one was skipped
        with pytest.raises(TransportError, match="no free RTP port"):
            await alloc.open(asyncio.DatagramProtocol)
        alloc.release(got)
        tr.close()
        await asyncio.sleep(0)
        tr2, _, again = await alloc.open(asyncio.DatagramProtocol)
        opened.append(tr2)
        assert again == port + 2
    finally:
        busy.close()
        for t in opened:
            t.close()


def test_media_from_the_sip_peer_is_latched_even_when_the_sdp_advertises_another_address() -> None:
    """Gotcha 3: baresip advertises the host's primary IP in SDP; the media comes from loopback.
    Symmetric RTP sends back to where it came from; media from other hosts is refused."""
    neg = Negotiated("PCMU", 0, 101, ("192.0.2.2", 4000), "sendrecv")
    s = RTPSession("t", neg, {"127.0.0.1"})  # the SIP peer's address
    udp = FakeUDP()
    s.connection_made(udp)
    s.datagram_received(audio(1), ("127.0.0.1", 40100))
    s.send_pcm(b"\x00" * 320)
    assert udp.sent[-1][1] == ("127.0.0.1", 40100)
    s.datagram_received(audio(2), ("198.51.100.9", 40100))
    assert s.foreign == 1


def test_own_packets_reflected_back_are_not_decoded() -> None:
    s, udp, sink = session()
    s.send_pcm(b"\x10\x00" * 160)
    s.datagram_received(udp.sent[-1][0], (PEER, 4000))
    assert s.looped == 1 and not sink.audio and not s.latched


def test_one_corrupted_sequence_number_costs_a_few_packets_not_the_stream() -> None:
    """Fuzz finding: one packet of the caller's SSRC with a sequence number 500 ahead (a bit
    flip, a spoofed packet) made every real packet after it "late" and dropped, about 10 s
    of audio, until the stream caught up. A run of late packets now resynchronises."""
    s, _, sink = session()
    for seq in range(100, 110):
        s.datagram_received(audio(seq, payload=bytes([0x20 + seq % 64]) * 160), (PEER, 4000))
    s.datagram_received(audio(600), (PEER, 4000))
    mark = len(sink.audio)
    for seq in range(110, 140):
        s.datagram_received(audio(seq, payload=bytes([0x20 + seq % 64]) * 160), (PEER, 4000))
    got = bytes(sink.audio[mark:])
    want_tail = b"".join(ulaw_to_pcm16(bytes([0x20 + q % 64]) * 160) for q in range(120, 140))
    assert got.endswith(want_tail)  # back within 10 packets, then every packet in order
    jb = s.jitter
    assert jb.late <= 10 and not jb._held


def test_a_chunk_sent_again_as_the_same_object_is_encoded_once() -> None:
    """While the bot is quiet the output sends its one silence chunk object every 20 ms: the
    RTP session encodes it once, not 50 times a second per call."""
    s, udp, _ = session()
    calls: list[int] = []
    encode = s._encode

    def counting(pcm: bytes) -> bytes:
        calls.append(len(pcm))
        return encode(pcm)

    s._encode = counting  # type: ignore[method-assign]
    silence = bytes(320)
    for _ in range(5):
        s.send_pcm(silence)
    tone = bytes(range(160)) * 2
    s.send_pcm(tone)
    s.send_pcm(bytearray(tone))  # mutable: never cached
    s.send_pcm(bytearray(tone))
    assert calls == [320, 320, 320, 320]
    payloads = [parse_rtp(p).payload for p, _ in udp.sent]  # type: ignore[union-attr]
    assert payloads[:5] == [pcm16_to_ulaw(silence)] * 5 and payloads[5] == payloads[6] == pcm16_to_ulaw(tone)


def test_the_plain_packet_fast_path_decodes_like_the_full_parse() -> None:
    """Plain in-order audio takes a shortcut past parse_rtp; marker, CSRC/extension/padding,
    reordered, looped and other-SSRC packets take the full path. The audio is the same."""
    import random

    rnd = random.Random(4)
    frames = {q: bytes(rnd.randrange(0x10, 0x70) for _ in range(160)) for q in range(1, 40)}
    plain = {q: audio(q, payload=frames[q]) for q in frames}
    fancy = bytes((0x80 | 0x20 | 0x10 | 1, 0)) + (21).to_bytes(2, "big") + (21 * 160).to_bytes(4, "big")
    fancy += (
        (7).to_bytes(4, "big") + b"\x00" * 4 + b"\xbe\xde\x00\x01" + b"\x11" * 4 + frames[21] + b"\x00\x02"
    )
    order = [*range(1, 21), 22, 21, *range(23, 40)]  # 21 arrives after 22 (reordered), with CSRC/ext/padding
    s, _, sink = session()
    s.jitter.depth = 1
    for q in order:
        s.datagram_received(fancy if q == 21 else plain[q], (PEER, 4000))
    s.datagram_received(build_rtp(0, False, 40, 0, s._ssrc_out, b"\x00" * 160), (PEER, 4000))  # looped
    assert bytes(sink.audio) == b"".join(ulaw_to_pcm16(frames[q]) for q in range(1, 40))
    assert s.packets_in == 40 and s.looped == 1 and s.jitter.lost == 0


@pytest.mark.parametrize("codec,pt", [("PCMU", 0), ("PCMA", 8)])
def test_caller_audio_handed_back_unchanged_is_reencoded_by_table_to_the_encoders_bytes(codec: str, pt: int) -> None:
    """An echo hands the decoded chunk object straight back: it goes out re-encoded from the
    packet it came in (a byte table), never through the encoder, and the bytes are exactly the
    encoder's for every one of the 256 codes (μ-law's -0 comes back +0)."""
    from flowcat.audio import alaw_to_pcm16, pcm16_to_alaw

    s = RTPSession("t", Negotiated(codec, pt, 101, (PEER, 4000), "sendrecv"), {PEER})
    udp = FakeUDP()
    s.connection_made(udp)
    encoded: list[int] = []
    encode = s._encode

    def counting(pcm: bytes) -> bytes:
        encoded.append(len(pcm))
        return encode(pcm)

    s._encode = counting  # type: ignore[method-assign]

    class Echo:
        def on_rtp_audio(self, pcm: bytes) -> None:
            s.send_pcm(pcm)

        def on_rtp_dtmf(self, key: KeypadEntry) -> None:
            pass

    s.sink = Echo()
    codes = bytes(range(256))
    s.datagram_received(build_rtp(pt, False, 1, 0, 7, codes), (PEER, 4000))
    s.datagram_received(build_rtp(pt, False, 2, 256, 7, codes[::-1]), (PEER, 4000))
    enc, dec = (pcm16_to_ulaw, ulaw_to_pcm16) if codec == "PCMU" else (pcm16_to_alaw, alaw_to_pcm16)
    out = [parse_rtp(p) for p, _ in udp.sent]
    assert [h.payload for h in out] == [enc(dec(codes)), enc(dec(codes[::-1]))]  # type: ignore[union-attr]
    assert encoded == []
    s.send_pcm(bytes(dec(codes)))  # equal audio, another object: the encoder
    assert encoded == [512] and parse_rtp(udp.sent[-1][0]).payload == enc(dec(codes))  # type: ignore[union-attr]


async def test_attached_socket_is_read_by_the_loop_and_a_refused_send_is_dropped_and_counted() -> None:
    """The call's socket is the session's own (read by a loop reader, written with sendto): a
    packet reaches the sink, the echo goes back to its source, a send the kernel refuses
    (broadcast without SO_BROADCAST) drops that packet and the session carries on; close()
    stops reading and closes the socket."""
    alloc = RTPPortAllocator("127.0.0.1", 42000, 42100)
    sock, port = alloc.bind()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    s = RTPSession("t", Negotiated("PCMU", 0, 101, ("127.0.0.1", peer.getsockname()[1]), "sendrecv"), {"127.0.0.1"})
    got = asyncio.Event()

    class Echo:
        def on_rtp_audio(self, pcm: bytes) -> None:
            s.send_pcm(pcm)
            got.set()

        def on_rtp_dtmf(self, key: KeypadEntry) -> None:
            pass

    s.sink = Echo()
    s.attach(sock)
    try:
        peer.sendto(audio(1, payload=b"\x20" * 160), ("127.0.0.1", port))
        await asyncio.wait_for(got.wait(), 5)
        data, src = await asyncio.get_running_loop().run_in_executor(None, peer.recvfrom, 2048)
        assert src == ("127.0.0.1", port) and parse_rtp(data).payload == b"\x20" * 160  # type: ignore[union-attr]
        s.remote = ("255.255.255.255", 4000)
        s.send_pcm(bytes(320))
        assert s.send_errors == 1 and s.packets_out == 2
        s.remote = ("127.0.0.1", peer.getsockname()[1])
        s.send_pcm(bytes(320))
        data, _ = await asyncio.get_running_loop().run_in_executor(None, peer.recvfrom, 2048)
        assert parse_rtp(data).payload == pcm16_to_ulaw(bytes(320))  # type: ignore[union-attr]
    finally:
        s.close()
        alloc.release(port)
        peer.close()
    assert sock.fileno() == -1 and s.transport is None


def test_reader_takes_one_datagram_per_readiness_and_drains_a_backlog_every_8th() -> None:
    """Steady RTP is one packet per socket per readiness: one recvfrom each (no EAGAIN read).
    A backlog (a busy moment) is taken whole on every 8th readiness, not one packet per turn."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        s = RTPSession("t", Negotiated("PCMU", 0, 101, peer.getsockname(), "sendrecv"), {"127.0.0.1"})
        sink = Sink()
        s.sink = sink
        for q in range(1, 31):
            peer.sendto(audio(q, payload=bytes([q]) * 160), sock.getsockname())
        for turn in range(1, 8):
            s._readable(sock.recvfrom)
            assert s.packets_in == turn
        s._readable(sock.recvfrom)
        assert s.packets_in == 30
        assert bytes(sink.audio) == b"".join(ulaw_to_pcm16(bytes([q]) * 160) for q in range(1, 31))
        s._readable(sock.recvfrom)  # a readiness with nothing there: no harm
        assert s.packets_in == 30
    finally:
        sock.close()
        peer.close()
