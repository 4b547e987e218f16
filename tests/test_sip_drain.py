"""Draining a SIP server: no new calls (INVITE and OPTIONS answered 503, so a dispatcher such as
Kamailio takes it out of rotation), the calls in progress go on. Scripted UDP peer on 127.0.0.1;
the same against Kamailio is in tests/test_sip_kamailio.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from _sip_peer import App, Dialog, Peer, status
from flowcat.transports.sip import SIPServer, Timers, parse_name_addr

pytestmark = pytest.mark.usefixtures("no_outside_connections")

RTP = (35400, 35600)
TIMERS = Timers(t1=0.05, t2=0.2, t4=0.2)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer.open()
    yield p
    p.close()


def options(peer: Peer, port: int, branch: str) -> None:
    peer.send(
        f"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch}\r\n"
        f"From: <sip:ds@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: {branch}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        port,
    )


async def test_drain_refuses_new_calls_and_keeps_the_call_in_progress(peer: Peer) -> None:
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=TIMERS, max_calls=4)
    await srv.start()
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        ok = (await peer.expect(status(200)))[0]
        tag = parse_name_addr(ok.get("To") or "").tag or ""
        d.ack(tag)
        options(peer, srv.port, "z9hG4bKo1")
        up = (await peer.expect(lambda m: m.call_id == "z9hG4bKo1"))[0]
        assert (up.status, up.get("X-Flowcat-Load")) == (200, "calls=1;capacity=4")

        srv.drain()
        options(peer, srv.port, "z9hG4bKo2")
        down = (await peer.expect(lambda m: m.call_id == "z9hG4bKo2"))[0]
        assert (down.status, down.get("X-Flowcat-Load")) == (503, "calls=1;capacity=0")
        d2 = Dialog(peer, srv.port)
        d2.send_invite()
        refused = (await peer.expect(lambda m: m.call_id == d2.call_id and (m.status or 0) >= 200))[0]
        assert refused.status == 503 and refused.get("Retry-After")
        assert srv.calls_refused == 1 and len(app.calls) == 1

        d.bye(tag)  # the call in progress ends normally
        await peer.expect(status(200, "BYE"))
        await srv.wait_calls_ended()
        assert not [m for m in peer.inbox if m.method == "BYE"]  # flowcat never hung it up
        assert srv.calls_answered == 1 and not srv.calls
    finally:
        await srv.stop()


async def test_a_draining_worker_answers_options_503(peer: Peer) -> None:
    """``serve_sip`` under a worker's admission: when the worker drains (``flowcat serve`` on
    SIGTERM), OPTIONS says 503 with capacity 0, so Kamailio's probe stops sending it calls."""
    from flowcat.server import EchoProcessor, ServerConfig, ServerState, serve_sip

    state = ServerState(ServerConfig(app=lambda call: [EchoProcessor()], capacity=3))
    srv = await serve_sip("127.0.0.1", 0, state=state, rtp_ports=RTP, timers=TIMERS)
    try:
        options(peer, srv.port, "z9hG4bKw1")
        up = (await peer.expect(lambda m: m.call_id == "z9hG4bKw1"))[0]
        assert (up.status, up.get("X-Flowcat-Load")) == (200, "calls=0;capacity=3")
        state.admission.draining = True
        options(peer, srv.port, "z9hG4bKw2")
        down = (await peer.expect(lambda m: m.call_id == "z9hG4bKw2"))[0]
        assert (down.status, down.get("X-Flowcat-Load")) == (503, "calls=0;capacity=0")
    finally:
        await srv.stop()
