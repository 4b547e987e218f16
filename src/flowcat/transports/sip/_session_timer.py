"""RFC 4028 session timers: keep a call alive by refreshing it, hang up one whose peer vanished.

**Negotiation.** An inbound INVITE's ``Session-Expires`` (compact ``x``) shorter than
this side's ``min_se`` is refused ``422 Session Interval Too Small`` with ``Min-SE``
(:func:`too_small`). Otherwise the interval is the caller's, else
``session_expires`` (raised to the caller's ``Min-SE``); the refresher is the one
the caller named (``refresher=uac|uas``), else this side (``uas``: the only choice
when the caller does not support ``timer``). The 200 OK says ``Session-Expires:
N;refresher=…``, plus ``Require: timer`` when the caller listed ``timer`` in
``Supported``. An outbound INVITE offers ``Session-Expires`` and ``Min-SE`` with
``Supported: timer`` (and is sent again with the larger interval after a ``422``);
the 2xx decides, and without ``Session-Expires`` in it there is no timer.

**Running.** As the refresher, this side refreshes at half the interval — with
``UPDATE`` (when the peer's ``Allow`` lists it and ``refresh_method`` is
``"UPDATE"``), else a re-INVITE with the current SDP — each refresh naming itself
refresher (``refresher=uac`` of that transaction). A 2xx starts a new interval (with
the interval and refresher the response names); a ``422`` raises the interval to
the response's ``Min-SE`` and refreshes again at once; ``408``, ``481`` or no answer
end the call (BYE); any other failure leaves the session to expire. When the
peer refreshes, a re-INVITE or UPDATE from it restarts the interval (and is
answered with the session headers); with none before ``interval − min(32,
interval/3)`` seconds the call is over: ``on_expired`` hangs up with BYE.
One ``call_later`` handle per call, re-armed at each refresh; nothing per packet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._message import SIPMessage

__all__ = ["SessionTimer", "SessionTimers", "parse_session_expires", "supports_timer", "too_small"]

logger = logging.getLogger("flowcat.transports.sip")


@dataclass(frozen=True)
class SessionTimers:
    """Session timer settings of a :class:`~flowcat.transports.sip.SIPServer`.

    Args:
        session_expires: Interval (s) asked for when the caller asked none (and offered
            on outbound calls).
        min_se: Shortest interval accepted (s); a shorter ``Session-Expires`` gets ``422``
            with this ``Min-SE`` (RFC 4028 §5: at least 90 in production).
        refresh_method: ``"UPDATE"`` or ``"INVITE"``: how this side refreshes as the refresher.
    """

    session_expires: int = 1800
    min_se: int = 90
    refresh_method: str = "UPDATE"


def parse_session_expires(value: str | None) -> tuple[int, str | None] | None:
    """``"1800;refresher=uac"`` → ``(1800, "uac")``; None when absent or unusable."""
    if not value:
        return None
    head, *params = value.split(";")
    head = head.strip()
    if not head.isdigit():
        return None
    refresher = None
    for p in params:
        name, _, v = p.partition("=")
        if name.strip().lower() == "refresher" and v.strip().lower() in ("uac", "uas"):
            refresher = v.strip().lower()
    return int(head), refresher


def _min_se(msg: SIPMessage) -> int:
    raw = (msg.get("Min-SE") or "").split(";")[0].strip()
    return int(raw) if raw.isdigit() else 0


def supports_timer(msg: SIPMessage) -> bool:
    """Whether ``msg`` lists ``timer`` in ``Supported`` or ``Require``."""
    for name in ("Supported", "Require"):
        for value in msg.get_all(name):
            if any(t.strip().lower() == "timer" for t in value.split(",")):
                return True
    return False


def too_small(request: SIPMessage, settings: SessionTimers) -> bool:
    """Whether ``request`` asks a ``Session-Expires`` below ``settings.min_se`` (answer ``422``)."""
    se = parse_session_expires(request.get("Session-Expires"))
    return se is not None and se[0] < settings.min_se


def _allows_update(msg: SIPMessage) -> bool:
    return any(t.strip().upper() == "UPDATE" for v in msg.get_all("Allow") for t in v.split(","))


Refresh = Callable[[str, list[tuple[str, str]]], Awaitable[SIPMessage | None]]


class SessionTimer:
    """The session timer of one call (see the module docstring).

    Args:
        settings: The server's settings.
        interval: The negotiated interval (s).
        we_refresh: Whether this side is the refresher.
        use_update: Refresh with UPDATE (else re-INVITE).
        refresh: ``(method, headers) → final response or None``: sends one refresh in the dialog.
        on_expired: Called once when the session expired or a refresh got 408/481/no answer.
        name: For logs.
    """

    def __init__(
        self,
        settings: SessionTimers,
        interval: int,
        we_refresh: bool,
        use_update: bool,
        refresh: Refresh,
        on_expired: Callable[[str], None],
        name: str = "",
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.we_refresh = we_refresh
        self.use_update = use_update
        self._refresh = refresh
        self._on_expired = on_expired
        self.name = name
        self.refreshes_sent = 0
        self.refreshes_received = 0
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ construction

    @classmethod
    def for_invite(
        cls, invite: SIPMessage, settings: SessionTimers, refresh: Refresh, on_expired: Callable[[str], None],
        name: str = "",
    ) -> tuple[SessionTimer, list[tuple[str, str]]]:  # fmt: skip
        """The timer of an inbound call and the headers of its 2xx (``too_small`` checked before)."""
        se = parse_session_expires(invite.get("Session-Expires"))
        supported = supports_timer(invite)
        if se is not None:
            interval, refresher = se
        else:
            interval, refresher = max(settings.session_expires, settings.min_se, _min_se(invite)), None
        if refresher is None or not supported:
            refresher = "uas"
        timer = cls(settings, interval, refresher == "uas", _allows_update(invite), refresh, on_expired, name)
        headers = [("Session-Expires", f"{interval};refresher={refresher}")]
        if supported:
            headers.append(("Require", "timer"))
        return timer, headers

    @classmethod
    def for_answer(
        cls, response: SIPMessage, settings: SessionTimers, refresh: Refresh, on_expired: Callable[[str], None],
        name: str = "",
    ) -> SessionTimer | None:  # fmt: skip
        """The timer of an outbound call from its 2xx (None: the callee runs no session timer)."""
        se = parse_session_expires(response.get("Session-Expires"))
        if se is None:
            return None
        interval, refresher = se
        we = refresher != "uas"  # uac: this side (the INVITE's sender); absent: RFC 4028 §7.2, the UAC
        return cls(settings, interval, we, _allows_update(response), refresh, on_expired, name)

    @staticmethod
    def offer_headers(settings: SessionTimers, interval: int | None = None) -> list[tuple[str, str]]:
        """Headers of an outbound INVITE offering a session timer."""
        return [
            ("Supported", "timer"),
            ("Session-Expires", str(interval or max(settings.session_expires, settings.min_se))),
            ("Min-SE", str(settings.min_se)),
        ]

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """(Re)start the interval: refresh at half of it, or expect a refresh before its end."""
        self.stop_timer()
        loop = asyncio.get_running_loop()
        if self.we_refresh:
            self._handle = loop.call_later(self.interval / 2, self._fire_refresh)
        else:
            self._handle = loop.call_later(
                self.interval - min(32, self.interval / 3), self._expire, "expired"
            )

    def stop_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def stop(self) -> None:
        """The call is over."""
        self.stop_timer()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._task = None

    def on_refresh_request(self, request: SIPMessage) -> list[tuple[str, str]] | None:
        """A re-INVITE or UPDATE from the peer: a refresh. Returns the headers of its 2xx, or
        None when its ``Session-Expires`` is too small (answer ``422`` with ``Min-SE``)."""
        se = parse_session_expires(request.get("Session-Expires"))
        if se is not None:
            if se[0] < self.settings.min_se:
                return None
            self.interval = se[0]
            refresher = se[1] or "uac"
            self.we_refresh = refresher == "uas"  # uas of this transaction: this side
        else:
            refresher = "uas" if self.we_refresh else "uac"
        self.refreshes_received += 1
        self.start()
        headers = [("Session-Expires", f"{self.interval};refresher={refresher}")]
        if supports_timer(request):
            headers.append(("Require", "timer"))
        return headers

    def _fire_refresh(self) -> None:
        self._handle = None
        self._task = asyncio.get_running_loop().create_task(
            self._do_refresh(), name=f"sip-refresh-{self.name}"
        )

    async def _do_refresh(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.interval / 2
        for _ in range(3):  # 422 twice at most, then give up and let the session expire
            method = "UPDATE" if self.use_update and self.settings.refresh_method == "UPDATE" else "INVITE"
            headers = [
                ("Session-Expires", f"{self.interval};refresher=uac"),
                ("Min-SE", str(self.settings.min_se)),
                ("Supported", "timer"),
            ]
            self.refreshes_sent += 1
            resp = await self._refresh(method, headers)
            code = resp.status or 0 if resp is not None else 0
            if resp is None or code in (408, 481):
                self._expire(f"refresh {method} failed ({code or 'no answer'})")
                return
            if code == 422:
                self.interval = max(self.interval, _min_se(resp))
                continue
            if code >= 300:
                logger.warning(
                    "%s: session refresh %s answered %d; the session expires", self.name, method, code
                )
                self._handle = asyncio.get_running_loop().call_at(deadline, self._expire, "expired")
                return
            se = parse_session_expires(resp.get("Session-Expires"))
            if se is not None:
                self.interval = se[0]
                self.we_refresh = se[1] != "uas"
            self.start()
            return
        self._handle = asyncio.get_running_loop().call_at(deadline, self._expire, "expired")

    def _expire(self, why: str) -> None:
        self._handle = None
        if self.expired:
            return
        self.expired = True
        logger.warning("%s: session timer: %s after %d s; hanging up", self.name, why, self.interval)
        self._on_expired(why)
