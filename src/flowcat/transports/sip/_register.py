"""REGISTER (RFC 3261 §10): bind this UA's Contact at a registrar, keep it fresh, remove it.

:meth:`Registration.register` sends a REGISTER and answers digest challenges
(``401``/``407``, :mod:`._auth`); ``200`` gives the granted expiry (the Contact's
``expires`` parameter for this Contact, else the ``Expires`` header, else what was
asked) and schedules a refresh at 80 % of it (never sooner than ``min_refresh``
seconds, never later than 90 % of the expiry). ``423 Interval Too Brief`` is retried
with the registrar's ``Min-Expires``. A ``403``, or a repeated challenge for the
same credentials (not ``stale``), is :class:`~flowcat.errors.SIPAuthError`; any
other failure, or no answer (Timer F), is :class:`~flowcat.errors.SIPCallError`.
:meth:`Registration.close` stops refreshing and un-registers (``Expires: 0``).
Requests share one Call-ID and From tag and an increasing CSeq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from ...errors import SIPAuthError, SIPCallError, SIPParseError
from ._auth import Challenge, DigestCredentials, parse_challenge
from ._headers import new_branch, new_tag, parse_name_addr
from ._message import SIPMessage

if TYPE_CHECKING:
    from ._server import SIPServer

__all__ = ["Registration", "answer_challenge", "host_port"]

logger = logging.getLogger("flowcat.transports.sip")
_MAX_ROUNDS = 5  # challenges and 423s answered per REGISTER before giving up


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def answer_challenge(
    response: SIPMessage, credentials: DigestCredentials | None, method: str, uri: str, previous: set[str]
) -> tuple[str, str]:
    """The (header, value) answering a ``401``/``407``. ``previous`` holds the nonces
    already answered: a new challenge with one of them (and not ``stale``) means the
    credentials were refused."""
    proxy = response.status == 407
    value = response.get("Proxy-Authenticate" if proxy else "WWW-Authenticate")
    if not value:
        raise SIPAuthError(f"{response.status} without a challenge", response.status, response.reason or "")
    if credentials is None:
        raise SIPAuthError(
            f"{method}: authentication required (realm challenge) but no credentials given",
            response.status,
            response.reason or "",
        )
    challenge: Challenge = parse_challenge(value, proxy=proxy)
    if challenge.nonce in previous or (previous and not challenge.stale):
        raise SIPAuthError(
            f"{method}: the credentials of {credentials.username!r} were refused "
            f"(challenged again by realm {challenge.realm!r})",
            response.status,
            response.reason or "",
        )
    previous.add(challenge.nonce)
    return challenge.header, credentials.authorization(challenge, method, uri)


class Registration:
    """One AOR's binding at a registrar (see the module docstring).

    Args:
        server: The :class:`~flowcat.transports.sip.SIPServer` whose socket and
            Contact are registered (its ``public_address`` and ``port``).
        registrar: ``(host, port)`` of the registrar.
        user: The user part of the address of record (and the digest username).
        credentials: Answer challenges with these (None: challenges fail).
        domain: The AOR's domain (default: the registrar's host).
        expires: Requested expiry, seconds.
        min_refresh: The refresh timer never fires sooner than this, seconds.
    """

    def __init__(
        self,
        server: SIPServer,
        registrar: tuple[str, int],
        user: str,
        credentials: DigestCredentials | None = None,
        *,
        domain: str | None = None,
        expires: int = 3600,
        min_refresh: float = 30.0,
    ) -> None:
        self.server = server
        self.registrar = registrar
        self.user = user
        self.credentials = credentials
        self.domain = domain or registrar[0]
        self.expires = expires
        self.min_refresh = min_refresh
        self.uri = f"sip:{host_port(self.domain, registrar[1]) if domain is None else self.domain}"
        self.aor = f"<sip:{user}@{self.domain}>"
        self.call_id = f"{new_tag()}{new_tag()}@flowcat"
        self.tag = new_tag()
        self.cseq = random.randint(1, 10000)  # noqa: S311 - a SIP CSeq/SDP session id start value: uniqueness, not secrecy (RFC 3261 8.1.1.5, RFC 4566 5.2)
        self.granted: int | None = None
        self.registered = False
        self.refreshes = 0
        self.last_error: Exception | None = None
        self._refresh: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def contact_uri(self) -> str:
        srv = self.server
        return f"sip:{self.user}@{host_port(srv.public_address, srv.port)}"

    def refresh_delay(self, granted: int) -> float:
        """When to refresh a binding granted for ``granted`` seconds."""
        return min(max(0.8 * granted, self.min_refresh), 0.9 * granted)

    def _message(self, expires: int, auth: tuple[str, str] | None) -> SIPMessage:
        srv = self.server
        self.cseq += 1
        headers = [
            ("Via", f"SIP/2.0/UDP {host_port(srv.public_address, srv.port)};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{self.aor};tag={self.tag}"),
            ("To", self.aor),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<{self.contact_uri}>"),
            ("Expires", str(expires)),
            ("User-Agent", srv.user_agent),
        ]
        if auth is not None:
            headers.append(auth)
        return SIPMessage(method="REGISTER", uri=self.uri, headers=headers)

    async def _send(self, expires: int) -> SIPMessage:
        nonces: set[str] = set()
        auth: tuple[str, str] | None = None
        for _ in range(_MAX_ROUNDS):
            msg = self._message(expires, auth)
            resp = await self.server.endpoint.request(msg, self.registrar).result
            if resp is None:
                raise SIPCallError(f"REGISTER to {host_port(*self.registrar)}: no answer", None, "timeout")
            status = resp.status or 0
            if status in (401, 407):
                auth = answer_challenge(resp, self.credentials, "REGISTER", self.uri, nonces)
                continue
            if status == 423 and (resp.get("Min-Expires") or "").isdigit():
                expires = max(expires, int(resp.get("Min-Expires") or 0))
                nonces.clear()
                continue
            if status == 403:
                raise SIPAuthError(
                    f"REGISTER {self.user!r} at {host_port(*self.registrar)}: 403 {resp.reason} "
                    "(wrong username or password?)",
                    403,
                    resp.reason or "",
                )
            if status >= 300:
                raise SIPCallError(
                    f"REGISTER {self.user!r} at {host_port(*self.registrar)}: {status} {resp.reason}",
                    status,
                    resp.reason or "",
                )
            return resp
        raise SIPCallError(f"REGISTER {self.user!r}: no success after {_MAX_ROUNDS} attempts", None, "loop")

    async def register(self) -> int:
        """Register (or refresh) now; returns the granted expiry in seconds and schedules
        the next refresh. Raises :class:`~flowcat.errors.SIPCallError` (or its
        :class:`~flowcat.errors.SIPAuthError`) on failure."""
        self._cancel_refresh()
        try:
            resp = await self._send(self.expires)
        except Exception as exc:
            self.registered = False
            self.last_error = exc
            raise
        granted = self._granted(resp)
        self.granted = granted
        self.registered = True
        self.last_error = None
        delay = self.refresh_delay(granted)
        logger.info("sip: registered %s at %s for %ds", self.aor, host_port(*self.registrar), granted)
        self._refresh = asyncio.get_running_loop().call_later(delay, self._start_refresh)
        return granted

    def _granted(self, resp: SIPMessage) -> int:
        for value in resp.get_all("Contact"):
            with contextlib.suppress(SIPParseError):
                na = parse_name_addr(value)
                if na.uri == self.contact_uri and na.params.get("expires", "").isdigit():
                    return int(na.params["expires"])
        header = (resp.get("Expires") or "").strip()
        return int(header) if header.isdigit() else self.expires

    def _start_refresh(self) -> None:
        self._refresh = None
        self._task = asyncio.get_running_loop().create_task(self._do_refresh(), name="sip-register")

    async def _do_refresh(self) -> None:
        self.refreshes += 1
        try:
            await self.register()
        except SIPCallError as exc:
            logger.warning("sip: refreshing the registration of %s failed: %s", self.aor, exc)
            retry = self.min_refresh
            self._refresh = asyncio.get_running_loop().call_later(retry, self._start_refresh)

    def _cancel_refresh(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None

    async def close(self) -> None:
        """Stop refreshing and remove the binding (``Expires: 0``); failures are logged."""
        self._cancel_refresh()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self.registered:
            return
        self.registered = False
        try:
            await self._send(0)
            logger.info("sip: unregistered %s", self.aor)
        except SIPCallError as exc:
            logger.warning("sip: un-REGISTER of %s failed: %s", self.aor, exc)
