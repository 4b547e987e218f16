"""The UAC side of the SIP stack against a scripted UDP peer: digest auth (RFC 2617/7616
vectors), REGISTER (challenge, refresh, un-REGISTER, 403, repeated challenge), outbound
INVITE (407 retry with the ACK on the same branch, 2xx ACK on a new one, BYE both ways,
CANCEL, Timer B) and the SDP offer."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import pytest

from _sip_peer import App, Peer, request
from flowcat.errors import SIPAuthError, SIPCallError
from flowcat.transports.sip import (
    DigestCredentials,
    SIPMessage,
    SIPServer,
    Timers,
    negotiate,
    parse_challenge,
    parse_offer,
)
from flowcat.transports.sip._sdp import build_offer

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(30)]

RTP = (33000, 33200)


# --------------------------------------------------------------------------- digest


def test_rfc2617_md5_qop_auth_vector() -> None:
    ch = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = DigestCredentials("Mufasa", "Circle Of Life").authorization(
        ch, "GET", "/dir/index.html", cnonce="0a4f113b"
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "nc=00000001" in value and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    ch = parse_challenge(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    value = DigestCredentials("Mufasa", "Circle of Life").authorization(
        ch, "GET", "/dir/index.html", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    )
    assert f'response="{expected}"' in value and f"algorithm={algorithm}" in value


def test_nonce_count_increments_and_resets() -> None:
    creds = DigestCredentials("a", "pw")
    ch = parse_challenge('Digest realm="r", nonce="n1", qop=auth')
    assert "nc=00000001" in creds.authorization(ch, "REGISTER", "sip:x")
    assert "nc=00000002" in creds.authorization(ch, "REGISTER", "sip:x")
    ch2 = parse_challenge('Digest realm="r", nonce="n2", qop=auth')
    assert "nc=00000001" in creds.authorization(ch2, "REGISTER", "sip:x")
    assert "pw" not in repr(creds)


@pytest.mark.parametrize(
    "value",
    ["Basic realm=x", 'Digest realm="r"', 'Digest realm="r", nonce="n", algorithm=SHA-512-256x',
     'Digest realm="r", nonce="n", qop="auth-int"'],
)  # fmt: skip
def test_unusable_challenges_raise_sip_auth_error(value: str) -> None:
    with pytest.raises(SIPAuthError):
        parse_challenge(value)


# --------------------------------------------------------------------------- SDP offer


def test_offer_round_trips_through_negotiation() -> None:
    offer = build_offer("127.0.0.1", 33000, ("PCMA", "PCMU"), session_id=7)
    neg = negotiate(parse_offer(offer))
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt, neg.remote) == (
        "PCMA",
        8,
        101,
        ("127.0.0.1", 33000),
    )
    assert b"m=audio 33000 RTP/AVP 8 0 101\r\n" in offer and b"a=sendrecv" in offer


# --------------------------------------------------------------------------- scripted registrar


def reply(peer: Peer, req: SIPMessage, status: int, reason: str, *extra: str, body: str = "") -> None:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for v in req.get_all(name):
            if name == "To" and status > 100 and ";tag=" not in v:
                v += ";tag=peer1"
            lines.append(f"{name}: {v}")
    lines += list(extra)
    lines.append(f"Content-Length: {len(body)}")
    via = req.get("Via") or ""
    port = (
        int(re.search(r"rport=(\d+)", via).group(1))
        if "rport=" in via
        else int(via.split(":")[1].split(";")[0])
    )  # type: ignore[union-attr]
    peer.send("\r\n".join(lines) + "\r\n\r\n" + body, port)


@pytest.fixture
async def uac() -> AsyncIterator[tuple[SIPServer, Peer, App]]:
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.05, t2=0.4, t4=0.2))
    await srv.start()
    peer = await Peer.open()
    try:
        yield srv, peer, app
    finally:
        await srv.stop(timeout=2)
        peer.close()


CHALLENGE = 'WWW-Authenticate: Digest realm="flowcat.test", nonce="abc123", qop="auth", algorithm=SHA-256'


async def test_register_answers_401_refreshes_and_unregisters(
    uac: tuple[SIPServer, Peer, App], caplog: pytest.LogCaptureFixture
) -> None:
    srv, peer, _ = uac
    caplog.set_level(logging.DEBUG, logger="flowcat")

    async def registrar() -> None:
        n = 0
        while True:
            got = await peer.expect(request("REGISTER"), count=n + 1)
            req = got[n]
            n += 1
            if req.get("Authorization") is None:
                reply(peer, req, 401, "Unauthorized", CHALLENGE)
            else:
                contact = req.get("Contact")
                reply(peer, req, 200, "OK", f"Contact: {contact};expires=2")

    task = asyncio.ensure_future(registrar())
    try:
        reg = await srv.register(("127.0.0.1", peer.port), "alice", "s3cret", min_refresh=0.5)
        assert reg.granted == 2 and reg.registered
        regs = [m for m in peer.inbox if m.method == "REGISTER"]
        assert [m.get("Authorization") is None for m in regs] == [True, False]
        auth = regs[1].get("Authorization") or ""
        assert 'username="alice"' in auth and "algorithm=SHA-256" in auth and "qop=auth" in auth
        assert "nc=00000001" in auth and 'uri="sip:127.0.0.1:' in auth
        assert regs[0].call_id == regs[1].call_id and regs[1].cseq[0] == regs[0].cseq[0] + 1
        # the refresh comes at 80 % of the 2 s granted (1.6 s), with a fresh challenge
        await peer.expect(request("REGISTER"), count=4, timeout=4)
        assert reg.refreshes == 1
        await srv.stop(timeout=2)  # un-REGISTER: Expires 0
        last = [m for m in peer.inbox if m.method == "REGISTER"][-1]
        assert last.get("Expires") == "0" and last.get("Authorization") is not None
    finally:
        task.cancel()
    assert "s3cret" not in caplog.text


def test_refresh_delay_is_80_percent_floored_and_capped() -> None:
    srv = SIPServer(App(), port=0)
    from flowcat.transports.sip import Registration

    reg = Registration(srv, ("127.0.0.1", 5060), "a", min_refresh=30)
    assert reg.refresh_delay(3600) == 2880
    assert reg.refresh_delay(35) == 30  # floored at min_refresh
    assert reg.refresh_delay(20) == 18  # never later than 90 % of the expiry


@pytest.mark.parametrize("second", ["403", "401"])
async def test_register_refused_credentials_raise_clearly(
    uac: tuple[SIPServer, Peer, App], second: str
) -> None:
    srv, peer, _ = uac

    async def registrar() -> None:
        first = (await peer.expect(request("REGISTER")))[0]
        reply(peer, first, 401, "Unauthorized", CHALLENGE)
        again = (await peer.expect(request("REGISTER"), count=2))[1]
        if second == "403":
            reply(peer, again, 403, "Forbidden")
        else:  # challenged again, same nonce: the password was wrong
            reply(peer, again, 401, "Unauthorized", CHALLENGE)

    task = asyncio.ensure_future(registrar())
    with pytest.raises(SIPAuthError) as info:
        await srv.register(("127.0.0.1", peer.port), "alice", "pw-Xy9")
    task.cancel()
    assert "alice" in str(info.value) and "pw-Xy9" not in str(info.value)
    assert info.value.status == int(second)
    assert not srv.registrations


async def test_register_without_answer_is_a_call_error(uac: tuple[SIPServer, Peer, App]) -> None:
    srv, peer, _ = uac
    with pytest.raises(SIPCallError) as info:
        await srv.register(("127.0.0.1", peer.port), "alice", "pw")
    assert info.value.status is None
    assert len([m for m in peer.inbox if m.method == "REGISTER"]) > 3  # Timer E retransmissions


# --------------------------------------------------------------------------- scripted callee


def answer_sdp(rtp_port: int = 40002) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )


async def test_dial_407_retry_ack_then_peer_bye(uac: tuple[SIPServer, Peer, App]) -> None:
    srv, peer, app = uac

    async def callee() -> None:
        inv = (await peer.expect(request("INVITE")))[0]
        reply(peer, inv, 407, "Proxy Authentication Required",
              'Proxy-Authenticate: Digest realm="pbx", nonce="n407", qop="auth"')  # fmt: skip
        inv2 = (await peer.expect(request("INVITE"), count=2))[1]
        reply(peer, inv2, 100, "Trying")
        reply(peer, inv2, 180, "Ringing")
        reply(peer, inv2, 200, "OK", f"Contact: <sip:bob@127.0.0.1:{peer.port}>",
              f"Record-Route: <sip:127.0.0.1:{peer.port};lr>",
              "Content-Type: application/sdp", body=answer_sdp())  # fmt: skip

    task = asyncio.ensure_future(callee())
    call = await srv.dial(f"sip:bob@127.0.0.1:{peer.port}", from_user="agent", password="pw")
    await task
    invites = [m for m in peer.inbox if m.method == "INVITE"]
    acks = await peer.expect(request("ACK"), count=2)
    # the 407's ACK is in the first INVITE's transaction (same branch), the 2xx's in a new one
    assert acks[0].get("Via") == invites[0].get("Via") and acks[0].cseq == (invites[0].cseq[0], "ACK")
    assert acks[1].get("Via") != invites[1].get("Via") and acks[1].cseq == (invites[1].cseq[0], "ACK")
    assert acks[1].uri == f"sip:bob@127.0.0.1:{peer.port}" and acks[1].get("Route") is not None
    assert invites[1].cseq[0] == invites[0].cseq[0] + 1 and invites[0].call_id == invites[1].call_id
    assert 'realm="pbx"' in (invites[1].get("Proxy-Authorization") or "")
    assert b"RTP/AVP 0 8 101" in invites[0].body
    assert call.negotiated.codec == "PCMA" and call.info.codec == "PCMA"
    await asyncio.wait_for(app.called.wait(), 5)
    # the callee hangs up: 200 for its BYE, the pipeline ends, the call is gone
    to_tag = "peer1"
    bye = (
        f"BYE sip:agent@127.0.0.1:{srv.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKbye1\r\n"
        f"From: <sip:bob@127.0.0.1>;tag={to_tag}\r\nTo: {call.local_header}\r\nCall-ID: {call.call_id}\r\n"
        "CSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    peer.send(bye, srv.port)
    await peer.expect(lambda m: m.status == 200 and m.cseq[1] == "BYE")
    await asyncio.wait_for(call.ended.wait(), 5)
    assert call.call_id not in srv.calls and srv.rtp_ports.in_use == 0


async def test_dial_cancel_after_ringing(uac: tuple[SIPServer, Peer, App]) -> None:
    srv, peer, app = uac
    call = srv.outbound_call(f"sip:bob@127.0.0.1:{peer.port}")
    connect = asyncio.ensure_future(call.connect())
    inv = (await peer.expect(request("INVITE")))[0]
    call.cancel()  # before any provisional: nothing is sent yet (RFC 3261 §9.1)
    reply(peer, inv, 180, "Ringing")
    cancel = (await peer.expect(request("CANCEL")))[0]
    assert cancel.get("Via") == inv.get("Via") and cancel.cseq == (inv.cseq[0], "CANCEL")
    reply(peer, cancel, 200, "OK")
    reply(peer, inv, 487, "Request Terminated")
    with pytest.raises(SIPCallError) as info:
        await connect
    assert info.value.status == 487
    ack = (await peer.expect(request("ACK")))[0]
    assert ack.get("Via") == inv.get("Via")
    assert not app.called.is_set() and srv.rtp_ports.in_use == 0 and not srv.calls


async def test_dial_rejected_or_unanswered(uac: tuple[SIPServer, Peer, App]) -> None:
    srv, peer, _ = uac
    connect = asyncio.ensure_future(srv.dial(f"sip:bob@127.0.0.1:{peer.port}"))
    inv = (await peer.expect(request("INVITE")))[0]
    reply(peer, inv, 486, "Busy Here")
    with pytest.raises(SIPCallError, match="486 Busy Here"):
        await connect
    with pytest.raises(SIPCallError, match="no answer"):  # Timer B: 64·T1
        await srv.dial(f"sip:bob@127.0.0.1:{peer.port}")
    assert srv.rtp_ports.in_use == 0 and not srv.calls


async def test_register_423_retried_with_min_expires_and_bounded(uac: tuple[SIPServer, Peer, App]) -> None:
    srv, peer, _ = uac

    async def registrar() -> None:
        n = 0
        while True:
            req = (await peer.expect(request("REGISTER"), count=n + 1))[n]
            n += 1
            reply(peer, req, 423, "Interval Too Brief", "Min-Expires: 7200")

    task = asyncio.ensure_future(registrar())
    with pytest.raises(SIPCallError, match="5 attempts"):
        await srv.register(("127.0.0.1", peer.port), "alice", "pw", expires=60)
    task.cancel()
    regs = [m for m in peer.inbox if m.method == "REGISTER"]
    assert [m.get("Expires") for m in regs] == ["60", "7200", "7200", "7200", "7200"]
