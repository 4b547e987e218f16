"""One outbound SIP call (dial out): INVITE with an SDP offer, answer, pipeline, hang-up.

:meth:`SIPServer.dial <flowcat.transports.sip.SIPServer.dial>` makes an
:class:`OutboundCall` and awaits :meth:`OutboundCall.connect`: an RTP port is taken,
the INVITE goes out with the offer (PCMU/PCMA in ``codecs`` order, telephone-event
101) in an INVITE client transaction (Timer A/B). ``1xx`` responses are noted
(``180``/``183``: ``ringing`` is set); ``401``/``407`` are answered with digest
credentials (a new INVITE, CSeq + 1, same Call-ID and From tag); a final ``2xx``
creates the dialog (the 2xx's To tag, Contact as remote target, its Record-Route
reversed as the route set, RFC 3261 §12.1.2) and is ACKed by this core (every
retransmitted 2xx is ACKed again). The answer's codec is used; the call becomes a
pipeline task like an inbound one (``factory(transport)``) and is ended the same
way: a BYE from the peer, or the pipeline ending (this side sends BYE).
:meth:`OutboundCall.cancel` before the answer sends CANCEL once a provisional
response came (RFC 3261 §9.1) and the INVITE ends ``487``. A final error, or no
answer, raises :class:`~flowcat.errors.SIPCallError` from :meth:`connect`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from ...errors import SDPError, SIPCallError, SIPParseError
from ...serializers import CallInfo
from ._auth import DigestCredentials
from ._call import SIPCall
from ._dialog import Dialog
from ._headers import new_branch, new_tag, parse_name_addr, parse_uri
from ._media import RTPSession
from ._message import SIPMessage
from ._register import answer_challenge, host_port
from ._sdp import Negotiated, build_offer, negotiate, parse_offer
from ._session_timer import SessionTimer
from ._transaction import InviteClientTransaction
from ._transport import SIPTransport

if TYPE_CHECKING:
    from ._server import SIPServer, TaskFactory

__all__ = ["OutboundCall"]

logger = logging.getLogger("flowcat.transports.sip")


class OutboundCall(SIPCall):
    """A call this side places (see the module docstring).

    Args:
        server: The :class:`~flowcat.transports.sip.SIPServer` whose socket and RTP
            ports it uses.
        target: The callee's SIP URI (``sip:bob@198.51.100.7:5060``).
        factory: ``transport → PipelineTask`` run when the call is answered.
        from_user: The user part of From (the caller id).
        credentials: Answer ``401``/``407`` with these.
        proxy: Send the INVITE here instead of the URI's host:port (an outbound proxy).
    """

    def __init__(
        self,
        server: SIPServer,
        target: str,
        factory: TaskFactory,
        *,
        from_user: str = "flowcat",
        credentials: DigestCredentials | None = None,
        proxy: tuple[str, int] | None = None,
    ) -> None:
        uri = parse_uri(target)  # SIPParseError for a bad target
        self.server = server
        self.target = target
        self.factory = factory
        self.credentials = credentials
        self.destination = proxy or uri.address()
        self.invite_txn = None  # type: ignore[assignment]  # nothing to CANCEL from the peer's side
        self.call_id = f"{new_tag()}{new_tag()}@flowcat"
        self.local_tag = new_tag()
        self.local_header = (
            f"<sip:{from_user}@{host_port(server.public_address, server.port)}>;tag={self.local_tag}"
        )
        self.remote_header = f"<{target}>"
        self.cseq = 1
        self.media: RTPSession | None = None
        self.rtp_port = 0
        self.transport: SIPTransport | None = None
        self.task: Any = None
        self.cancelled = asyncio.Event()
        self.confirmed = asyncio.Event()
        self.ended = asyncio.Event()
        self.ringing = asyncio.Event()
        self.answered = asyncio.Event()
        self.end_reason = ""
        self.bye_sent = False
        self.bye_received = False
        self.sdp_version = 1
        self.session_id = server.next_session_id()
        self.status: int | None = None
        self.reason = ""
        self._pending_2xx = None
        self._invite: SIPMessage | None = None
        self._txn: InviteClientTransaction | None = None
        self._ack: bytes | None = None
        self._cancel_sent = False
        self._se_interval: int | None = None
        codec = server.codecs[0]
        self.negotiated = Negotiated(
            codec, 0 if codec == "PCMU" else 8, None, (self.destination[0], 0), "sendrecv"
        )
        self.info = CallInfo(
            carrier="sip", call_id=self.call_id, codec=codec, sample_rate=8000,
            from_number=from_user, to_number=uri.user or None,
            remote=f"{self.destination[0]}:{self.destination[1]}",
            extra={"from": self.local_header, "to": self.remote_header, "request_uri": target,
                   "direction": "outbound"},
        )  # fmt: skip

    # ------------------------------------------------------------ placing the call

    def _invite_message(self, sdp: bytes, auth: list[tuple[str, str]]) -> SIPMessage:
        srv = self.server
        headers = [
            ("Via", f"SIP/2.0/UDP {host_port(srv.public_address, srv.port)};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", self.local_header),
            ("To", self.remote_header),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} INVITE"),
            ("Contact", srv.contact),
            ("Allow", srv.ALLOW),
            ("User-Agent", srv.user_agent),
            *auth,
        ]
        if srv.session_timers is not None:
            headers += SessionTimer.offer_headers(srv.session_timers, self._se_interval)
        headers.append(("Content-Type", "application/sdp"))
        return SIPMessage(method="INVITE", uri=self.target, headers=headers, body=sdp)

    async def connect(self) -> None:
        """Place the call and wait for the answer; then the pipeline runs in the
        background (:attr:`ended` is set when the call is over). Raises
        :class:`~flowcat.errors.SIPCallError` when it is not answered."""
        srv = self.server
        media = RTPSession(
            f"sip:{self.call_id}", self.negotiated, {self.destination[0]},
            inband_dtmf=srv.inband_dtmf, jitter_max_packets=srv.jitter_max_packets,
        )  # fmt: skip
        sock, self.rtp_port = srv.rtp_ports.bind()
        media.attach(sock)
        self.media = media
        srv.calls[self.call_id] = self
        try:
            resp = await self._place()
            self._answered(resp)
        except BaseException:
            await self._cleanup()
            raise
        task = asyncio.get_running_loop().create_task(self.run(), name=f"sip-{self.call_id}")
        srv.track(task)

    async def _place(self) -> SIPMessage:
        sdp = build_offer(
            self.server.public_address, self.rtp_port, self.server.codecs, session_id=self.session_id
        )
        nonces: set[str] = set()
        auth: list[tuple[str, str]] = []
        while True:
            msg = self._invite_message(sdp, auth)
            self._invite = msg
            txn = self.server.endpoint.invite(msg, self.destination)
            self._txn = txn
            txn.on_provisional = self._provisional
            txn.on_2xx_again = self._resend_ack
            if self.cancelled.is_set():
                self._send_cancel()
            resp = await txn.result
            if resp is None:
                raise SIPCallError(f"INVITE {self.target}: no answer", None, "timeout")
            status = resp.status or 0
            self.status, self.reason = status, resp.reason or ""
            if status in (401, 407) and not self.cancelled.is_set():
                header, value = answer_challenge(resp, self.credentials, "INVITE", self.target, nonces)
                auth = [(header, value)]
                self.cseq += 1
                continue
            if status == 422 and self.server.session_timers is not None and not self.cancelled.is_set():
                raw = (resp.get("Min-SE") or "").split(";")[0].strip()
                wanted = int(raw) if raw.isdigit() else 0
                if wanted > (self._se_interval or 0) and wanted <= 86400:
                    self._se_interval = wanted  # RFC 4028 §7.4: again, with the callee's minimum
                    self.cseq += 1
                    continue
            if status >= 300:
                self.end_reason = "cancelled" if status == 487 else f"{status} {resp.reason}"
                raise SIPCallError(f"INVITE {self.target}: {status} {resp.reason}", status, resp.reason or "")
            if self.cancelled.is_set():  # answered although cancelled: accept, then hang up
                self._ack_2xx(resp)
                self.bye_received = False
                self.confirmed.set()
                await self._send_bye()
                raise SIPCallError(f"INVITE {self.target}: cancelled", 487, "cancelled")
            return resp

    def _provisional(self, resp: SIPMessage) -> None:
        if resp.status in (180, 183):
            self.ringing.set()
        if self.cancelled.is_set():
            self._send_cancel()

    def _answered(self, resp: SIPMessage) -> None:
        self.dialog = _uac_dialog(self, resp)
        self._ack_2xx(resp)
        try:
            neg = negotiate(parse_offer(resp.body), self.server.codecs)
        except SDPError as exc:
            raise SIPCallError(
                f"INVITE {self.target}: unusable SDP answer: {exc}", resp.status, "bad SDP"
            ) from exc
        self.negotiated = neg
        assert self.media is not None  # noqa: S101 - invariant (type narrowing), not input validation
        self.media.update(neg)
        self.info.codec = neg.codec
        self.info.extra["telephone_event_pt"] = neg.telephone_event_pt
        if self.server.session_timers is not None:
            self.session_timer = SessionTimer.for_answer(
                resp, self.server.session_timers, self._send_refresh, self._session_expired, self.call_id
            )
            if self.session_timer is not None:
                self.session_timer.start()
        self.confirmed.set()
        self.answered.set()

    def _ack_2xx(self, resp: SIPMessage) -> None:
        if not hasattr(self, "dialog"):
            self.dialog = _uac_dialog(self, resp)
        srv = self.server
        d = self.dialog
        ack, addr = d.request("ACK", srv.public_address, srv.port, srv.contact)
        ack.set("CSeq", f"{self.cseq} ACK")
        d.local_cseq -= 1  # an ACK does not take a CSeq number
        self._ack = ack.encode()
        self._ack_addr = addr
        srv.endpoint.send(self._ack, addr)

    def _resend_ack(self, resp: SIPMessage) -> None:
        if self._ack is not None:
            self.server.endpoint.send(self._ack, self._ack_addr)

    def cancel(self) -> None:
        """Give up before the answer: CANCEL once a provisional response came."""
        self.cancelled.set()
        txn = self._txn
        if txn is not None and txn.provisional is not None and not txn.result.done():
            self._send_cancel()

    def _send_cancel(self) -> None:
        txn, invite = self._txn, self._invite
        if self._cancel_sent or txn is None or invite is None or txn.provisional is None:
            return
        self._cancel_sent = True
        headers = [("Via", (invite.get_all("Via") or [""])[0]), ("Max-Forwards", "70")]
        headers += [(n, invite.get(n) or "") for n in ("From", "To", "Call-ID")]
        headers.append(("CSeq", f"{invite.cseq[0]} CANCEL"))
        headers += [("Route", r) for r in invite.get_all("Route")]
        msg = SIPMessage(method="CANCEL", uri=invite.uri, headers=headers)
        self.server.endpoint.request(msg, self.destination)

    # ------------------------------------------------------------ the answered call

    async def run(self) -> None:
        srv = self.server
        media = self.media
        assert media is not None  # noqa: S101 - invariant (type narrowing), not input validation
        try:
            self.transport = SIPTransport(media, self, self.info, srv.params)
            task = self.factory(self.transport)
            if inspect.isawaitable(task):
                task = await task
            if task is None:
                self.end_reason = "declined by the app"
                await self._send_bye()
                return
            self.task = task
            runner = asyncio.get_running_loop().create_task(task.run(), name=f"sip-call-{self.call_id}")
            try:
                await asyncio.shield(runner)
            except asyncio.CancelledError:
                await task.cancel("SIP server stopped")
                await asyncio.wait((runner,), timeout=5.0)
                if not self.bye_received:
                    await asyncio.wait((asyncio.ensure_future(self._send_bye()),), timeout=1.0)
                raise
            finally:
                if not runner.done():
                    runner.cancel()
            if not self.bye_received:
                await self._send_bye()
        except Exception:
            logger.exception("sip outbound call %s failed", self.call_id)
            if not self.bye_received:
                await self._send_bye()
        finally:
            await self._cleanup()

    async def hangup(self) -> None:
        """End the answered call from outside the pipeline (BYE), or cancel it if unanswered."""
        if not self.answered.is_set():
            self.cancel()
            return
        transport = self.transport
        if transport is not None:
            await transport.handle_disconnect("hung up")


def _uac_dialog(call: OutboundCall, resp: SIPMessage) -> Dialog:
    """The dialog a 2xx creates on the UAC side (RFC 3261 §12.1.2)."""
    d = Dialog.__new__(Dialog)
    d.call_id = call.call_id
    to = resp.get("To") or ""
    try:
        d.remote_tag = parse_name_addr(to).tag or ""
        contact = resp.get("Contact")
        d.remote_target = parse_name_addr(contact).uri if contact else call.target
    except SIPParseError:
        d.remote_tag, d.remote_target = "", call.target
    d.local_tag = call.local_tag
    d.remote_uri = call.target
    d.local_uri = parse_name_addr(call.local_header).uri
    d.remote_header = to
    d.local_header = call.local_header
    d.route_set = list(reversed(resp.get_all("Record-Route")))
    d.remote_cseq = 0
    d.local_cseq = call.cseq
    d.source = call.destination
    d.confirmed = True
    d.terminated = False
    return d
