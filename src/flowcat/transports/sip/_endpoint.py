"""The SIP sockets: parse each message, match it to a transaction, hand new requests on.

Messages come as UDP datagrams or, when streams are enabled (:meth:`SIPEndpoint.listen_streams`),
framed from TCP/TLS connections (:mod:`._tcp`); both go through the same path below.

A datagram that does not parse is logged (rate-limited, with the peer and the
reason) and counted in ``bad_messages``; nothing else happens. A request is
matched to its server transaction by the top Via's branch and the method (an ACK
to the INVITE's, RFC 3261 §17.2.3): a retransmission gets the last response again;
a new request creates a transaction and goes to the core's ``on_request``. An ACK
of a 2xx (a new transaction by the rules) goes to ``on_ack``. Responses go to the
client transaction of their branch and CSeq method; stray ones are dropped.
A request whose top Via asks for ``rport`` gets ``received``/``rport`` filled in
(RFC 3581), and every response goes back to the source address of its request, on the
transport it came on: over a stream, on its connection (a new one to the Via's
``sent-by`` if it closed meanwhile, RFC 3261 §18.2.2), without the UDP retransmissions.

A request this side sends (:meth:`SIPEndpoint.request`, :meth:`SIPEndpoint.invite`) picks
its transport (RFC 3261 §18.1.1): the next hop URI's (top Route, else Request-URI)
``transport`` parameter or ``sips:`` scheme; else a live connection to the destination;
else TCP when the message is over :data:`UDP_MAX` bytes; else UDP. The top Via's
transport (and port, for TLS) is rewritten to match.

A UDP destination that cannot be one (a Contact or Route host with a NUL, a space or a
non-ASCII character, a port outside 1-65535: anything a peer may write) is dropped,
counted in ``bad_destinations`` and logged rate-limited: handed to the socket it would
raise inside asyncio's ``sendto``, which then *closes the transport* — one hostile INVITE
would leave the server deaf (found by the live SIP fuzz test).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import Any, Protocol

from ..._ratelimit import RateLimitedLog
from ...errors import SIPParseError
from ._headers import parse_name_addr, parse_uri, parse_via
from ._message import MAX_MESSAGE_BYTES, SIPMessage, parse_message
from ._rtp import sendable
from ._tcp import ReliableSend, SIPConnection, StreamTransports
from ._transaction import ClientTransaction, InviteClientTransaction, Send, ServerTransaction, Timers

__all__ = ["UDP_MAX", "SIPEndpoint"]

UDP_MAX = 1300
"""A request larger than this goes over TCP (RFC 3261 §18.1.1: path MTU 1500 less 200)."""
_VIA_HEAD = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*[A-Za-z]+\s+([^;,\s]+)")

logger = logging.getLogger("flowcat.transports.sip")
_BAD = RateLimitedLog(logger)


class Core(Protocol):
    def on_request(self, txn: ServerTransaction) -> None: ...

    def on_ack(self, ack: SIPMessage, addr: tuple[str, int]) -> None: ...


class SIPEndpoint(asyncio.DatagramProtocol):
    """The UDP socket of a :class:`~flowcat.transports.sip.SIPServer` (see the module docstring)."""

    def __init__(self, core: Core, timers: Timers) -> None:
        self.core: Core | None = core
        self.timers = timers
        self.transport: asyncio.DatagramTransport | None = None
        self.server_txns: dict[tuple[str, str], ServerTransaction] = {}
        self.client_txns: dict[tuple[str, str], ClientTransaction | InviteClientTransaction] = {}
        self.streams: StreamTransports | None = None
        self.bad_messages = 0
        self.bad_destinations = 0
        self.messages_in = 0
        self.messages_out = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    async def listen_streams(
        self,
        host: str,
        port: int,
        *,
        tcp: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 0,
        tls_client: ssl.SSLContext | None = None,
        idle_timeout: float = 300.0,
    ) -> StreamTransports:
        """Accept SIP over TCP on ``host:port`` (unless ``tcp`` is False) and over TLS on
        ``tls_port`` with ``tls``, and send over streams when a request needs one."""
        streams = StreamTransports(
            self._stream_message,
            max_size=MAX_MESSAGE_BYTES,
            tls_client=tls_client,
            idle_timeout=idle_timeout,
            on_failed=self._stream_failed,
        )
        try:
            if tcp:
                await streams.listen("TCP", host, port)
            if tls is not None:
                await streams.listen("TLS", host, tls_port, tls)
        except OSError:
            streams.close()
            raise
        self.streams = streams
        return streams

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one message outside a transaction (an ACK of a 2xx): on a live connection
        to ``addr`` if there is one, else over UDP."""
        streams = self.streams
        conn = streams.find(addr) if streams is not None else None
        if conn is None:
            self.send_udp(data, addr)
            return
        if not data.startswith(b"SIP/"):
            data = data.replace(b"SIP/2.0/UDP", b"SIP/2.0/" + conn.proto.encode(), 1)
        conn.write(data)
        self.messages_out += 1

    def send_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        tr = self.transport
        if tr is None:
            return
        if not sendable(addr):
            self.bad_destinations += 1
            _BAD(
                self.bad_destinations,
                "sip: not sent to unusable address %r (#%d)",
                addr,
                self.bad_destinations,
            )
            return
        tr.sendto(data, addr)
        self.messages_out += 1

    def _send_stream(self, proto: str, data: bytes, addr: tuple[str, int]) -> None:
        streams = self.streams
        if streams is not None:
            streams.send(proto, data, addr)
            self.messages_out += 1

    def _stream_failed(self, proto: str, addr: tuple[str, int]) -> None:
        """A connection could not be opened: a transport error ends the client transactions
        to ``addr`` at once (RFC 3261 §8.1.3.1, §17.1.4), not after Timer B/F."""
        for txn in list(self.client_txns.values()):
            if txn.addr == addr and not txn.terminated:
                txn.terminate()

    def _sender(self, msg: SIPMessage, addr: tuple[str, int]) -> Send:
        """The ``send`` of a request's client transaction (see the module docstring)."""
        streams = self.streams
        if streams is None:
            return self.send_udp
        proto = _next_hop_transport(msg)
        if proto is None:
            conn = streams.find(addr)
            if conn is not None:
                proto = conn.proto
            elif len(msg.encode()) > UDP_MAX:
                proto = "TCP"
        if proto is None or proto == "UDP":
            return self.send_udp
        _set_via_transport(msg, proto, streams.ports.get(proto))
        own = self._contact()
        if own and msg.get("Contact") == own:
            msg.set("Contact", self._stream_contact(own, proto))

        def send(data: bytes, to: tuple[str, int]) -> None:
            self._send_stream(proto, data, to)

        return ReliableSend(send)

    def close(self) -> None:
        for txn in list(self.server_txns.values()):
            txn.terminate()
        for ctxn in list(self.client_txns.values()):
            ctxn.terminate()
        if self.transport is not None:
            self.transport.close()
        if self.streams is not None:
            self.streams.close()
            self.streams = None
        self.core = None  # the server holds this endpoint: no cycle once closed

    # ----------------------------------------------------------------- receive

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        self._received(data, (str(addr[0]), int(addr[1])), None)

    def _stream_message(self, data: bytes, conn: SIPConnection) -> None:
        if conn.peer is not None:
            self._received(data, conn.peer, conn)

    def _received(self, data: bytes, peer: tuple[str, int], conn: SIPConnection | None) -> None:
        self.messages_in += 1
        try:
            msg = parse_message(data)
            if msg.is_request:
                self._request(msg, peer, conn)
            else:
                self._response(msg)
        except SIPParseError as exc:
            self.bad_messages += 1
            n = self.bad_messages
            _BAD(
                n,
                "sip: dropped a malformed message #%d from %s:%d (%s): %s (%r)",
                n,
                peer[0],
                peer[1],
                conn.proto if conn is not None else "UDP",
                exc,
                data[:80],
            )

    def _reply_sender(self, conn: SIPConnection | None, sent_by: tuple[str, int]) -> Send:
        """Where a server transaction's responses go: UDP, or the request's connection
        (a new one to the Via's ``sent-by`` once it closed, RFC 3261 §18.2.2)."""
        if conn is None:
            return self.send_udp

        own = self._contact()
        old = f"\r\nContact: {own}\r\n".encode() if own else b""
        new = f"\r\nContact: {self._stream_contact(own, conn.proto)}\r\n".encode() if own else b""

        def send(data: bytes, addr: tuple[str, int]) -> None:
            if old and data.startswith(b"SIP/"):
                data = data.replace(old, new, 1)
            if not conn.closed:
                conn.write(data)
                self.messages_out += 1
            else:
                self._send_stream(conn.proto, data, sent_by)

        return ReliableSend(send)

    def _contact(self) -> str | None:
        contact = getattr(self.core, "contact", None)
        return contact if isinstance(contact, str) else None

    def _stream_contact(self, contact: str, proto: str) -> str:
        """This side's Contact for a dialog on a ``proto`` stream: the peer's in-dialog
        requests then come back over that transport (to the TLS port for TLS)."""
        streams = self.streams
        port = streams.ports.get(proto) if streams is not None else None
        uri = contact.strip("<>")
        if port is not None and proto == "TLS":
            uri = f"{uri.rsplit(':', 1)[0]}:{port}"
        return f"<{uri};transport={proto.lower()}>"

    def _request(self, msg: SIPMessage, peer: tuple[str, int], conn: SIPConnection | None = None) -> None:
        core = self.core
        if core is None:
            return
        via = parse_via(msg.get("Via") or "")
        method = msg.method or ""
        key = (via.branch, "INVITE" if method == "ACK" else method)
        txn = self.server_txns.get(key) if via.branch else None
        if method == "ACK":
            if txn is not None and txn.final is not None and txn.final >= 300:
                txn.ack()
            else:
                core.on_ack(msg, peer)
            return
        if txn is not None:
            txn.retransmitted()
            return
        sent_by = (
            via.params.get("received") or via.host,
            via.port or (5061 if via.transport == "TLS" else 5060),
        )
        if conn is not None and self.streams is not None:
            self.streams.alias(conn, sent_by)
        if "rport" in via.params:
            _fill_rport(msg, peer)
        txn = ServerTransaction(msg, peer, self._reply_sender(conn, sent_by), self.timers, self._server_done)
        if via.branch:
            self.server_txns[key] = txn
        core.on_request(txn)

    def _response(self, msg: SIPMessage) -> None:
        via = parse_via(msg.get("Via") or "")
        txn = self.client_txns.get((via.branch, msg.cseq[1]))
        if txn is None:
            logger.debug("sip: stray response %s %s", msg.status, msg.cseq)
            return
        txn.on_response(msg)

    # ----------------------------------------------------------------- send

    def request(self, msg: SIPMessage, addr: tuple[str, int]) -> ClientTransaction:
        """Send a non-INVITE request in a client transaction."""
        send = self._sender(msg, addr)
        via = parse_via(msg.get("Via") or "")
        key = (via.branch, msg.method or "")
        txn = ClientTransaction(msg, addr, send, self.timers, self._client_done)
        self.client_txns[key] = txn
        return txn

    def invite(self, msg: SIPMessage, addr: tuple[str, int]) -> InviteClientTransaction:
        """Send an INVITE in a client transaction."""
        send = self._sender(msg, addr)
        via = parse_via(msg.get("Via") or "")
        txn = InviteClientTransaction(msg, addr, send, self.timers, self._client_done)
        self.client_txns[(via.branch, "INVITE")] = txn
        return txn

    def find_invite(self, branch: str) -> ServerTransaction | None:
        """The INVITE server transaction of ``branch`` (what a CANCEL cancels)."""
        return self.server_txns.get((branch, "INVITE"))

    def _server_done(self, txn: ServerTransaction) -> None:
        try:
            branch = parse_via(txn.request.get("Via") or "").branch
        except SIPParseError:
            return
        key = (branch, txn.method)
        if self.server_txns.get(key) is txn:
            del self.server_txns[key]

    def _client_done(self, txn: ClientTransaction | InviteClientTransaction) -> None:
        for key, value in list(self.client_txns.items()):
            if value is txn:
                del self.client_txns[key]


def _fill_rport(msg: SIPMessage, peer: tuple[str, int]) -> None:
    for i, (name, value) in enumerate(msg.headers):
        if name == "Via":
            first, comma, rest = value.partition(",")
            parts = [
                p
                for p in first.split(";")
                if p.strip().lower() not in ("rport",) and not p.strip().lower().startswith("received=")
            ]
            first = ";".join(parts) + f";received={peer[0]};rport={peer[1]}"
            msg.headers[i] = (name, first + (comma + rest if comma else ""))
            return


def _next_hop_transport(msg: SIPMessage) -> str | None:
    """``TCP``/``TLS``/``UDP`` as the next hop's URI asks (top Route, else Request-URI), or None."""
    try:
        routes = msg.get_all("Route")
        uri = parse_uri(parse_name_addr(routes[0]).uri if routes else msg.uri or "")
    except SIPParseError:
        return None
    if uri.scheme == "sips":
        return "TLS"
    proto = uri.params.get("transport", "").upper()
    return proto if proto in ("UDP", "TCP", "TLS") else None


def _set_via_transport(msg: SIPMessage, proto: str, port: int | None) -> None:
    """Rewrite the top Via's transport (and, when given, its sent-by port) to ``proto``."""
    for i, (name, value) in enumerate(msg.headers):
        if name == "Via":
            m = _VIA_HEAD.match(value)
            if m is None:
                return
            sent_by = m.group(1)
            if port is not None:
                host = sent_by.rsplit(":", 1)[0] if not sent_by.endswith("]") else sent_by
                sent_by = f"{host}:{port}"
            msg.headers[i] = (name, f"SIP/2.0/{proto} {sent_by}{value[m.end() :]}")
            return
