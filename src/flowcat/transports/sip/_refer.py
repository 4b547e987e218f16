"""Call transfer with REFER (RFC 3515), both directions.

**Blind transfer out** (:func:`transfer`): a ``TransferCallFrame`` reaching a SIP
call's output sends ``REFER`` in the call's dialog with ``Refer-To: <target>`` (a
SIP URI as given; a bare number or user becomes ``sip:TARGET@<the peer's host>``)
and ``Referred-By`` (this side). ``202``/``200`` means the peer accepted: it then
reports the new call's progress in ``NOTIFY`` requests (``Event: refer``, a
``message/sipfrag`` body such as ``SIP/2.0 180 Ringing``), each answered ``200``.
A final sipfrag ``2xx`` completes the transfer: this side hangs up (``BYE``) and
the pipeline ends. A REFER refused (``4xx``–``6xx``) or unanswered (Timer F), a
final sipfrag ``3xx``–``6xx``, or no final NOTIFY within ``notify_timeout`` is a
failed transfer: the call goes on. Either way the transport's ``on_transfer``
handler gets ``(transport, target, status, reason)`` (status 0: no answer) and a
line is logged.

**REFER in** (:func:`on_refer`): the peer asks this side to call someone. With
the server's ``refer_policy="decline"`` (the default) it is answered
``603 Decline``. With ``"event"`` it is answered ``202 Accepted``, a ``NOTIFY``
(``SIP/2.0 100 Trying``) follows, and the transport's ``on_refer(transport,
target)`` handler decides: the SIP status it returns (an int; None or no handler:
``603``) goes back in the final ``NOTIFY`` (subscription terminated).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ...errors import SIPParseError
from ._headers import parse_name_addr, parse_uri

if TYPE_CHECKING:
    from ._call import SIPCall
    from ._transaction import ServerTransaction

__all__ = ["on_notify", "on_refer", "refer_uri", "sipfrag_status", "transfer"]

logger = logging.getLogger("flowcat.transports.sip")

NOTIFY_TIMEOUT = 32.0
"""Seconds a transfer waits for the final NOTIFY after the REFER was accepted."""


def refer_uri(target: str, peer_uri: str) -> str:
    """The ``Refer-To`` URI of ``target``: a ``sip:``/``sips:``/``tel:`` URI as is, else
    ``sip:TARGET@host`` on the host of ``peer_uri`` (the dialog's remote URI)."""
    t = target.strip()
    if t.lower().startswith(("sip:", "sips:", "tel:")):
        return t
    try:
        uri = parse_uri(peer_uri)
        host = f"[{uri.host}]" if ":" in uri.host else uri.host
        if uri.port:
            host = f"{host}:{uri.port}"
    except SIPParseError:
        host = "invalid"
    return f"sip:{t}@{host}"


def sipfrag_status(body: bytes) -> tuple[int, str] | None:
    """The status line of a ``message/sipfrag`` body (``SIP/2.0 200 OK``), or None."""
    line = body.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].upper().startswith("SIP/") or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


async def transfer(call: SIPCall, target: str, notify_timeout: float = NOTIFY_TIMEOUT) -> tuple[int, str]:
    """Blind-transfer ``call`` to ``target`` (see the module docstring); returns the final
    status and reason (the REFER's when refused, the sipfrag's otherwise; 0 when none came)."""
    srv = call.server
    dialog = call.dialog
    if dialog.terminated:
        return 0, "call already ended"
    uri = refer_uri(target, dialog.remote_uri)
    msg, addr = dialog.request("REFER", srv.public_address, srv.port, srv.contact)
    msg.add("Refer-To", f"<{uri}>")
    msg.add("Referred-By", f"<{dialog.local_uri}>")
    msg.add("User-Agent", srv.user_agent)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[tuple[int, str]] = loop.create_future()
    call.refer_waiter = waiter
    try:
        logger.info("%s: transferring to %s (REFER)", call.call_id, uri)
        resp = await srv.endpoint.request(msg, addr).result
        if resp is None:
            return 0, "REFER not answered"
        if (resp.status or 0) >= 300:
            return int(resp.status or 0), resp.reason or ""
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), notify_timeout)
        except TimeoutError:
            return 0, "no final NOTIFY"
    finally:
        call.refer_waiter = None


def on_notify(call: SIPCall, txn: ServerTransaction) -> None:
    """A NOTIFY in the call's dialog: answered ``200`` (``489`` for an event other than
    refer); a final sipfrag status completes the pending transfer."""
    req = txn.request
    event = (req.get("Event") or "").split(";", 1)[0].strip().lower()
    if event != "refer":
        call.reply(txn, 489, "Bad Event")
        return
    call.reply(txn, 200, "OK")
    got = sipfrag_status(req.body)
    if got is None:
        return
    logger.info("%s: transfer progress: %d %s", call.call_id, *got)
    waiter = call.refer_waiter
    if got[0] >= 200 and waiter is not None and not waiter.done():
        waiter.set_result(got)


def on_refer(call: SIPCall, txn: ServerTransaction) -> None:
    """A REFER in the call's dialog (see the module docstring)."""
    req = txn.request
    try:
        target = parse_name_addr(req.get("Refer-To") or "").uri
    except SIPParseError:
        target = ""
    if not target:
        call.reply(txn, 400, "Bad Request")
        return
    transport = call.transport
    if call.server.refer_policy != "event" or transport is None:
        logger.info("%s: declined a REFER to %s", call.call_id, target)
        call.reply(txn, 603, "Decline")
        return
    call.reply(txn, 202, "Accepted")
    asyncio.get_running_loop().create_task(_refer_event(call, target), name=f"sip-refer-{call.call_id}")


async def _refer_event(call: SIPCall, target: str) -> None:
    _notify(call, 100, "Trying", final=False)
    status = 603
    transport = call.transport
    try:
        if transport is not None and transport.has_event_handler("on_refer"):
            got = await transport.refer_requested(target)
            status = int(got) if got else 603
    except Exception:
        logger.exception("%s: on_refer handler failed", call.call_id)
        status = 500
    _notify(call, status, _REASONS.get(status, "Unknown"), final=True)


_REASONS = {200: "OK", 486: "Busy Here", 500: "Server Internal Error", 603: "Decline"}


def _notify(call: SIPCall, status: int, reason: str, *, final: bool) -> None:
    dialog = call.dialog
    if dialog.terminated:
        return
    srv = call.server
    msg, addr = dialog.request("NOTIFY", srv.public_address, srv.port, srv.contact)
    msg.add("Event", "refer")
    msg.add("Subscription-State", "terminated;reason=noresource" if final else "active;expires=60")
    msg.add("Content-Type", "message/sipfrag;version=2.0")
    msg.body = f"SIP/2.0 {status} {reason}\r\n".encode()
    srv.endpoint.request(msg, addr)
