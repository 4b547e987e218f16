"""Blind transfer with REFER (RFC 3515), both ways.

Out: flowcat dials a sipp UAS (Debian ``sip-tester``) and a ``TransferCallFrame`` is queued into
the call's pipeline: sipp checks the REFER's ``Refer-To``/``Referred-By``, answers ``202`` and
reports progress in NOTIFY sipfrags; on ``200`` flowcat hangs up (sipp's scenario only passes
if the BYE comes), on ``486`` the transfer is reported failed and the call goes on until
sipp hangs up. In: a REFER from a scripted peer is declined (``603``) by default, or with
``refer_policy="event"`` accepted (``202``) with NOTIFYs carrying the app handler's status.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from _helpers import missing
from _sip_peer import App, Dialog, Peer, request, status
from flowcat.frames import TransferCallFrame
from flowcat.transports.sip import SIPServer, Timers
from flowcat.transports.sip._refer import refer_uri, sipfrag_status

SIPP = shutil.which("sipp")
if SIPP is None:
    missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(60)]

SCEN = Path(__file__).parent / "fixtures" / "sip"
RTP = (34600, 34800)
TARGET = "sip:bob-desk@example.test"


def test_refer_to_uri_and_sipfrag_parsing() -> None:
    assert refer_uri("sip:x@y", "sip:a@b:5070") == "sip:x@y"
    assert refer_uri("tel:+15551234", "sip:a@b") == "tel:+15551234"
    assert refer_uri("+15551234", "sip:a@carrier.test:5070") == "sip:+15551234@carrier.test:5070"
    assert sipfrag_status(b"SIP/2.0 200 OK\r\n") == (200, "OK")
    assert sipfrag_status(b"SIP/2.0 486 Busy Here") == (486, "Busy Here")
    assert sipfrag_status(b"garbage") is None and sipfrag_status(b"") is None


async def _sipp_uas(scenario: str) -> tuple[asyncio.subprocess.Process, int]:
    from test_sip_interop import free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(SIPP), "-sf", str(SCEN / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-m", "1",
        "-timeout", "20s", "-timeout_error", "-nostdin",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    return proc, port


async def _transfer_call(scenario: str) -> tuple[int, str, SIPServer, App, list[tuple[Any, ...]]]:
    proc, port = await _sipp_uas(scenario)
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.1))
    await srv.start()
    outcomes: list[tuple[Any, ...]] = []
    try:
        call = await srv.dial(f"sip:bob@127.0.0.1:{port}")
        await asyncio.wait_for(app.called.wait(), 5)
        transport, task, _ = app.calls[0]

        async def on_transfer(_t: Any, target: str, code: int, reason: str) -> None:
            outcomes.append((target, code, reason))

        transport.add_event_handler("on_transfer", on_transfer)
        await task.queue_frames([TransferCallFrame(target=TARGET)])
        await asyncio.wait_for(call.ended.wait(), 15)
        out, _ = await asyncio.wait_for(proc.communicate(), 25)
        return proc.returncode or 0, out.decode(errors="replace")[-1500:], srv, app, outcomes
    finally:
        if proc.returncode is None:
            proc.kill()
        await srv.stop()


async def test_transfer_call_frame_sends_refer_and_hangs_up_on_200_sipfrag() -> None:
    rc, out, srv, _app, outcomes = await _transfer_call("uas_refer_ok.xml")
    assert rc == 0, out  # sipp saw REFER with the right Refer-To, and then flowcat's BYE
    assert outcomes == [(TARGET, 200, "OK")]
    assert srv.calls_ended == 1


async def test_a_failed_transfer_is_reported_and_the_call_goes_on() -> None:
    rc, out, _srv, app, outcomes = await _transfer_call("uas_refer_busy.xml")
    assert rc == 0, out  # the call lasted until sipp's own BYE, answered 200
    assert outcomes == [(TARGET, 486, "Busy Here")]
    transport = app.calls[0][0]
    assert transport.media is None  # ended by the peer's BYE, not by the transfer


# --- REFER from the peer ---------------------------------------------------------------------


async def _answered(policy: str, on_refer: Any = None) -> tuple[SIPServer, Peer, Dialog, str]:
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.05, t2=0.2, t4=0.2), refer_policy=policy)
    await srv.start()
    peer = await Peer.open()
    dialog = Dialog(peer, srv.port)
    dialog.send_invite(rtp_port=40100)
    (ok,) = await peer.expect(status(200))
    tag = (ok.get("To") or "").split("tag=")[-1]
    dialog.ack(tag)
    await asyncio.wait_for(app.called.wait(), 5)
    if on_refer is not None:
        app.calls[0][0].add_event_handler("on_refer", on_refer)
    return srv, peer, dialog, tag


def _send_refer(dialog: Dialog, tag: str, target: str = "sip:carol@example.test") -> None:
    dialog.cseq += 1
    branch = "z9hG4bK" + secrets.token_hex(6)
    dialog.peer.send(
        f"REFER sip:agent@127.0.0.1:{dialog.server_port} SIP/2.0\r\n"
        + dialog._headers("REFER", dialog.cseq, branch, tag)
        + f"Refer-To: <{target}>\r\nContent-Length: 0\r\n\r\n",
        dialog.server_port,
    )


async def test_an_inbound_refer_is_declined_by_default() -> None:
    srv, peer, dialog, tag = await _answered("decline")
    try:
        _send_refer(dialog, tag)
        (resp,) = await peer.expect(status(603, "REFER"))
        assert resp.reason == "Decline"
        assert not [m for m in peer.inbox if m.method == "NOTIFY"]
        assert srv.active_calls == 1  # the call goes on
    finally:
        peer.close()
        await srv.stop()


async def test_an_inbound_refer_with_the_event_policy_reports_the_handlers_status() -> None:
    asked: list[str] = []

    async def on_refer(_t: Any, target: str) -> int:
        asked.append(target)
        return 200

    srv, peer, dialog, tag = await _answered("event", on_refer)
    try:
        _send_refer(dialog, tag)
        await peer.expect(status(202, "REFER"))
        notifies = await peer.expect(request("NOTIFY"), count=2)
        assert asked == ["sip:carol@example.test"]
        frags = {n.body.split(b"\r\n")[0] for n in notifies}
        assert frags == {b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"}
        for n in notifies:
            assert n.get("Event") == "refer" and (n.get("Content-Type") or "").startswith("message/sipfrag")
            assert n.call_id == dialog.call_id
        final = next(n for n in notifies if b"200" in n.body)
        assert (final.get("Subscription-State") or "").startswith("terminated")
    finally:
        peer.close()
        await srv.stop()


async def test_a_refer_outside_any_dialog_is_481() -> None:
    srv = SIPServer(App(), port=0, rtp_ports=RTP, timers=Timers(t1=0.05, t2=0.2, t4=0.2))
    await srv.start()
    peer = await Peer.open()
    try:
        _send_refer(Dialog(peer, srv.port), "")
        await peer.expect(status(481, "REFER"))
    finally:
        peer.close()
        await srv.stop()
