"""The SIP UDP socket: parse each datagram, match it to a transaction, hand new requests on.

A datagram that does not parse is logged (rate-limited, with the peer and the
reason) and counted in ``bad_messages``; nothing else happens. A request is
matched to its server transaction by the top Via's branch and the method (an ACK
to the INVITE's, RFC 3261 §17.2.3): a retransmission gets the last response again;
a new request creates a transaction and goes to the core's ``on_request``. An ACK
of a 2xx (a new transaction by the rules) goes to ``on_ack``. Responses go to the
client transaction of their branch and CSeq method; stray ones are dropped.
A request whose top Via asks for ``rport`` gets ``received``/``rport`` filled in
(RFC 3581), and every response goes back to the source address of its request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ..._ratelimit import RateLimitedLog
from ...errors import SIPParseError
from ._headers import parse_via
from ._message import SIPMessage, parse_message
from ._transaction import ClientTransaction, InviteClientTransaction, ServerTransaction, Timers

__all__ = ["SIPEndpoint"]

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
        self.bad_messages = 0
        self.messages_in = 0
        self.messages_out = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        tr = self.transport
        if tr is not None:
            tr.sendto(data, addr)
            self.messages_out += 1

    def close(self) -> None:
        for txn in list(self.server_txns.values()):
            txn.terminate()
        for ctxn in list(self.client_txns.values()):
            ctxn.terminate()
        if self.transport is not None:
            self.transport.close()
        self.core = None  # the server holds this endpoint: no cycle once closed

    # ----------------------------------------------------------------- receive

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        self.messages_in += 1
        peer = (str(addr[0]), int(addr[1]))
        try:
            msg = parse_message(data)
            if msg.is_request:
                self._request(msg, peer)
            else:
                self._response(msg)
        except SIPParseError as exc:
            self.bad_messages += 1
            n = self.bad_messages
            _BAD(
                n,
                "sip: dropped a malformed message #%d from %s:%d: %s (%r)",
                n,
                peer[0],
                peer[1],
                exc,
                data[:80],
            )

    def _request(self, msg: SIPMessage, peer: tuple[str, int]) -> None:
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
        if "rport" in via.params:
            _fill_rport(msg, peer)
        txn = ServerTransaction(msg, peer, self.send, self.timers, self._server_done)
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
        via = parse_via(msg.get("Via") or "")
        key = (via.branch, msg.method or "")
        txn = ClientTransaction(msg, addr, self.send, self.timers, self._client_done)
        self.client_txns[key] = txn
        return txn

    def invite(self, msg: SIPMessage, addr: tuple[str, int]) -> InviteClientTransaction:
        """Send an INVITE in a client transaction."""
        via = parse_via(msg.get("Via") or "")
        txn = InviteClientTransaction(msg, addr, self.send, self.timers, self._client_done)
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
