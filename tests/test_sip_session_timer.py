"""RFC 4028 session timers, on virtual time (production intervals: Min-SE 90 s) with a scripted peer,
and against sipp in real time (intervals of 2 s).

* the peer refreshes: its UPDATE restarts the interval; when it stops, flowcat sends BYE at
  ``interval - min(32, interval/3)`` after the last refresh;
* flowcat refreshes (refresher=uas): UPDATE at half the interval, again after the 2xx; a ``422``
  makes it refresh at once with the larger interval; a ``481`` ends the call (BYE);
* ``422`` + ``Min-SE`` for an INVITE asking less than the minimum (sipp retries and is answered);
* sipp: flowcat refreshes with UPDATE twice; sipp stops refreshing and gets flowcat's BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from _helpers import missing
from _sip_peer import App, Dialog, Peer, request, status
from flowcat.testing import run_virtual
from flowcat.transports.sip import SessionTimers, SIPMessage, SIPServer, Timers
from flowcat.transports.sip._session_timer import parse_session_expires
from flowcat.transports.sip._transaction import response_to

pytestmark = [pytest.mark.timeout(60)]

SCEN = Path(__file__).parent / "fixtures" / "sip"
RTP = (35100, 35300)
LONG = 400.0  # virtual seconds a peer waits for a message


def _invite(dialog: Dialog, extra: str) -> str:
    text = dialog.invite(rtp_port=40200)
    head, sep, rest = text.partition("Content-Type:")
    return head + extra + sep + rest


@contextlib.asynccontextmanager
async def _answered(
    settings: SessionTimers, extra: str
) -> AsyncIterator[tuple[SIPServer, Peer, Dialog, str, dict[str, str | None]]]:
    """A call answered under ``settings`` (the INVITE carrying ``extra``): the server, the peer, its dialog,
    the To tag and the 200's session-timer headers. Leaving it closes the peer and stops the server."""
    srv = SIPServer(App(), port=0, rtp_ports=RTP, timers=Timers(t1=0.5, t2=4, t4=5), session_timers=settings)
    await srv.start()
    peer = await Peer.open()
    try:
        dialog = Dialog(peer, srv.port)
        peer.send(_invite(dialog, extra), srv.port)
        (ok,) = await peer.expect(status(200), timeout=LONG)
        tag = (ok.get("To") or "").split("tag=")[-1]
        dialog.ack(tag)
        headers = {
            n: ", ".join(ok.get_all(n)) or None for n in ("Session-Expires", "Require", "Supported", "Allow")
        }
        yield srv, peer, dialog, tag, headers
    finally:
        peer.close()
        await srv.stop()


def _sipp_server(session_expires: int, min_se: int) -> SIPServer:
    """A server for the sipp tests (real time, short intervals); skips (fails under CI) without sipp."""
    if SIPP is None:
        missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")
    return SIPServer(
        App(),
        port=0,
        rtp_ports=RTP,
        timers=Timers(t1=0.1),
        session_timers=SessionTimers(session_expires=session_expires, min_se=min_se),
    )


def _update(dialog: Dialog, tag: str, se: str) -> None:
    dialog.cseq += 1
    dialog.peer.send(
        f"UPDATE sip:agent@127.0.0.1:{dialog.server_port} SIP/2.0\r\n"
        + dialog._headers("UPDATE", dialog.cseq, "z9hG4bK" + secrets.token_hex(6), tag)
        + f"Session-Expires: {se}\r\nSupported: timer\r\nContent-Length: 0\r\n\r\n",
        dialog.server_port,
    )


def _answer(dialog: Dialog, req: SIPMessage, code: int, reason: str, **headers: str) -> None:
    resp = response_to(req, code, reason)
    for name, value in headers.items():
        resp.add(name.replace("_", "-"), value)
    dialog.peer.send(resp.encode(), dialog.server_port)


def test_session_expires_parsing() -> None:
    assert parse_session_expires("1800;refresher=uac") == (1800, "uac")
    assert parse_session_expires(" 90 ; refresher = UAS") == (90, "uas")
    assert parse_session_expires("120") == (120, None)
    assert parse_session_expires("soon") is None and parse_session_expires(None) is None


def test_the_peer_refreshes_and_a_peer_that_stops_is_hung_up_on_virtual_time() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _answered(
            SessionTimers(session_expires=1800, min_se=90),
            "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\nMin-SE: 90\r\n",
        ) as (srv, peer, dialog, tag, got):
            assert got["Session-Expires"] == "90;refresher=uac" and got["Require"] == "timer"
            assert "UPDATE" in (got["Allow"] or "")
            t0 = loop.time()
            await asyncio.sleep(40)
            _update(dialog, tag, "90;refresher=uac")
            (ok,) = await peer.expect(status(200, "UPDATE"), timeout=LONG)
            assert ok.get("Session-Expires") == "90;refresher=uac"
            (bye,) = await peer.expect(request("BYE"), timeout=LONG)
            waited = loop.time() - t0
            assert 99.5 <= waited <= 101, waited  # 40 s, then 90 - min(32, 30) = 60 s without a refresh
            assert not [m for m in peer.inbox if m.method == "UPDATE"]  # the peer was the refresher
            _answer(dialog, bye, 200, "OK")
            await asyncio.wait_for(srv.wait_calls_ended(), 30)

    run_virtual(main())


def test_flowcat_refreshes_with_update_handles_422_and_hangs_up_on_481_on_virtual_time() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _answered(
            SessionTimers(session_expires=120, min_se=90),
            "Supported: timer\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n",
        ) as (srv, peer, dialog, tag, got):
            assert got["Session-Expires"] == "120;refresher=uas" and got["Require"] == "timer"
            t0 = loop.time()
            (first,) = await peer.expect(request("UPDATE"), timeout=LONG)
            assert 59.5 <= loop.time() - t0 <= 61  # half of 120 s
            assert first.get("Session-Expires") == "120;refresher=uac" and first.get("Min-SE") == "90"
            assert first.call_id == dialog.call_id
            _answer(dialog, first, 200, "OK", Session_Expires="120;refresher=uac")
            (_, second) = await peer.expect(request("UPDATE"), count=2, timeout=LONG)
            assert 119.5 <= loop.time() - t0 <= 121
            _answer(dialog, second, 422, "Session Interval Too Small", Min_SE="150")
            (_, _, third) = await peer.expect(request("UPDATE"), count=3, timeout=LONG)
            assert loop.time() - t0 <= 122  # at once, with the callee's minimum
            assert third.get("Session-Expires") == "150;refresher=uac"
            _answer(dialog, third, 200, "OK", Session_Expires="150;refresher=uac")
            (*_, fourth) = await peer.expect(request("UPDATE"), count=4, timeout=LONG)
            assert 194.5 <= loop.time() - t0 <= 196  # 75 s later
            _answer(dialog, fourth, 481, "Call/Transaction Does Not Exist")
            (bye,) = await peer.expect(request("BYE"), timeout=LONG)
            assert loop.time() - t0 <= 197
            _answer(dialog, bye, 200, "OK")
            await asyncio.wait_for(srv.wait_calls_ended(), 30)

    run_virtual(main())


def test_without_update_in_the_peers_allow_flowcat_refreshes_with_a_reinvite_and_acks_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _answered(
            SessionTimers(session_expires=100, min_se=90), "Supported: timer\r\nAllow: INVITE, ACK, BYE\r\n"
        ) as (srv, peer, dialog, tag, got):
            assert got["Session-Expires"] == "100;refresher=uas"
            t0 = loop.time()
            (reinvite,) = await peer.expect(request("INVITE"), timeout=LONG)
            assert 49.5 <= loop.time() - t0 <= 51
            assert reinvite.get("Session-Expires") == "100;refresher=uac" and b"m=audio" in reinvite.body
            resp = response_to(reinvite, 200, "OK")
            resp.add("Session-Expires", "100;refresher=uac")
            resp.add("Content-Type", "application/sdp")
            resp.body = dialog.sdp(rtp_port=40200).encode()
            peer.send(resp.encode(), dialog.server_port)
            (ack,) = await peer.expect(request("ACK"), timeout=LONG)
            assert ack.cseq == (reinvite.cseq[0], "ACK") and ack.call_id == dialog.call_id
            assert not [m for m in peer.inbox if m.method == "UPDATE"]
            (*_, again) = await peer.expect(request("INVITE"), count=2, timeout=LONG)
            assert 99.5 <= loop.time() - t0 <= 101 and again.cseq[0] == reinvite.cseq[0] + 1

    run_virtual(main())


async def test_an_invite_asking_less_than_min_se_gets_422() -> None:
    srv = SIPServer(
        App(), port=0, rtp_ports=RTP, timers=Timers(t1=0.05), session_timers=SessionTimers(min_se=90)
    )
    await srv.start()
    peer = await Peer.open()
    try:
        dialog = Dialog(peer, srv.port)
        peer.send(_invite(dialog, "Supported: timer\r\nSession-Expires: 60\r\n"), srv.port)
        (resp,) = await peer.expect(status(422))
        assert resp.get("Min-SE") == "90" and srv.active_calls == 0
    finally:
        peer.close()
        await srv.stop()


# --- sipp, real time ---------------------------------------------------------------------------

SIPP = shutil.which("sipp")


async def _sipp(scenario: str, port: int) -> tuple[int, str]:
    from test_sip_interop import free_port

    proc = await asyncio.create_subprocess_exec(
        str(SIPP), "-sf", str(SCEN / scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1",
        "-p", str(free_port()), "-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")[-1500:]


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [("uac_timer_uas_refreshes.xml", "remote BYE"), ("uac_timer_vanish.xml", "session timer: expired")],
)
async def test_session_timers_against_sipp(scenario: str, reason: str) -> None:
    """uas_refreshes: sipp asks 1 s (below Min-SE 2: 422), retries with 2 s and no refresher;
    flowcat refreshes with UPDATE twice (sipp checks Session-Expires), then sipp hangs up.
    vanish: sipp is the refresher (2 s) and never refreshes: flowcat's BYE comes."""
    srv = _sipp_server(2, 2)
    await srv.start()
    reasons: list[str] = []
    call_ended = srv.call_ended

    def record(call: Any) -> None:
        reasons.append(call.end_reason)
        call_ended(call)

    srv.call_ended = record  # type: ignore[method-assign]
    try:
        rc, out = await _sipp(scenario, srv.port)
        assert rc == 0, out
        await asyncio.wait_for(srv.wait_calls_ended(), 10)
        assert reasons == [reason]
    finally:
        await srv.stop()


async def test_an_outbound_call_retries_422_and_refreshes_as_the_callee_asks() -> None:
    """flowcat dials sipp (uas_timer_422.xml): Session-Expires 2 → 422 Min-SE 3 → again with 3 →
    200 naming flowcat refresher → flowcat's UPDATE at 1.5 s (checked by sipp) → flowcat hangs up."""
    srv = _sipp_server(2, 1)
    from test_sip_refer import _sipp_uas

    proc, port = await _sipp_uas("uas_timer_422.xml")
    await srv.start()
    try:
        call = await srv.dial(f"sip:bob@127.0.0.1:{port}")
        timer = call.session_timer
        assert timer is not None and timer.we_refresh and timer.interval == 3
        for _ in range(100):  # bounded: the refresh is due at 1.5 s
            if timer.refreshes_sent and timer._task is not None and timer._task.done():
                break
            await asyncio.sleep(0.05)
        assert timer.refreshes_sent == 1 and not timer.expired
        await call.hangup()
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, out.decode(errors="replace")[-1500:]
    finally:
        if proc.returncode is None:
            proc.kill()
        await srv.stop()
