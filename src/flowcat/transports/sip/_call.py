"""One inbound SIP call, from the INVITE to the end: ringing, answer, pipeline, hang-up.

The INVITE was answered ``100 Trying`` by the server. Then: an RTP port is taken,
``180 Ringing`` is sent (with this side's To tag), the call rings for ``ring_secs``
(a CANCEL meanwhile ends it with ``487``), the :class:`SIPTransport` is built and
the app factory called (None declines the call with ``603``; a
:class:`~flowcat.errors.CapacityError` refuses it with ``503``), and the ``200 OK``
with the SDP answer goes out, retransmitted until the ACK. The pipeline task runs
until it ends or the peer sends BYE. When the pipeline ends first, this side sends
BYE along the dialog's route set (a client transaction: retransmitted until
answered or Timer F). A 2xx never ACKed (64·T1) also ends the call with a BYE.
Re-INVITEs update the media (hold: ``sendonly``/``inactive`` from the peer stops
bot audio; a new address or codec is followed) and are answered with a new SDP
version. REFER and NOTIFY in the dialog are :mod:`~flowcat.transports.sip._refer`'s;
session timers (``Session-Expires``, refreshes, UPDATE) :mod:`~flowcat.transports.sip._session_timer`'s.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from ...errors import CapacityError, SDPError, SIPParseError, SIPRefusal
from ...serializers import CallInfo
from . import _refer
from ._dialog import Dialog
from ._headers import new_tag, parse_name_addr, parse_uri
from ._media import RTPSession
from ._message import SIPMessage
from ._sdp import Negotiated, build_answer, negotiate, parse_offer
from ._session_timer import SessionTimer
from ._transaction import ServerTransaction, response_to
from ._transport import SIPTransport

if TYPE_CHECKING:
    from ._server import SIPServer

__all__ = ["SIPCall"]

logger = logging.getLogger("flowcat.transports.sip")

_END_GRACE = 5.0
_BYE_ON_STOP = 1.0  # seconds a stopping server waits for each call's BYE to be answered


class SIPCall:
    """One inbound call of a :class:`~flowcat.transports.sip.SIPServer` (see the module docstring)."""

    refer_waiter: asyncio.Future[tuple[int, str]] | None = None
    """The transfer in progress waits here for its final sipfrag status."""
    transferring: asyncio.Task[None] | None = None
    session_timer: SessionTimer | None = None
    """The RFC 4028 session timer (None: none negotiated)."""

    def __init__(self, server: SIPServer, txn: ServerTransaction, negotiated: Negotiated) -> None:
        self.server = server
        self.invite_txn = txn
        self.negotiated = negotiated
        invite = txn.request
        self.call_id = invite.call_id
        self.dialog = Dialog(invite, new_tag(), txn.addr)
        self.media: RTPSession | None = None
        self.rtp_port = 0
        self.transport: SIPTransport | None = None
        self.task: Any = None
        self.cancelled = asyncio.Event()
        self.confirmed = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.bye_sent = False
        self.bye_received = False
        self.sdp_version = 1
        self.session_id = server.next_session_id()
        self.info = _call_info(invite, negotiated, txn.addr, server.call_headers)
        self._pending_2xx: ServerTransaction | None = None

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        srv = self.server
        txn = self.invite_txn
        try:
            media = RTPSession(
                f"sip:{self.call_id}",
                self.negotiated,
                {txn.addr[0]},
                inband_dtmf=srv.inband_dtmf,
                jitter_max_packets=srv.jitter_max_packets,
            )
            sock, self.rtp_port = srv.rtp_ports.bind()
            media.attach(sock)
            self.media = media
            self._respond(txn, 180, "Ringing")
            if srv.ring_secs > 0:
                try:
                    await asyncio.wait_for(self.cancelled.wait(), srv.ring_secs)
                except TimeoutError:
                    pass
            if self.cancelled.is_set():
                self.end_reason = "cancelled"
                return
            self.transport = SIPTransport(media, self, self.info, srv.params)
            try:
                task = srv.factory(self.transport)
                if inspect.isawaitable(task):
                    task = await task
            except CapacityError as exc:
                logger.warning("%s: refused: %s", self.call_id, exc)
                resp = self._response(txn, 503, "Service Unavailable")
                resp.add("Retry-After", "5")
                txn.respond(resp)
                self.end_reason = "refused"
                return
            except SIPRefusal as exc:
                logger.info("%s: refused %s: %s", self.call_id, exc.status, exc)
                resp = self._response(txn, int(exc.status or 500), exc.reason or "Refused")
                for name, value in exc.headers.items():
                    resp.add(name, value)
                txn.respond(resp)
                self.end_reason = "refused"
                return
            if self.cancelled.is_set():
                self.end_reason = "cancelled"
                return
            if task is None:
                self._respond(txn, 603, "Decline")
                self.end_reason = "declined"
                return
            self.task = task
            extra: list[tuple[str, str]] = []
            if srv.session_timers is not None:
                self.session_timer, extra = SessionTimer.for_invite(
                    txn.request, srv.session_timers, self._send_refresh, self._session_expired, self.call_id
                )
            self._answer(txn, extra)
            if self.session_timer is not None:
                self.session_timer.start()
            runner = asyncio.get_running_loop().create_task(task.run(), name=f"sip-call-{self.call_id}")
            try:
                await asyncio.shield(runner)
            except asyncio.CancelledError:
                await task.cancel("SIP server stopped")
                await asyncio.wait((runner,), timeout=_END_GRACE)
                if not self.bye_received:  # tell the peer, bounded: the server is stopping
                    await asyncio.wait((asyncio.ensure_future(self._send_bye()),), timeout=_BYE_ON_STOP)
                raise
            finally:
                if not runner.done():
                    runner.cancel()
            if not self.bye_received:
                await self._send_bye()
        except SDPError as exc:
            logger.warning("%s: %s", self.call_id, exc)
            self._respond(txn, 488, "Not Acceptable Here")
        except Exception:
            logger.exception("sip call %s failed", self.call_id)
            if txn.final is None:
                self._respond(txn, 500, "Server Internal Error")
            elif not self.bye_received:
                await self._send_bye()
        finally:
            await self._cleanup()

    def _answer(self, txn: ServerTransaction, extra: list[tuple[str, str]] | None = None) -> None:
        sdp = self._sdp()
        resp = self._response(txn, 200, "OK")
        for name, value in extra or ():
            resp.add(name, value)
        resp.add("Content-Type", "application/sdp")
        resp.body = sdp
        self._pending_2xx = txn
        txn.on_timeout = self._ack_timeout
        txn.respond(resp)

    def _sdp(self) -> bytes:
        srv = self.server
        return build_answer(
            self.negotiated,
            srv.public_address,
            self.rtp_port,
            session_id=self.session_id,
            version=self.sdp_version,
        )

    def _response(self, txn: ServerTransaction, status: int, reason: str) -> SIPMessage:
        resp = response_to(txn.request, status, reason, to_tag=self.dialog.local_tag)
        if status < 300:
            resp.add("Contact", self.server.contact)
            resp.add("Allow", self.server.ALLOW)
        resp.add("Server", self.server.user_agent)
        return resp

    def _respond(self, txn: ServerTransaction, status: int, reason: str) -> None:
        txn.respond(self._response(txn, status, reason))

    # ------------------------------------------------------------ CallControl

    def input_started(self) -> None:
        media, transport = self.media, self.transport
        if media is not None and transport is not None:
            media.sink = transport

    def transfer(self, target: str) -> None:
        """Blind-transfer the call to ``target`` (a ``TransferCallFrame`` reached the output):
        REFER, then BYE on success; the outcome goes to the transport's ``on_transfer``."""
        if self.transferring is not None and not self.transferring.done():
            logger.warning("%s: a transfer is already in progress; %s ignored", self.call_id, target)
            return
        self.transferring = asyncio.get_running_loop().create_task(
            self._transfer(target), name=f"sip-transfer-{self.call_id}"
        )

    async def _transfer(self, target: str) -> None:
        status, reason = await _refer.transfer(self, target)
        transport = self.transport
        if 200 <= status < 300:
            logger.info("%s: transferred to %s (%d %s); hanging up", self.call_id, target, status, reason)
            self.end_reason = "transferred"
        else:
            logger.warning("%s: transfer to %s failed: %d %s", self.call_id, target, status, reason)
        if transport is not None:
            await transport.transfer_finished(target, status, reason)
            if 200 <= status < 300:
                await transport.handle_disconnect("transferred")

    def reply(self, txn: ServerTransaction, status: int, reason: str) -> None:
        """Answer an in-dialog request."""
        self._respond(txn, status, reason)

    def on_refer(self, txn: ServerTransaction) -> None:
        _refer.on_refer(self, txn)

    def on_notify(self, txn: ServerTransaction) -> None:
        _refer.on_notify(self, txn)

    def hang_up(self) -> None:
        """The pipeline is ending (EndFrame/CancelFrame at the output): the BYE follows
        when its task has finished (:meth:`run`)."""
        self.end_reason = self.end_reason or "pipeline ended"

    # ------------------------------------------------------------ from the peer

    def on_cancel(self) -> bool:
        """A CANCEL for the INVITE: 487 unless already answered. Returns whether it applied."""
        txn = self.invite_txn
        if txn.final is not None:
            return False
        self._respond(txn, 487, "Request Terminated")
        self.cancelled.set()
        return True

    def on_ack(self) -> None:
        txn = self._pending_2xx
        if txn is not None:
            txn.ack()
            self._pending_2xx = None
        self.dialog.confirmed = True
        self.confirmed.set()

    def on_bye(self, txn: ServerTransaction) -> None:
        self.bye_received = True
        self.dialog.terminated = True
        self.end_reason = "remote BYE"
        txn.respond(self._response(txn, 200, "OK"))
        pending = self._pending_2xx
        if pending is not None:
            pending.ack()  # a BYE before the ACK: stop retransmitting the 2xx
        self.cancelled.set()
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().create_task(transport.handle_disconnect("SIP BYE from the peer"))

    def on_reinvite(self, txn: ServerTransaction) -> None:
        """A re-INVITE: new offer (hold/resume, new address) answered with a new SDP version;
        also a session refresh."""
        if self._pending_2xx is not None and not self._pending_2xx.acked:
            self._respond(txn, 491, "Request Pending")
            return
        extra = self._refreshed(txn)
        if extra is None or not self._new_offer(txn, "re-INVITE"):
            return
        logger.info("%s: re-INVITE, media now %s", self.call_id, self.negotiated.direction)
        self._answer(txn, extra)

    def on_update(self, txn: ServerTransaction) -> None:
        """An UPDATE (RFC 3311): a session refresh, with or without a new offer."""
        extra = self._refreshed(txn)
        if extra is None or not self._new_offer(txn, "UPDATE"):
            return
        resp = self._response(txn, 200, "OK")
        for name, value in extra:
            resp.add(name, value)
        if txn.request.body:
            resp.add("Content-Type", "application/sdp")
            resp.body = self._sdp()
        txn.respond(resp)

    def _refreshed(self, txn: ServerTransaction) -> list[tuple[str, str]] | None:
        """A refresh from the peer: the headers of its 2xx, or None (answered ``422``)."""
        timer = self.session_timer
        if timer is None:
            return []
        extra = timer.on_refresh_request(txn.request)
        if extra is None:
            resp = self._response(txn, 422, "Session Interval Too Small")
            resp.add("Min-SE", str(timer.settings.min_se))
            txn.respond(resp)
        return extra

    def _new_offer(self, txn: ServerTransaction, what: str) -> bool:
        """Apply the request's SDP offer, if any (False: answered ``488``)."""
        if not txn.request.body:
            return True
        try:
            neg = negotiate(parse_offer(txn.request.body), self.server.codecs)
        except SDPError as exc:
            logger.warning("%s: %s refused: %s", self.call_id, what, exc)
            self._respond(txn, 488, "Not Acceptable Here")
            return False
        self.negotiated = neg
        if self.media is not None:
            self.media.update(neg)
        self.sdp_version += 1
        return True

    # ------------------------------------------------------------ session timer

    async def _send_refresh(self, method: str, headers: list[tuple[str, str]]) -> SIPMessage | None:
        """Send one session refresh (UPDATE, or re-INVITE with the current SDP) in the dialog."""
        dialog = self.dialog
        if dialog.terminated:
            return None
        srv = self.server
        msg, addr = dialog.request(method, srv.public_address, srv.port, srv.contact)
        for name, value in headers:
            msg.add(name, value)
        msg.add("User-Agent", srv.user_agent)
        if method == "UPDATE":
            return await srv.endpoint.request(msg, addr).result
        msg.add("Allow", srv.ALLOW)
        msg.add("Content-Type", "application/sdp")
        msg.body = self._sdp()
        txn = srv.endpoint.invite(msg, addr)
        cseq = dialog.local_cseq
        ack_data: list[bytes] = []

        def ack(_: SIPMessage) -> None:
            if ack_data:
                srv.endpoint.send(ack_data[0], addr)

        txn.on_2xx_again = ack
        resp = await txn.result
        if resp is not None and 200 <= (resp.status or 0) < 300:
            ack_msg, _ = dialog.request("ACK", srv.public_address, srv.port, srv.contact)
            dialog.local_cseq -= 1  # an ACK takes the INVITE's CSeq number
            ack_msg.set("CSeq", f"{cseq} ACK")
            ack_data.append(ack_msg.encode())
            ack(resp)
        return resp

    def _session_expired(self, why: str) -> None:
        self.end_reason = f"session timer: {why}"
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().create_task(transport.handle_disconnect(self.end_reason))

    def _ack_timeout(self) -> None:
        logger.warning("%s: the 200 OK was never ACKed; hanging up", self.call_id)
        self.end_reason = "no ACK"
        self.confirmed.set()
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().create_task(
                transport.handle_disconnect("SIP 200 OK never acknowledged")
            )

    # ------------------------------------------------------------ ending

    async def _send_bye(self) -> None:
        dialog = self.dialog
        if dialog.terminated or self.bye_sent:
            return
        if not self.confirmed.is_set():
            try:
                await asyncio.wait_for(self.confirmed.wait(), 64 * self.server.timers.t1)
            except TimeoutError:
                pass
        dialog.terminated = True
        self.bye_sent = True
        srv = self.server
        try:
            msg, addr = dialog.request("BYE", srv.public_address, srv.port, srv.contact)
        except SIPParseError as exc:
            logger.warning("%s: cannot send BYE: %s", self.call_id, exc)
            return
        msg.add("User-Agent", srv.user_agent)
        result = await srv.endpoint.request(msg, addr).result
        if result is None:
            logger.warning("%s: BYE got no answer", self.call_id)
        elif (result.status or 0) >= 300:
            logger.info("%s: BYE answered %s %s", self.call_id, result.status, result.reason)

    async def _cleanup(self) -> None:
        timer = self.session_timer
        if timer is not None:
            timer.stop()
        transport = self.transport
        if transport is not None:
            await transport.handle_disconnect(self.end_reason or "SIP call ended")
        media = self.media
        if media is not None:
            media.close()
            self.server.rtp_ports.release(self.rtp_port)
        self.task = None
        self.ended.set()
        self.server.call_ended(self)


def _user(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parse_uri(parse_name_addr(value).uri).user or None
    except SIPParseError:
        return None


def _uri_user(uri: str | None) -> str | None:
    if not uri:
        return None
    try:
        return parse_uri(uri).user or None
    except SIPParseError:
        return None


def _call_info(
    invite: SIPMessage, neg: Negotiated, source: tuple[str, int], headers: tuple[str, ...] = ()
) -> CallInfo:
    """The call's metadata: From/To users, Call-ID, and in ``extra`` the full From/To, the
    Request-URI and its user (the dialled number), and the ``headers`` asked for (by name)."""
    wanted = {name: value for name in headers if (value := invite.get(name)) is not None}
    return CallInfo(
        carrier="sip",
        call_id=invite.call_id,
        codec=neg.codec,
        sample_rate=8000,
        from_number=_user(invite.get("From")),
        to_number=_user(invite.get("To")),
        remote=f"{source[0]}:{source[1]}",
        extra={
            "from": invite.get("From"),
            "to": invite.get("To"),
            "request_uri": invite.uri,
            "dialled": _uri_user(invite.uri),
            "headers": wanted,
            "telephone_event_pt": neg.telephone_event_pt,
            "user_agent": invite.get("User-Agent"),
        },
    )
