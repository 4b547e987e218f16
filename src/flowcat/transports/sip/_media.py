"""One call's RTP socket: receive (latch, reorder, decode, DTMF) and send (encode, packetize).

**Receiving.** Packets are accepted only from the addresses the call expects (the
SDP connection address and the SIP peer's address); others are counted in
``foreign`` and dropped, so media never comes from elsewhere. **Symmetric RTP:**
bot audio is first sent where the SDP asked; the first packet *of the negotiated
audio codec* from an expected address moves the destination to that packet's
source, **once** (``latched``). Later packets from other ports — sipp plays its
pcap DTMF from another port, even port 0 — are still decoded, but never move the
destination again. Audio of the latched SSRC goes through a
:class:`~flowcat.transports.sip._jitter.JitterBuffer` and is decoded from G.711 to
PCM16 at 8 kHz; optional in-band DTMF detection runs on the reordered audio.
telephone-event packets (RFC 4733) at the negotiated payload type go to a
:class:`~flowcat.audio.dtmf.TelephoneEventDecoder`, which reports a digit on the
first packet of a new event (new SSRC or timestamp), whether or not end packets
follow. A changed SSRC resets the decoder and the jitter buffer. A packet with this
side's own SSRC (reflected back: a loop, or an echoing peer) is counted in ``looped``
and dropped (RFC 3550 §8.2).

**Sending.** :meth:`RTPSession.send_pcm` encodes one chunk of PCM16 (the output's
20 ms chunk, paced by the shared audio clock) and sends it as one packet; sequence
number and timestamp advance per packet, the SSRC is random per call. While the
call is on hold (the answer is ``recvonly``/``inactive``) nothing is sent.

**DTMF out** (RFC 4733): :meth:`RTPSession.send_dtmf` queues a key press as
telephone-event packets at the payload type the peer negotiated (whatever it is:
101, 120, …): one packet per 20 ms tick *in place of* the audio packet of that tick,
so the output's shared clock paces them and no timer is made; the marker on the
first, a growing duration, three end packets (E bit), all with the timestamp of the
event's start. Sequence numbers run on with the audio's; the audio timestamp keeps
advancing during the event. Presses queue behind each other with 40 ms of audio
between them. Without a negotiated telephone-event the press is dropped (logged).

**The socket** (:meth:`RTPSession.attach`): the call's UDP socket is read by a reader
callback of the event loop, one datagram per readiness (the loop calls again while
more wait; every 8th readiness takes all that wait, so a backlog left by a busy moment
goes at once), and written with the socket's own ``sendto`` — about one system call per
packet each way, where a datagram transport reads until ``EAGAIN`` (two per packet at
one packet per socket per 20 ms). A send the kernel refuses (a full buffer, an unreachable
network) drops that packet (counted in ``send_errors``, rate-limited log): late RTP is
worthless, so nothing is buffered. :meth:`RTPSession.connection_made` still takes any
object with ``sendto``/``close`` (a datagram transport, a test double).

**Passed-through audio.** Caller audio the pipeline hands back unchanged (an echo, a
loopback test: the very ``bytes`` object decoded last) is re-encoded from the packet it
came in — a byte-for-byte table, the same bytes the encoder gives for it — instead of
through the encoder.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..._ratelimit import RateLimitedLog
from ...audio import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from ...audio.dtmf import (
    GoertzelDTMFDetector,
    TelephoneEventDecoder,
    TelephoneEventEncoder,
    TelephoneEventPacket,
)
from ...frames import KeypadEntry
from ._jitter import JitterBuffer
from ._rtp import build_rtp, parse_rtp, sendable
from ._sdp import Negotiated

__all__ = ["MediaSink", "RTPSession"]

logger = logging.getLogger("flowcat.transports.sip.rtp")
_SEQ_TS_SSRC = struct.Struct("!HII")
_FIXED = struct.Struct("!BBHII")
_BAD = RateLimitedLog(logger)
_MAX_DATAGRAM = 65536
_DRAIN = 64  # datagrams taken at most when a socket is drained (every 8th readiness)

_DECODE: dict[str, Callable[[bytes], bytes]] = {"PCMU": ulaw_to_pcm16, "PCMA": alaw_to_pcm16}
_ENCODE: dict[str, Callable[[bytes], bytes]] = {"PCMU": pcm16_to_ulaw, "PCMA": pcm16_to_alaw}
# encode(decode(payload)) byte by byte (G.711 is a per-sample map): μ-law's -0 comes back +0.
_ROUND_TRIP = {codec: _ENCODE[codec](dec(bytes(range(256)))) for codec, dec in _DECODE.items()}


class MediaSink(Protocol):
    def on_rtp_audio(self, pcm: bytes) -> None: ...

    def on_rtp_dtmf(self, key: KeypadEntry) -> None: ...


class RTPSession(asyncio.DatagramProtocol):
    """The RTP side of one call (see the module docstring).

    Args:
        name: For logs.
        negotiated: The SDP outcome (codec, payload types, remote address, direction).
        expected_hosts: Addresses media may come from (SDP address, SIP peer).
        inband_dtmf: Also detect DTMF tones in the received audio.
        jitter_max_packets: Largest reorder depth, packets.
    """

    def __init__(
        self,
        name: str,
        negotiated: Negotiated,
        expected_hosts: set[str],
        *,
        inband_dtmf: bool = False,
        jitter_max_packets: int = 5,
    ) -> None:
        self.name = name
        self.transport: Any = None
        """What packets are sent with (``sendto``/``close``): the socket once attached."""
        self._sock: socket.socket | None = None
        self._reader: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.sink: MediaSink | None = None
        self.expected_hosts = set(expected_hosts)
        self.jitter: JitterBuffer[bytes] = JitterBuffer(jitter_max_packets)
        self._inband = GoertzelDTMFDetector(8000) if inband_dtmf else None
        self._ssrc_out = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._first = True
        self._audio_ssrc: int | None = None
        self._event_ssrc: int | None = None
        self.latched = False
        self.update(negotiated)
        self.packets_in = 0
        self.packets_out = 0
        self.foreign = 0
        """Packets from an unexpected address (dropped)."""
        self.bad_packets = 0
        """Datagrams that were not RTP (dropped)."""
        self.looped = 0
        """Packets carrying this side's own SSRC (a loop or a reflecting peer; dropped)."""
        self.other_payload = 0
        """RTP packets of a payload type not negotiated (ignored)."""
        self.digits: list[str] = []
        self._dtmf_out: deque[tuple[bool, TelephoneEventPacket | None]] = deque()
        self._event_ts = 0
        self._dtmf_dropped = 0
        self.dtmf_packets_out = 0
        """RFC 4733 packets sent."""
        self.send_errors = 0
        """Packets the kernel refused to send (dropped)."""
        self._reads = 0

    def update(self, negotiated: Negotiated) -> None:
        """Apply a (re-)negotiation: codec, payload types, destination, direction."""
        self.negotiated = negotiated
        self.remote = negotiated.remote
        self.expected_hosts.add(negotiated.remote[0])
        self._pt = negotiated.payload_type
        self._plain = bytes((0x80, negotiated.payload_type))  # v2, no P/X/CC, no marker: the fast path
        self._decode = _DECODE[negotiated.codec]
        self._encode = _ENCODE[negotiated.codec]
        self._last_pcm: bytes | None = None  # the last chunk sent and its encoding (a codec change resets)
        self._last_payload = b""
        self._rx_pcm: bytes | None = None  # the last chunk decoded, and the payload it came from
        self._rx_payload = b""
        self._round = _ROUND_TRIP[negotiated.codec]
        te = negotiated.telephone_event_pt
        self._te_pt = -1 if te is None else te
        self._events = TelephoneEventDecoder(te) if te is not None else None
        self.sending = negotiated.sending
        self.latched = False
        # An SDP address a socket cannot take (garbage, a port past 65535) would make asyncio close
        # this socket on the first send: send nothing until a packet gives a source to latch to.
        self._remote_ok = sendable(self.remote)

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def attach(self, sock: socket.socket) -> None:
        """Use ``sock`` (bound, non-blocking) as the call's RTP socket: read by a reader
        callback of the running loop, written with ``sock.sendto`` (see the module docstring)."""
        loop = asyncio.get_running_loop()
        self._sock = sock
        self.transport = sock
        loop.add_reader(sock.fileno(), self._readable, sock.recvfrom)
        self._reader = loop

    def close(self) -> None:
        sock, loop = self._sock, self._reader
        if sock is not None:
            self._sock = self._reader = None
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.sink = None

    def _readable(self, recvfrom: Callable[[int], tuple[bytes, Any]]) -> None:
        n = self._reads = self._reads + 1
        # One datagram per readiness (the loop calls again while more wait); every 8th time, all
        # that wait (bounded): a backlog left by a busy moment is taken at once, not one per turn.
        for _ in range(_DRAIN if n & 7 == 0 else 1):
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except OSError:  # nothing after all (EAGAIN), or an ICMP error queued on the socket
                return
            # datagram_received's common packet (see there), one call sooner: every packet of every call.
            if data[:2] == self._plain and self.latched and addr[0] in self.expected_hosts and len(data) > 12:
                seq, _, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
                if (
                    ssrc == self._audio_ssrc
                    and ssrc != self._ssrc_out
                    and self._inband is None
                    and self.jitter.in_order(seq)
                ):
                    self.packets_in += 1
                    payload = data[12:]
                    self._rx_pcm = pcm = self._decode(payload)
                    self._rx_payload = payload
                    sink = self.sink
                    if sink is not None:
                        sink.on_rtp_audio(pcm)
                    continue
            self.datagram_received(data, addr)

    def _send(self, tr: Any, data: bytes) -> None:
        try:
            tr.sendto(data, self.remote)
        except OSError as exc:  # a full send buffer, no route: this packet is lost
            self.send_errors += 1
            _BAD(self.send_errors, "%s: RTP send failed: %s (#%d)", self.name, exc, self.send_errors)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if addr[0] not in self.expected_hosts:
            self.foreign += 1
            _BAD(self.foreign, "%s: dropped RTP from unexpected %s (#%d)", self.name, addr[0], self.foreign)
            return
        # The common packet: audio of the latched stream, a plain 12-byte header (no CSRC,
        # extension, padding or marker), next in sequence. Same outcome as below, without
        # building an RTPHeader (a tenth of the receive path).
        if data[:2] == self._plain and self.latched and len(data) > 12:
            seq, _, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
            if ssrc == self._audio_ssrc and ssrc != self._ssrc_out and self.jitter.in_order(seq):
                self.packets_in += 1
                self._audio(data[12:])
                return
        pkt = parse_rtp(data)
        if pkt is None:
            self.bad_packets += 1
            _BAD(
                self.bad_packets,
                "%s: dropped a non-RTP datagram of %d bytes (#%d)",
                self.name,
                len(data),
                self.bad_packets,
            )
            return
        self.packets_in += 1
        if pkt.ssrc == self._ssrc_out:
            self.looped += 1  # our own packet reflected back (RFC 3550 §8.2): never decode it
            return
        pt = pkt.payload_type
        if pt == self._pt:
            if not self.latched and addr[1]:
                self.latched = True
                if (addr[0], addr[1]) != self.remote:
                    logger.info(
                        "%s: symmetric RTP: sending to %s:%d (SDP said %s:%d)",
                        self.name,
                        addr[0],
                        addr[1],
                        *self.remote,
                    )
                self.remote = (addr[0], addr[1])
                self._remote_ok = True
            if pkt.ssrc != self._audio_ssrc:
                self._audio_ssrc = pkt.ssrc
                self.jitter.reset()
            jb = self.jitter
            if jb.in_order(pkt.sequence):  # the common case: no list, no buffering
                self._audio(pkt.payload)
            else:
                for payload in jb.push(pkt.sequence, pkt.payload):
                    self._audio(payload)
        elif pt == self._te_pt:
            events = self._events
            assert events is not None  # noqa: S101 - invariant (type narrowing), not input validation
            if pkt.ssrc != self._event_ssrc:
                self._event_ssrc = pkt.ssrc
                events.reset()
            pressed = events.feed(pt, pkt.marker, pkt.timestamp, pkt.sequence, pkt.payload)
            if pressed is not None:
                self._digit(pressed)
        else:
            self.other_payload += 1

    def _audio(self, payload: bytes) -> None:
        pcm = self._decode(payload)
        self._rx_pcm = pcm
        self._rx_payload = payload
        sink = self.sink
        if sink is not None:
            sink.on_rtp_audio(pcm)
        det = self._inband
        if det is not None:
            for key in det.process(pcm):
                self._digit(key)

    def _digit(self, key: KeypadEntry) -> None:
        self.digits.append(key.value)
        sink = self.sink
        if sink is not None:
            sink.on_rtp_dtmf(key)

    # ---------------------------------------------------------------- sending

    def send_dtmf(self, key: KeypadEntry, duration_ms: int = 100) -> bool:
        """Queue one key press as RFC 4733 events (see the module docstring); False when the
        peer negotiated no telephone-event (nothing is sent)."""
        te = self.negotiated.telephone_event_pt
        if te is None:
            self._dtmf_dropped += 1
            _BAD(
                self._dtmf_dropped,
                "%s: DTMF %s not sent: no telephone-event negotiated",
                self.name,
                key.value,
            )
            return False
        packets = TelephoneEventEncoder(te).encode(key, duration_ms)
        q = self._dtmf_out
        if q:
            q.extend(((False, None), (False, None)))  # 40 ms of audio between two presses
        q.extend((i == 0, p) for i, p in enumerate(packets))
        return True

    def _send_event(self, tr: Any, pcm: bytes) -> None:
        first, pkt = self._dtmf_out.popleft()
        if pkt is None:  # the gap between two presses: audio
            payload = self._encode(pcm)
            data = build_rtp(self._pt, False, self._seq, self._ts, self._ssrc_out, payload)
        else:
            if first:
                self._event_ts = self._ts
            ts = (self._event_ts + pkt.timestamp_offset) & 0xFFFFFFFF
            data = build_rtp(self.negotiated.telephone_event_pt or 0, pkt.marker, self._seq, ts,
                             self._ssrc_out, pkt.payload)  # fmt: skip
            self.dtmf_packets_out += 1
        self._send(tr, data)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + len(pcm) // 2) & 0xFFFFFFFF
        self.packets_out += 1

    def send_pcm(self, pcm: bytes) -> None:
        """Send one chunk of 8 kHz PCM16 as one packet (nothing while on hold); a queued
        DTMF event packet takes the chunk's place."""
        tr = self.transport
        if tr is None or not self.sending or not self._remote_ok:
            return
        if self._dtmf_out:
            self._send_event(tr, pcm)
            return
        if pcm is self._last_pcm:  # the output's silence chunk is one object: encode it once
            payload = self._last_payload
        elif pcm is self._rx_pcm:  # the caller's audio handed back unchanged (immutable bytes)
            payload = self._rx_payload.translate(self._round)
        else:
            payload = self._encode(pcm)
            if type(pcm) is bytes:  # immutable: the same object is the same audio
                self._last_pcm, self._last_payload = pcm, payload
        seq = self._seq
        data = _FIXED.pack(0x80, 0x80 | self._pt if self._first else self._pt, seq, self._ts, self._ssrc_out) + payload
        try:
            tr.sendto(data, self.remote)
        except OSError as exc:  # a full send buffer, no route: this packet is lost
            self.send_errors += 1
            _BAD(self.send_errors, "%s: RTP send failed: %s (#%d)", self.name, exc, self.send_errors)
        self._first = False
        self._seq = (seq + 1) & 0xFFFF
        self._ts = (self._ts + len(payload)) & 0xFFFFFFFF
        self.packets_out += 1
