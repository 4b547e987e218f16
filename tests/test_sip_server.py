"""SIPServer against a scripted peer on 127.0.0.1: call flows, transactions and timers, dialogs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from _sip_peer import WAIT, App, Dialog, Peer, request, status
from flowcat.audio.dtmf import build_telephone_event
from flowcat.transports.sip import SIPServer, Timers, build_rtp, parse_name_addr, parse_offer, parse_via

pytestmark = pytest.mark.usefixtures("no_outside_connections")

RTP = (31000, 31200)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer.open()
    yield p
    p.close()


async def start(app: App, **kw: object) -> SIPServer:
    kw.setdefault("timers", Timers(t1=0.05, t2=0.2, t4=0.2))
    srv = SIPServer(app, port=0, rtp_ports=RTP, **kw)  # type: ignore[arg-type]
    await srv.start()
    return srv


def tag_of(msg: object) -> str:
    return parse_name_addr(msg.get("To") or "").tag or ""  # type: ignore[attr-defined]


async def answered(d: Dialog) -> str:
    ok = (await d.peer.expect(status(200)))[0]
    d.ack(tag_of(ok))
    return tag_of(ok)


async def test_invite_is_answered_100_180_200_with_sdp_and_call_info(peer: Peer) -> None:
    app = App()
    srv = await start(app)
    try:
        d = Dialog(peer, srv.port, te_pt=120)
        d.send_invite()
        ok = (await peer.expect(status(200)))[0]
        codes = [m.status for m in peer.inbox]
        assert codes[:3] == [100, 180, 200]
        assert tag_of(peer.inbox[1]) == tag_of(ok) != ""
        answer = parse_offer(ok.body)
        assert answer.payload_types == [0, 120] and answer.address == "127.0.0.1"
        assert RTP[0] <= answer.port < RTP[1]
        assert ok.get("Contact") == f"<sip:flowcat@127.0.0.1:{srv.port}>"
        via = parse_via(ok.get("Via") or "")
        assert via.params["received"] == "127.0.0.1" and via.params["rport"] == str(peer.port)
        d.ack(tag_of(ok))
        transport, task, rec = app.calls[0]
        info = transport.call
        assert (info.carrier, info.call_id, info.from_number, info.to_number, info.codec) == (
            "sip",
            d.call_id,
            "+15551234",
            "agent",
            "PCMU",
        )
        assert info.extra["telephone_event_pt"] == 120
        # caller RTP: audio and an RFC 4733 digit on PT 120 reach the pipeline
        rtp = await Peer.open()
        try:
            rtp.send(build_rtp(0, True, 1, 160, 5, b"\x00" * 160), answer.port)
            rtp.send(build_rtp(120, True, 2, 320, 5, build_telephone_event(11, duration=160)), answer.port)
            await asyncio.wait_for(rec.got_dtmf.wait(), WAIT)
            await asyncio.wait_for(rec.got_audio.wait(), WAIT)
            assert rec.dtmf == ["#"]
        finally:
            rtp.close()
        d.bye(tag_of(ok))
        bye_ok = (await peer.expect(status(200, "BYE")))[0]
        assert bye_ok.call_id == d.call_id
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert srv.active_calls == 0 and srv.rtp_ports.in_use == 0
    finally:
        await srv.stop()


async def test_200_is_retransmitted_until_the_ack(peer: Peer) -> None:
    app = App()
    srv = await start(app)
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        oks = await peer.expect(status(200), count=3)  # T1, 2·T1 ... until the ACK
        assert len({m.encode() for m in oks}) == 1
        call = srv.calls[d.call_id]
        txn = call.invite_txn
        d.ack(tag_of(oks[0]))
        await asyncio.wait_for(call.confirmed.wait(), WAIT)
        assert txn.acked and txn.retransmissions >= 2
        n, n200 = txn.retransmissions, len(peer.inbox)
        d.send_invite()  # a late retransmission of the INVITE is absorbed (RFC 6026 Timer L)
        await app.calls[0][1].stop_when_done()
        await peer.expect(request("BYE"))
        assert txn.retransmissions == n
        assert [m.method for m in peer.inbox[n200:]] == ["BYE"]  # no 200 again, no 482
    finally:
        await srv.stop()


async def test_record_route_is_echoed_and_flowcat_bye_follows_the_route_set(peer: Peer) -> None:
    """Gotcha 7: the 200 echoes Record-Route; a UAS-sent BYE carries the route set via the proxy."""
    proxy = await Peer.open()
    app = App()
    srv = await start(app)
    try:
        routes = [f"<sip:127.0.0.1:{proxy.port};lr>", "<sip:edge.invalid;lr>"]
        d = Dialog(peer, srv.port, record_route=routes)
        d.send_invite()
        ok = (await peer.expect(status(200)))[0]
        assert ok.get_all("Record-Route") == routes
        d.ack(tag_of(ok))
        _, task, _ = app.calls[0]
        await srv.calls[d.call_id].confirmed.wait()
        await task.stop_when_done()  # the pipeline ends: flowcat hangs up
        bye = (await proxy.expect(request("BYE")))[0]
        assert bye.get_all("Route") == routes
        assert bye.uri == f"sip:alice@127.0.0.1:{peer.port}"
        assert parse_name_addr(bye.get("From") or "").tag == tag_of(ok)
        assert parse_name_addr(bye.get("To") or "").tag == d.tag
        assert not [m for m in peer.inbox if m.method == "BYE"]  # not straight to the caller
        # answer it from the proxy: the client transaction completes, the call ends
        reply = bye.encode().decode().replace(f"BYE {bye.uri} SIP/2.0", "SIP/2.0 200 OK", 1)
        proxy.send(reply, srv.port)
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
    finally:
        proxy.close()
        await srv.stop()


async def test_unanswered_bye_is_retransmitted_then_given_up(peer: Peer) -> None:
    app = App()
    srv = await start(app, timers=Timers(t1=0.02, t2=0.08, t4=0.1))
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        await answered(d)
        await srv.calls[d.call_id].confirmed.wait()
        await app.calls[0][1].stop_when_done()
        byes = await peer.expect(request("BYE"), count=3)  # Timer E
        assert len({m.get("Via") for m in byes}) == 1  # the same transaction
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)  # Timer F (64·T1) ends it
        assert not srv.endpoint.client_txns
    finally:
        await srv.stop()


async def test_missing_ack_hangs_up_after_timer_h(peer: Peer) -> None:
    app = App()
    srv = await start(app, timers=Timers(t1=0.01, t2=0.04, t4=0.05))
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        await peer.expect(request("BYE"))
        assert app.calls[0][2].audio == b""
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
    finally:
        await srv.stop()


async def test_cancel_before_answer_gets_487_and_never_builds_the_pipeline(peer: Peer) -> None:
    app = App()
    srv = await start(app, ring_secs=30)
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        ringing = (await peer.expect(status(180)))[0]
        d.cancel()
        await peer.expect(status(200, "CANCEL"))
        terminated = (await peer.expect(status(487)))[0]
        assert tag_of(terminated) == tag_of(ringing)
        d.ack(tag_of(terminated), for_2xx=False)
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert not app.called.is_set() and srv.rtp_ports.in_use == 0
        d.cancel()  # a retransmitted CANCEL gets the same 200 again (Timer J keeps the transaction)
        await peer.expect(status(200, "CANCEL"), count=2)
    finally:
        await srv.stop()


async def test_retransmitted_invite_is_one_call(peer: Peer) -> None:
    app = App()
    srv = await start(app, ring_secs=30)
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        await peer.expect(status(180))
        d.send_invite()
        await peer.expect(status(180), count=2)  # the last response, again
        assert srv.active_calls == 1 and srv.calls_answered == 1
    finally:
        await srv.stop()


async def test_options_reports_load_and_capacity_refuses_with_503(peer: Peer) -> None:
    app = App()
    srv = await start(app, max_calls=1)
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        await answered(d)
        peer.send(
            f"OPTIONS sip:agent@127.0.0.1:{srv.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKo1\r\n"
            f"From: <sip:mon@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\n\r\n",
            srv.port,
        )
        opt = (await peer.expect(status(200, "OPTIONS")))[0]
        assert opt.get("X-Flowcat-Load") == "calls=1;capacity=1"
        assert "INVITE" in opt.get_all("Allow") and tag_of(opt) == ""
        d2 = Dialog(peer, srv.port)
        d2.send_invite()
        busy = (await peer.expect(lambda m: m.status == 503 and m.call_id == d2.call_id))[0]
        assert busy.get("Retry-After") == "5" and srv.calls_refused == 1
    finally:
        await srv.stop()


async def test_reinvite_hold_stops_bot_audio_and_resume_restarts_it(peer: Peer) -> None:
    app = App()
    srv = await start(app)
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        tag = await answered(d)
        media = srv.calls[d.call_id].media
        assert media is not None and media.sending
        branch = d.reinvite(tag, "sendonly")
        held = (await peer.expect(lambda m: m.status == 200 and branch in (m.get("Via") or "")))[0]
        assert b"a=recvonly" in held.body and b"o=flowcat" in held.body
        assert not media.sending
        d.ack(tag)
        branch = d.reinvite(tag, "sendrecv")
        resumed = (await peer.expect(lambda m: m.status == 200 and branch in (m.get("Via") or "")))[0]
        assert b"a=sendrecv" in resumed.body and media.sending
        d.ack(tag)
    finally:
        await srv.stop()


async def test_unknown_dialog_unsupported_method_and_garbage(peer: Peer) -> None:
    app = App()
    srv = await start(app)
    try:
        d = Dialog(peer, srv.port)
        d.bye("nosuchtag")
        await peer.expect(status(481, "BYE"))
        peer.send(b"\x00\xffnot sip at all\r\n\r\n", srv.port)
        peer.send(
            f"MESSAGE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKm\r\n"
            f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n\r\n",
            srv.port,
        )
        refused = (await peer.expect(status(405, "MESSAGE")))[0]
        assert "BYE" in refused.get_all("Allow")
        assert srv.endpoint.bad_messages == 1
    finally:
        await srv.stop()


async def test_declined_and_unanswerable_offers(peer: Peer) -> None:
    srv = await start(App(decline=True))
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        await peer.expect(status(603))
        d2 = Dialog(peer, srv.port)
        peer.send(d2.invite().replace("RTP/AVP 0 101", "RTP/AVP 9 101"), srv.port)
        bad = (await peer.expect(lambda m: m.status == 488 and m.call_id == d2.call_id))[0]
        assert "no common codec" in (bad.get("Warning") or "")
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert srv.rtp_ports.in_use == 0
    finally:
        await srv.stop()


async def test_a_call_and_the_server_leave_nothing_behind(peer: Peer) -> None:
    from flowcat.testing import assert_call_leaves_nothing

    async def run() -> int:
        app = App()
        srv = await start(app)
        try:
            d = Dialog(peer, srv.port)
            d.send_invite()
            tag = await answered(d)
            await asyncio.wait_for(srv.calls[d.call_id].confirmed.wait(), WAIT)
            d.bye(tag)
            await peer.expect(status(200, "BYE"))
            await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
            app.calls.clear()
        finally:
            await srv.stop()
        return len(peer.inbox)

    assert await assert_call_leaves_nothing(run) >= 4


async def test_serve_sip_runs_the_app_factory_under_the_worker_admission(peer: Peer) -> None:
    from flowcat.server import CallInfo, EchoProcessor, ServerConfig, ServerState, serve_sip

    seen: list[CallInfo] = []

    def app(call: CallInfo) -> list[EchoProcessor]:
        seen.append(call)
        return [EchoProcessor()]

    state = ServerState(
        ServerConfig(app=app, capacity=1, audio_in_sample_rate=8000, audio_out_sample_rate=8000)
    )
    srv = await serve_sip("127.0.0.1", 0, state=state, rtp_ports=RTP, timers=Timers(t1=0.05, t2=0.2, t4=0.2))
    try:
        d = Dialog(peer, srv.port)
        d.send_invite()
        tag = await answered(d)
        assert [c.call_id for c in seen] == [d.call_id] and seen[0].carrier == "sip"
        assert state.admission.active == 1
        d2 = Dialog(peer, srv.port)
        d2.send_invite()
        busy = (await peer.expect(lambda m: m.status == 503 and m.call_id == d2.call_id))[0]
        assert busy.get("Retry-After") == "5" and state.admission.rejected == 1
        peer.send(
            f"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKo2\r\n"
            f"From: <sip:mon@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: opt2\r\nCSeq: 1 OPTIONS\r\n\r\n",
            srv.port,
        )
        opt = (await peer.expect(status(200, "OPTIONS")))[0]
        assert opt.get("X-Flowcat-Load") == "calls=1;capacity=1"
        d.bye(tag)
        await peer.expect(status(200, "BYE"))
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert state.admission.active == 0 and state.admission.completed == 1
    finally:
        await srv.stop()


class RTPPeer(asyncio.DatagramProtocol):
    """The caller's RTP socket: records the payloads flowcat sends."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.times: list[float] = []
        self.changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: object) -> None:
        from flowcat.transports.sip import parse_rtp

        pkt = parse_rtp(data)
        if pkt is not None:
            self.payloads.append(pkt.payload)
            self.times.append(asyncio.get_running_loop().time())
            self.changed.set()

    async def until(self, pred: object, timeout: float = WAIT) -> None:
        async def wait() -> None:
            while not pred():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


@pytest.mark.serial  # timing-sensitive (median RTP gap of 12-28 ms): .ci/run runs it alone, after the parallel run
async def test_silence_while_quiet_bot_audio_paced_and_flushed_on_interruption(peer: Peer) -> None:
    import numpy as np

    from flowcat.audio import pcm16_to_ulaw
    from flowcat.frames import InterruptionFrame, OutputAudioRawFrame

    loop = asyncio.get_running_loop()
    rtp = RTPPeer()
    tr, _ = await loop.create_datagram_endpoint(lambda: rtp, local_addr=("127.0.0.1", 0))
    app = App()
    srv = await start(app)
    try:
        d = Dialog(peer, srv.port)
        d.send_invite(rtp_port=tr.get_extra_info("sockname")[1])
        tag = await answered(d)
        _, task, _ = app.calls[0]
        silence = pcm16_to_ulaw(b"\x00\x00" * 160)
        await rtp.until(lambda: len(rtp.payloads) >= 3)  # the bot is quiet: silence, 20 ms packets
        assert all(p == silence for p in rtp.payloads) and {len(p) for p in rtp.payloads} == {160}
        t = np.arange(8000 * 3) / 8000
        tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
        await task.queue_frame(OutputAudioRawFrame(tone, 8000, 1))  # 3 s of bot audio, queued at once
        await rtp.until(lambda: sum(p != silence for p in rtp.payloads) >= 12)
        gaps = np.diff([tm for tm, p in zip(rtp.times, rtp.payloads, strict=True) if p != silence][2:])
        assert 0.012 <= float(np.median(gaps)) <= 0.028  # paced at 20 ms after the 2-packet send-ahead
        await task.queue_frame(InterruptionFrame())
        n = len(rtp.payloads)
        await rtp.until(lambda: len(rtp.payloads) >= n + 6 and rtp.payloads[-1] == silence)
        tone_packets = sum(p != silence for p in rtp.payloads)
        assert tone_packets < 30  # the queued 150 packets of tone were dropped at once
        assert all(p == silence for p in rtp.payloads[-3:])
        d.bye(tag)
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
    finally:
        tr.close()
        await srv.stop()


async def test_stopping_the_server_hangs_up_its_calls(peer: Peer) -> None:
    app = App()
    srv = await start(app)
    d = Dialog(peer, srv.port)
    d.send_invite()
    await answered(d)
    await asyncio.wait_for(srv.calls[d.call_id].confirmed.wait(), WAIT)
    await srv.stop()
    bye = (await peer.expect(request("BYE")))[0]
    assert bye.call_id == d.call_id and srv.active_calls == 0
