"""SIP over TCP against sipp (Debian ``sip-tester``, ``-t t1``: one TCP connection), on 127.0.0.1.

* sipp calls flowcat over TCP and streams μ-law: the audio arrives bit-exact, sipp's BYE
  comes on the same connection;
* sipp calls over TCP, flowcat hangs up: its BYE reuses sipp's connection (found by the
  Via ``sent-by`` of sipp's requests) and sipp answers it;
* flowcat dials sipp's built-in UAS at ``;transport=tcp``.

The Debian sipp is built without TLS (``sipp -v``: ``SCTP-PCAP-RTPSTREAM``), so TLS is
tested with a Python TLS client and flowcat-to-flowcat in tests/test_sip_tcp.py. Without
sipp the module skips locally and fails under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from _helpers import missing
from _sip_peer import App
from flowcat.audio import ulaw_to_pcm16
from flowcat.transports.sip import SIPServer, Timers, parse_via

SIPP = shutil.which("sipp")
if SIPP is None:
    missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")

from test_sip_interop import SCEN, _test_ulaw, sipp  # noqa: E402
from test_sip_uac_interop import Sipp  # noqa: E402

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(90)]

RTP = (34400, 34600)


async def new_server(app: App) -> SIPServer:
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.1))
    await srv.start()
    return srv


async def test_sipp_calls_over_tcp_audio_bit_exact_and_bye_on_the_connection(tmp_path: Path) -> None:
    app = App()
    srv = await new_server(app)
    try:
        ulaw = _test_ulaw(1.0)
        media = tmp_path / "call.ulaw"
        media.write_bytes(ulaw)
        text = (SCEN / "uac_pcmu_stream.xml").read_text()
        scenario = tmp_path / "uac_pcmu_stream.xml"
        scenario.write_text(text.replace("@ULAW@", str(media)).replace("@STREAM_MS@", "1400"))
        rc, out = await sipp(scenario, srv.port, "-t", "t1")
        assert rc == 0, out
        await asyncio.wait_for(srv.wait_calls_ended(), 10)
        transport, _, rec = app.calls[0]
        invite = srv.endpoint  # the INVITE came over TCP, on one accepted connection
        assert invite.streams is not None and invite.streams.accepted == 1
        assert bytes(rec.audio) == ulaw_to_pcm16(ulaw)
        assert rec.dtmf == ["4", "2", "#"]
        assert transport.call.codec == "PCMU"
    finally:
        await srv.stop()


async def test_sipp_calls_over_tcp_and_flowcat_hangs_up_on_the_same_connection() -> None:
    app = App()
    srv = await new_server(app)
    seen: list[str] = []
    original = srv.endpoint._request

    def spy(msg, peer, conn=None):  # type: ignore[no-untyped-def]
        seen.append(f"{msg.method} {parse_via(msg.get('Via') or '').transport} {conn is not None}")
        original(msg, peer, conn)

    srv.endpoint._request = spy  # type: ignore[method-assign]
    try:
        run = asyncio.ensure_future(sipp(SCEN / "uac_echo_wait_bye.xml", srv.port, "-t", "t1", "-rtp_echo"))
        try:
            await asyncio.wait_for(app.called.wait(), 10)
            call = next(iter(srv.calls.values()))
            await asyncio.wait_for(call.confirmed.wait(), 10)
            _, task, rec = app.calls[0]
            await asyncio.wait_for(rec.got_audio.wait(), 10)
            await task.stop_when_done()  # flowcat sends BYE
            rc, out = await run
        finally:
            if not run.done():
                run.cancel()
        assert rc == 0, out  # sipp received the BYE on its connection and answered 200
        await asyncio.wait_for(srv.wait_calls_ended(), 10)
        assert call.bye_sent and not call.bye_received
        assert seen == ["INVITE TCP True", "ACK TCP True"]
        streams = srv.endpoint.streams
        assert streams is not None and (streams.accepted, streams.opened) == (1, 0)
    finally:
        await srv.stop()


async def tcp_listening(
    port: int, timeout: float = 10.0, table: str = "/proc/net/tcp", state: str = "0A"
) -> None:
    """Wait (bounded) until something listens on TCP ``port`` (``table`` /proc/net/tcp,
    ``state`` 0A: LISTEN; /proc/net/udp and 07 for a bound UDP socket), without connecting."""

    def listening() -> bool:
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
                return True
        return False

    async def poll() -> None:
        while not listening():  # noqa: ASYNC110 - bounded poll of the kernel table
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_flowcat_dials_sipp_uas_over_tcp() -> None:
    from test_sip_interop import free_port

    peer = await Sipp.start("-sn", "uas", "-t", "t1", "-mi", "127.0.0.1", "-mp", str(free_port() & ~1))
    await tcp_listening(peer.port)
    app = App()
    srv = await new_server(app)
    try:
        call = await srv.dial(f"sip:uas@127.0.0.1:{peer.port};transport=tcp")
        await asyncio.wait_for(app.called.wait(), 5)
        _, task, _ = app.calls[0]
        await task.stop_when_done()
        await asyncio.wait_for(call.ended.wait(), 10)
        rc, out = await peer.result()
        assert rc == 0, out
        streams = srv.endpoint.streams
        assert streams is not None and streams.opened == 1 and srv.endpoint.messages_in >= 2
    finally:
        peer.kill()
        await srv.stop()
    assert call.bye_sent
