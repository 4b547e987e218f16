"""SIPServer: one UDP SIP listener that answers calls, each one a flowcat pipeline.

::

    def factory(transport: SIPTransport) -> PipelineTask | None:   # sync or async
        call = transport.call                                        # CallInfo: From, To, Call-ID…
        return PipelineTask(Pipeline([transport.input(), stt, llm, tts, transport.output()]))

    server = SIPServer(factory, host="0.0.0.0", port=5060, public_address="203.0.113.7",
                       rtp_ports=(10000, 20000))
    await server.start()

Requests handled (UDP, RFC 3261): INVITE (``100``, ``180``, ``200`` + SDP, then
the ACK; ``488`` when no codec is common, ``503`` + ``Retry-After`` over
``max_calls``, ``603`` when the factory returns None, ``422`` + ``Min-SE`` for a
``Session-Expires`` below the session timers' minimum), CANCEL (``200``, and
``487`` for the INVITE), BYE (``200``; ``481`` for an unknown dialog), re-INVITE
(hold/resume; a session refresh), UPDATE (a session refresh, RFC 3311), REFER and
NOTIFY (transfer, RFC 3515), OPTIONS (``200`` with ``Allow`` and an ``X-Flowcat-Load`` header:
``calls=N;capacity=M``, capacity ``-`` when unlimited), ACK. Other methods get
``405`` with ``Allow``. Each call is a :class:`~flowcat.transports.sip._call.SIPCall`.

The same socket is also a user agent client: :meth:`SIPServer.register` binds it at a
registrar (digest auth, refresh, un-REGISTER on :meth:`SIPServer.stop`) and
:meth:`SIPServer.dial` places a call (:class:`~flowcat.transports.sip.OutboundCall`)
that runs a pipeline task like an inbound one.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import ConfigError, SDPError, SIPParseError
from ._auth import DigestCredentials
from ._call import SIPCall
from ._endpoint import SIPEndpoint
from ._headers import parse_name_addr
from ._message import SIPMessage
from ._outbound import OutboundCall
from ._register import Registration
from ._rtp import RTPPortAllocator
from ._sdp import negotiate, parse_offer
from ._session_timer import SessionTimers, too_small
from ._transaction import ServerTransaction, Timers, response_to
from ._transport import SIPParams, SIPTransport

__all__ = ["SIPServer"]

logger = logging.getLogger("flowcat.transports.sip")

TaskFactory = Callable[[SIPTransport], Any | Awaitable[Any]]
_BIND_TRIES = 20


class SIPServer:
    """Answers inbound SIP calls over UDP (see the module docstring).

    Args:
        factory: ``transport → PipelineTask`` (or None to decline with ``603``, or raise
            :class:`~flowcat.errors.CapacityError` to refuse with ``503``), sync or
            async; ``transport.call`` is the call's :class:`~flowcat.serializers.CallInfo`.
        host: Address the SIP and RTP sockets bind to.
        port: SIP port (0: an ephemeral one, see :attr:`port` after :meth:`start`).
        public_address: The address put in Contact, Via and the SDP ``c=`` line
            (the NAT's public address); default ``host`` (required when ``host`` is
            a wildcard).
        rtp_ports: ``(start, end)`` range of RTP ports; each call takes one even port.
        codecs: Codecs answered, among ``PCMU`` and ``PCMA`` (the offer's order wins).
        max_calls: Calls at once; more get ``503``. None: no limit but the port range.
        ring_secs: How long a call rings (``180``) before it is answered.
        params: Transport parameters of every call.
        inband_dtmf: Also detect DTMF tones in the caller's audio (after reordering).
        jitter_max_packets: Largest reorder depth of the receive jitter buffer.
        timers: RFC 3261 T1/T2/T4.
        user_agent: ``Server``/``User-Agent`` header value.
        load: ``() → (calls, capacity or None)`` reported to OPTIONS; default this
            server's own calls and ``max_calls``. Capacity 0 (a draining worker) answers
            OPTIONS ``503``, like :meth:`drain`.
        call_headers: INVITE headers copied into ``CallInfo.extra["headers"]`` (by name).
        refer_policy: An inbound REFER: ``"decline"`` (``603``) or ``"event"`` (``202``,
            then the transport's ``on_refer`` handler decides; see :class:`SIPTransport`).
        session_timers: RFC 4028 settings (:class:`SessionTimers`); None: not offered.
        tcp: Also accept (and send) SIP over TCP on the same port (RFC 3261 §18).
        tls: An SSL server context: also accept SIP over TLS on ``tls_port``.
        tls_port: TLS port (0: an ephemeral one, see :attr:`tls_port` after :meth:`start`).
        tls_client: SSL context for TLS connections this side opens (default: the system's).
    """

    ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE"

    def __init__(
        self,
        factory: TaskFactory,
        *,
        host: str = "127.0.0.1",
        port: int = 5060,
        public_address: str | None = None,
        rtp_ports: tuple[int, int] = (10000, 20000),
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        max_calls: int | None = None,
        ring_secs: float = 0.0,
        params: SIPParams | None = None,
        inband_dtmf: bool = False,
        jitter_max_packets: int = 5,
        timers: Timers | None = None,
        user_agent: str = "flowcat",
        load: Callable[[], tuple[int, int | None]] | None = None,
        call_headers: tuple[str, ...] = (),
        refer_policy: str = "decline",
        session_timers: SessionTimers | None = None,
        tcp: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 5061,
        tls_client: ssl.SSLContext | None = None,
    ) -> None:
        if refer_policy not in ("decline", "event"):
            raise ConfigError(f"SIPServer: refer_policy must be 'decline' or 'event', got {refer_policy!r}")
        if public_address is None and host in ("0.0.0.0", "::", ""):  # noqa: S104 - a comparison with the wildcard address, not a bind
            raise ConfigError("SIPServer: set public_address when host is a wildcard address")
        bad = [c for c in codecs if c.upper() not in ("PCMU", "PCMA")]
        if bad or not codecs:
            raise ConfigError(f"SIPServer: codecs must be among PCMU and PCMA, got {codecs!r}")
        self.factory = factory
        self.host = host
        self.port = port
        self.public_address = public_address or host
        self.rtp_ports = RTPPortAllocator(host, *rtp_ports)
        self.codecs = tuple(c.upper() for c in codecs)
        self.max_calls = max_calls
        self.ring_secs = ring_secs
        self.params = params
        self.inband_dtmf = inband_dtmf
        self.jitter_max_packets = jitter_max_packets
        self.timers = timers or Timers()
        self.user_agent = user_agent
        self.load = load
        self.call_headers = tuple(call_headers)
        self.refer_policy = refer_policy
        self.session_timers = session_timers
        self.tcp = tcp
        self.tls = tls
        self.tls_port = tls_port
        self.tls_client = tls_client
        self.draining = False
        self.endpoint = SIPEndpoint(self, self.timers)
        self.calls: dict[str, SIPCall] = {}
        self.registrations: list[Registration] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_ids = itertools.count(random.randint(1, 1 << 30))  # noqa: S311 - a SIP CSeq/SDP session id start value: uniqueness, not secrecy (RFC 3261 8.1.1.5, RFC 4566 5.2)
        self.calls_answered = 0
        self.calls_ended = 0
        self._call_ended = asyncio.Event()
        self.calls_refused = 0

    @property
    def contact(self) -> str:
        host = f"[{self.public_address}]" if ":" in self.public_address else self.public_address
        return f"<sip:flowcat@{host}:{self.port}>"

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    def next_session_id(self) -> int:
        return next(self._session_ids)

    async def start(self) -> int:
        """Bind the SIP sockets (UDP, and TCP on the same port, TLS on ``tls_port``); returns
        the port. With port 0 a port free for both UDP and TCP is found (a few tries)."""
        requested = self.port
        for attempt in range(_BIND_TRIES):
            try:
                await self._bind(requested)
                break
            except OSError as exc:
                if requested != 0 or exc.errno != errno.EADDRINUSE or attempt == _BIND_TRIES - 1:
                    raise
        logger.info(
            "sip: listening on %s:%d (UDP%s%s, public %s)",
            self.host,
            self.port,
            "+TCP" if self.tcp else "",
            f", TLS on {self.tls_port}" if self.tls is not None else "",
            self.public_address,
        )
        return self.port

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        streams = None
        if self.tcp or self.tls is not None:
            streams = await self.endpoint.listen_streams(
                self.host,
                port,
                tcp=self.tcp,
                tls=self.tls,
                tls_port=self.tls_port,
                tls_client=self.tls_client,
            )
            port = streams.ports.get("TCP", port)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self.endpoint, local_addr=(self.host, port), family=family
            )
        except OSError:
            if streams is not None:
                streams.close()
                self.endpoint.streams = None
            raise
        self.port = transport.get_extra_info("sockname")[1]
        if streams is not None:
            self.tls_port = streams.ports.get("TLS", self.tls_port)

    def drain(self) -> None:
        """Take no new calls: INVITEs and OPTIONS are answered ``503`` (a dispatcher then
        sends calls elsewhere); the calls in progress go on. :meth:`wait_calls_ended`
        tells when the last one ended."""
        self.draining = True

    async def stop(self, timeout: float = 5.0) -> None:
        """Un-REGISTER, hang up every call (their pipelines are cancelled, BYEs sent) and
        close the socket."""
        regs, self.registrations = self.registrations, []
        if regs:
            await asyncio.wait([asyncio.ensure_future(r.close()) for r in regs], timeout=timeout)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self.endpoint.close()

    async def wait_calls_ended(self) -> None:
        """Wait until no call is in progress."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a call's task until it ends (``stop()`` cancels it)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ user agent client

    async def register(
        self,
        registrar: tuple[str, int],
        user: str,
        password: str | None = None,
        *,
        username: str | None = None,
        domain: str | None = None,
        expires: int = 3600,
        min_refresh: float = 30.0,
    ) -> Registration:
        """Register ``user`` at ``registrar`` and keep the binding fresh until :meth:`stop`
        (see :class:`~flowcat.transports.sip.Registration`). Raises
        :class:`~flowcat.errors.SIPCallError` / :class:`~flowcat.errors.SIPAuthError`."""
        creds = DigestCredentials(username or user, password) if password is not None else None
        reg = Registration(
            self, registrar, user, creds, domain=domain, expires=expires, min_refresh=min_refresh
        )
        await reg.register()
        self.registrations.append(reg)
        return reg

    def outbound_call(
        self,
        target: str,
        factory: TaskFactory | None = None,
        *,
        from_user: str = "flowcat",
        username: str | None = None,
        password: str | None = None,
        proxy: tuple[str, int] | None = None,
    ) -> OutboundCall:
        """A call to ``target``, not yet placed: ``await call.connect()`` (or ``call.cancel()``)."""
        creds = DigestCredentials(username or from_user, password) if password is not None else None
        return OutboundCall(
            self, target, factory or self.factory, from_user=from_user, credentials=creds, proxy=proxy
        )

    async def dial(
        self,
        target: str,
        factory: TaskFactory | None = None,
        *,
        from_user: str = "flowcat",
        username: str | None = None,
        password: str | None = None,
        proxy: tuple[str, int] | None = None,
    ) -> OutboundCall:
        """Call ``target`` (``sip:user@host:port``) and return once it is answered; its
        pipeline (``factory``, default the server's) then runs until either side hangs up.
        Raises :class:`~flowcat.errors.SIPCallError` when it is not answered."""
        call = self.outbound_call(
            target, factory, from_user=from_user, username=username, password=password, proxy=proxy
        )
        await call.connect()
        return call

    async def wait_ended(self, count: int) -> None:
        """Wait until ``count`` calls (inbound or outbound) have ended since the start."""
        while self.calls_ended < count:
            self._call_ended.clear()
            await self._call_ended.wait()

    def call_ended(self, call: SIPCall) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
            self.calls_ended += 1
            self._call_ended.set()

    # ------------------------------------------------------------ requests

    def on_request(self, txn: ServerTransaction) -> None:
        req = txn.request
        method = req.method
        try:
            to_tag = parse_name_addr(req.get("To") or "").tag
        except SIPParseError as exc:
            self._reply(txn, 400, "Bad Request", warning=str(exc))
            return
        if method == "INVITE" and not to_tag:
            self._invite(txn)
        elif method == "OPTIONS":
            self._options(txn)
        elif method == "CANCEL":
            self._cancel(txn)
        elif method in ("BYE", "INVITE", "REFER", "NOTIFY", "UPDATE"):
            call = self.calls.get(req.call_id)
            if call is None or not hasattr(call, "dialog") or not call.dialog.matches(req):
                self._reply(txn, 481, "Call/Transaction Does Not Exist")
            elif method == "BYE":
                call.on_bye(txn)
            elif method == "REFER":
                call.on_refer(txn)
            elif method == "NOTIFY":
                call.on_notify(txn)
            elif method == "UPDATE":
                call.on_update(txn)
            else:
                call.on_reinvite(txn)
        else:
            resp = self._reply(txn, 405, "Method Not Allowed", send=False)
            resp.add("Allow", self.ALLOW)
            txn.respond(resp)

    def on_ack(self, ack: SIPMessage, addr: tuple[str, int]) -> None:
        call = self.calls.get(ack.call_id)
        if call is not None and call.dialog.matches(ack):
            call.on_ack()

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str,
        *,
        send: bool = True,
        warning: str | None = None,
    ) -> SIPMessage:
        resp = response_to(txn.request, status, reason)
        resp.add("Server", self.user_agent)
        if warning:
            resp.add("Warning", f'399 flowcat "{warning[:100]}"')
        if send:
            txn.respond(resp)
        return resp

    def _invite(self, txn: ServerTransaction) -> None:
        req = txn.request
        if req.call_id in self.calls:
            txn.respond(response_to(req, 482, "Loop Detected"))
            return
        if self.draining or (self.max_calls is not None and len(self.calls) >= self.max_calls):
            self.calls_refused += 1
            resp = self._reply(txn, 503, "Service Unavailable", send=False)
            resp.add("Retry-After", "5")
            txn.respond(resp)
            logger.warning(
                "sip: refused call %s: %s (%d calls)",
                req.call_id,
                "draining" if self.draining else "at capacity",
                len(self.calls),
            )
            return
        st = self.session_timers
        if st is not None and too_small(req, st):
            resp = self._reply(txn, 422, "Session Interval Too Small", send=False)
            resp.add("Min-SE", str(st.min_se))
            txn.respond(resp)
            return
        self._reply(txn, 100, "Trying")
        try:
            if not req.body:
                raise SDPError("INVITE without an SDP offer (late offer is not supported)")
            neg = negotiate(parse_offer(req.body), self.codecs)
        except SDPError as exc:
            self.calls_refused += 1
            logger.warning("sip: refused call %s: %s", req.call_id, exc)
            self._reply(txn, 488, "Not Acceptable Here", warning=str(exc))
            return
        call = SIPCall(self, txn, neg)
        self.calls[call.call_id] = call
        self.calls_answered += 1
        self.track(asyncio.get_running_loop().create_task(call.run(), name=f"sip-{call.call_id}"))

    def _cancel(self, txn: ServerTransaction) -> None:
        from ._headers import parse_via

        branch = parse_via(txn.request.get("Via") or "").branch
        invite = self.endpoint.find_invite(branch)
        call = self.calls.get(txn.request.call_id)
        if invite is None or call is None or call.invite_txn is not invite:
            self._reply(txn, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(txn, 200, "OK")
        call.on_cancel()

    def _options(self, txn: ServerTransaction) -> None:
        calls, capacity = self.load() if self.load is not None else (len(self.calls), self.max_calls)
        if self.draining or capacity == 0:  # a dispatcher takes this server out of rotation
            resp = self._reply(txn, 503, "Service Unavailable", send=False)
            resp.add("Retry-After", "30")
        else:
            resp = self._reply(txn, 200, "OK", send=False)
        resp.add("Allow", self.ALLOW)
        resp.add("Accept", "application/sdp")
        cap = "0" if self.draining else "-" if capacity is None else str(capacity)
        resp.add("X-Flowcat-Load", f"calls={calls};capacity={cap}")
        txn.respond(resp)
