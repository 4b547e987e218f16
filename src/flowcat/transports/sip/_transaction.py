"""RFC 3261 §17 transactions over UDP, with their timers.

* :class:`ServerTransaction` — one received request. A retransmitted request is
  answered with the last response again. INVITE: a final response is retransmitted
  every T1, doubling up to T2, until the ACK (Timer G; for a 2xx this is the UAS
  core's duty in RFC 3261 §13.3.1.4, done here too), and given up after 64·T1
  (Timer H), when ``on_timeout`` runs (a 2xx never ACKed: the call is hung up).
  After the ACK of a non-2xx the transaction absorbs ACK retransmissions for T4
  (Timer I); after the ACK of a 2xx it absorbs retransmitted INVITEs for 64·T1
  (RFC 6026 Timer L). Non-INVITE: after the final response it stays 64·T1 (Timer J) to
  answer retransmissions.
* :class:`ClientTransaction` — one sent non-INVITE request (BYE, OPTIONS):
  retransmitted every T1, doubling up to T2 (Timer E; T2 once a provisional
  response came), until a final response or 64·T1 (Timer F: ``result`` is None).
* :class:`InviteClientTransaction` — one sent INVITE: retransmitted every T1, doubling
  (Timer A), until any response; no final response within 64·T1 (Timer B): ``result``
  is None. Provisional responses go to ``on_provisional``. A non-2xx final response is
  ACKed by the transaction (same branch, RFC 3261 §17.1.1.3), and its retransmissions
  again, for 64·T1 (Timer D). A 2xx is the core's to ACK (a new transaction): the
  transaction stays 64·T1 (RFC 6026 Timer M) and hands every retransmitted 2xx to
  ``on_2xx_again`` so that the core repeats its ACK.

Timers are ``loop.call_later`` handles per transaction, never per media packet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._message import SIPMessage

__all__ = ["ClientTransaction", "InviteClientTransaction", "ServerTransaction", "Timers"]

Send = Callable[[bytes, tuple[str, int]], None]


@dataclass
class Timers:
    """RFC 3261 timer values, seconds (tests shorten them)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class ServerTransaction:
    """A received request's transaction (see the module docstring)."""

    def __init__(
        self,
        request: SIPMessage,
        addr: tuple[str, int],
        send: Send,
        timers: Timers,
        on_terminated: Callable[[ServerTransaction], None],
    ) -> None:
        self.request = request
        self.addr = addr
        self.method = request.method or ""
        self._send = send
        self._timers = timers
        self._on_terminated = on_terminated
        self.on_timeout: Callable[[], None] | None = None
        self.last: bytes | None = None
        self.final: int | None = None
        self.acked = False
        self.terminated = False
        self.retransmissions = 0
        self._interval = timers.t1
        self._retx: asyncio.TimerHandle | None = None
        self._end: asyncio.TimerHandle | None = None

    def respond(self, response: SIPMessage) -> None:
        """Send ``response`` (provisional or final); a second final response is ignored."""
        if self.terminated or self.final is not None:
            return
        data = response.encode()
        self.last = data
        self._send(data, self.addr)
        status = response.status or 0
        if status < 200:
            return
        self.final = status
        loop = asyncio.get_running_loop()
        t = self._timers
        if self.method == "INVITE":
            self._retx = loop.call_later(self._interval, self._retransmit)
            self._end = loop.call_later(64 * t.t1, self._timed_out)
        else:
            self._end = loop.call_later(64 * t.t1, self.terminate)

    def retransmitted(self) -> None:
        """The request arrived again: repeat the last response (if any); absorbed once the
        final response was acknowledged."""
        if self.last is not None and not self.terminated and not self.acked:
            self._send(self.last, self.addr)

    def ack(self) -> None:
        """The ACK of the final response arrived: stop retransmitting."""
        if self.acked or self.terminated:
            return
        self.acked = True
        self._cancel_timers()
        t = self._timers
        # Timer I (T4) absorbs ACK retransmissions of a non-2xx; RFC 6026 Timer L (64·T1)
        # keeps an accepted INVITE's transaction so a retransmitted INVITE is absorbed.
        wait = t.t4 if self.final is not None and self.final >= 300 else 64 * t.t1
        self._end = asyncio.get_running_loop().call_later(wait, self.terminate)

    def _retransmit(self) -> None:
        if self.terminated or self.acked or self.last is None:
            return
        self.retransmissions += 1
        self._send(self.last, self.addr)
        self._interval = min(2 * self._interval, self._timers.t2)
        self._retx = asyncio.get_running_loop().call_later(self._interval, self._retransmit)

    def _timed_out(self) -> None:
        cb = self.on_timeout
        self.terminate()
        if cb is not None:
            cb()

    def _cancel_timers(self) -> None:
        for h in (self._retx, self._end):
            if h is not None:
                h.cancel()
        self._retx = self._end = None

    def terminate(self) -> None:
        if self.terminated:
            return
        self.terminated = True
        self._cancel_timers()
        self.on_timeout = None
        self._on_terminated(self)


class ClientTransaction:
    """A sent non-INVITE request's transaction (see the module docstring)."""

    def __init__(
        self,
        request: SIPMessage,
        addr: tuple[str, int],
        send: Send,
        timers: Timers,
        on_terminated: Callable[[ClientTransaction], None],
    ) -> None:
        self.request = request
        self.addr = addr
        self._data = request.encode()
        self._send = send
        self._timers = timers
        self._on_terminated = on_terminated
        loop = asyncio.get_running_loop()
        self.result: asyncio.Future[SIPMessage | None] = loop.create_future()
        self.retransmissions = 0
        self.terminated = False
        self._interval = timers.t1
        self._send(self._data, addr)
        self._retx: asyncio.TimerHandle | None = loop.call_later(self._interval, self._retransmit)
        self._end: asyncio.TimerHandle | None = loop.call_later(64 * timers.t1, self._timed_out)

    def _retransmit(self) -> None:
        if self.result.done():
            return
        self.retransmissions += 1
        self._send(self._data, self.addr)
        self._interval = min(2 * self._interval, self._timers.t2)
        self._retx = asyncio.get_running_loop().call_later(self._interval, self._retransmit)

    def on_response(self, response: SIPMessage) -> None:
        if self.result.done():
            return
        if (response.status or 0) < 200:
            self._interval = self._timers.t2
            return
        self.result.set_result(response)
        self._stop()
        self._end = asyncio.get_running_loop().call_later(self._timers.t4, self.terminate)

    def _timed_out(self) -> None:
        if not self.result.done():
            self.result.set_result(None)
        self.terminate()

    def _stop(self) -> None:
        for h in (self._retx, self._end):
            if h is not None:
                h.cancel()
        self._retx = self._end = None

    def terminate(self) -> None:
        if self.terminated:
            return
        self.terminated = True
        self._stop()
        if not self.result.done():
            self.result.set_result(None)
        self._on_terminated(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} to {self.addr}>"


class InviteClientTransaction(ClientTransaction):
    """A sent INVITE's transaction (see the module docstring)."""

    def __init__(
        self,
        request: SIPMessage,
        addr: tuple[str, int],
        send: Send,
        timers: Timers,
        on_terminated: Callable[[InviteClientTransaction], None],
    ) -> None:
        self.provisional: SIPMessage | None = None
        self.on_provisional: Callable[[SIPMessage], None] | None = None
        self.on_2xx_again: Callable[[SIPMessage], None] | None = None
        self._ack: bytes | None = None
        super().__init__(request, addr, send, timers, on_terminated)  # type: ignore[arg-type]

    def _retransmit(self) -> None:
        if self.result.done() or self.provisional is not None:
            return
        self.retransmissions += 1
        self._send(self._data, self.addr)
        self._interval *= 2  # Timer A doubles without the T2 cap (RFC 3261 §17.1.1.2)
        self._retx = asyncio.get_running_loop().call_later(self._interval, self._retransmit)

    def on_response(self, response: SIPMessage) -> None:
        status = response.status or 0
        if self.terminated:
            return
        if status < 200:
            if self.result.done():
                return
            self.provisional = response
            if self._retx is not None:
                self._retx.cancel()
                self._retx = None
            cb = self.on_provisional
            if cb is not None:
                cb(response)
            return
        if self.result.done():  # a retransmitted final response
            if status >= 300 and self._ack is not None:
                self._send(self._ack, self.addr)
            elif status < 300 and self.on_2xx_again is not None:
                self.on_2xx_again(response)
            return
        if status >= 300:
            self._ack = self._non2xx_ack(response).encode()
            self._send(self._ack, self.addr)
        self.result.set_result(response)
        self._stop()
        self._end = asyncio.get_running_loop().call_later(64 * self._timers.t1, self.terminate)

    def _non2xx_ack(self, response: SIPMessage) -> SIPMessage:
        """RFC 3261 §17.1.1.3: the INVITE's Request-URI, top Via, From, Call-ID and Route,
        the response's To (with its tag), CSeq number with method ACK."""
        req = self.request
        headers: list[tuple[str, str]] = [("Via", (req.get_all("Via") or [""])[0])]
        headers += [("Max-Forwards", "70"), ("From", req.get("From") or "")]
        headers += [("To", response.get("To") or ""), ("Call-ID", req.call_id)]
        headers.append(("CSeq", f"{req.cseq[0]} ACK"))
        headers += [("Route", r) for r in req.get_all("Route")]
        return SIPMessage(method="ACK", uri=req.uri, headers=headers)

    def terminate(self) -> None:
        self.on_provisional = self.on_2xx_again = None
        super().terminate()


def response_to(
    request: SIPMessage, status: int, reason: str, *, to_tag: str | None = None, **extra: Any
) -> SIPMessage:
    """A response echoing the request's Via, From, To (with ``to_tag`` added), Call-ID,
    CSeq and Record-Route (RFC 3261 §8.2.6.2, §12.1.1)."""
    headers: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq", "Record-Route"):
            headers.append((name, value))
        elif name == "To":
            if to_tag and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            headers.append((name, value))
    return SIPMessage(status=status, reason=reason, headers=headers)
