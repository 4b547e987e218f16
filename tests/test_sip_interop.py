"""SIPServer against a real SIP peer: sipp (Debian ``sip-tester``), everything on 127.0.0.1.

Each test starts a SIPServer, runs one sipp scenario from tests/fixtures/sip/ against it and
waits for sipp's exit code (0: the scenario passed) and for the call to end; nothing sleeps.
Without sipp the module skips locally and fails under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _helpers import missing
from _sip_peer import App, free_sip_port
from flowcat.audio import alaw_to_pcm16, pcm16_to_ulaw, ulaw_to_pcm16
from flowcat.transports.sip import RTPSession, SIPServer, Timers, parse_rtp

SIPP = shutil.which("sipp")
if SIPP is None:
    missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(90)]

SCEN = Path(__file__).parent / "fixtures" / "sip"
PCAP = Path("/usr/share/sip-tester")
RTP = (32000, 32400)
SIPP_TIMEOUT = 30


free_port = free_sip_port  # (its name in the SIP test files that import it from here)


async def sipp(scenario: Path, server_port: int, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SIPP), "-sf", str(scenario), f"127.0.0.1:{server_port}",
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port() & ~1),
        "-m", "1", "-timeout", f"{SIPP_TIMEOUT}s", "-timeout_error", "-nostdin", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), SIPP_TIMEOUT + 10)
    return proc.returncode or 0, out.decode(errors="replace")[-1500:]


@pytest.fixture
async def server() -> AsyncIterator[tuple[SIPServer, App]]:
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.1))
    await srv.start()
    try:
        yield srv, app
    finally:
        await srv.stop()


async def test_flow1_pcap_pcma_30ms_audio_and_rfc2833_dtmf(server: tuple[SIPServer, App]) -> None:
    """sipp plays g711a.pcap (PCMA, 30 ms = 240-byte payloads) from its media port and a
    DTMF '1' pcap (from another port: gotcha 2), then hangs up."""
    srv, app = server
    rc, out = await sipp(SCEN / "uac_pcap_dtmf.xml", srv.port)
    assert rc == 0, out
    await asyncio.wait_for(srv.wait_calls_ended(), 10)
    transport, _, rec = app.calls[0]
    assert transport.call.codec == "PCMA"
    assert rec.dtmf == ["1"]
    # every audio packet of the pcap arrived, decoded: 236 x 240 samples
    assert len(rec.audio) == 236 * 240 * 2
    assert np.abs(np.frombuffer(bytes(rec.audio), "<i2")).max() > 1000  # speech, not silence


def _test_ulaw(seconds: float) -> bytes:
    """A headerless μ-law file: a 440 Hz tone with a sweep (deterministic, every code varies)."""
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (8000 * np.sin(2 * np.pi * (440 + 200 * t) * t)).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


async def test_flow2_rtp_stream_pcmu_bit_exact_and_rfc2833_digits(
    server: tuple[SIPServer, App], tmp_path: Path
) -> None:
    """Gotcha 1: a headerless .ulaw streamed by sipp's rtp_stream arrives bit-exact."""
    srv, app = server
    ulaw = _test_ulaw(2.0)  # 100 packets of 160 bytes
    media = tmp_path / "call.ulaw"
    media.write_bytes(ulaw)
    text = (
        (SCEN / "uac_pcmu_stream.xml")
        .read_text()
        .replace("@ULAW@", str(media))
        .replace("@STREAM_MS@", "2400")
    )
    scenario = tmp_path / "uac_pcmu_stream.xml"
    scenario.write_text(text)
    rc, out = await sipp(scenario, srv.port)
    assert rc == 0, out
    await asyncio.wait_for(srv.wait_calls_ended(), 10)
    transport, _, rec = app.calls[0]
    assert transport.call.codec == "PCMU"
    assert bytes(rec.audio) == ulaw_to_pcm16(ulaw)
    assert rec.dtmf == ["4", "2", "#"]


async def test_echo_app_audio_reaches_sipp_and_flowcat_hangs_up(
    server: tuple[SIPServer, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline echoes the caller's audio; sipp (-rtp_echo) reflects every packet it gets
    back, so flowcat sees its own packets (its SSRC) return: proof that sipp received them,
    and their payloads carry the caller's audio, bit-exact. Then the pipeline ends and
    flowcat sends BYE, which sipp answers."""
    srv, app = server
    app.echo = True
    reflected: list[bytes] = []
    second_back = asyncio.Event()  # a second of echoed audio came back from sipp
    original = RTPSession.datagram_received

    def spy(self: RTPSession, data: bytes, addr: Any) -> None:
        pkt = parse_rtp(data)
        if pkt is not None and pkt.ssrc == self._ssrc_out:
            reflected.append(pkt.payload)
            if len(reflected) >= 50:
                second_back.set()
        original(self, data, addr)

    monkeypatch.setattr(RTPSession, "datagram_received", spy)
    run = asyncio.ensure_future(sipp(SCEN / "uac_echo_wait_bye.xml", srv.port, "-rtp_echo"))
    try:
        await asyncio.wait_for(app.called.wait(), 10)
        _, task, rec = app.calls[0]
        await asyncio.wait_for(second_back.wait(), 15)
        await task.stop_when_done()  # the app ends the call: flowcat sends BYE
        rc, out = await run
    finally:
        if not run.done():
            run.cancel()
    assert rc == 0, out
    await asyncio.wait_for(srv.wait_calls_ended(), 10)
    media_out = b"".join(reflected)
    heard = alaw_to_pcm16(media_out)
    # the first 20 ms of caller audio (after the silence before it) is in what sipp got back
    first = bytes(rec.audio[:320])
    assert np.abs(np.frombuffer(first, "<i2")).max() > 0
    assert first in heard


async def test_cancel_while_ringing(tmp_path: Path) -> None:
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, ring_secs=20, timers=Timers(t1=0.1))
    await srv.start()
    try:
        rc, out = await sipp(SCEN / "uac_cancel.xml", srv.port)
        assert rc == 0, out
        await asyncio.wait_for(srv.wait_calls_ended(), 10)
        assert not app.called.is_set() and srv.rtp_ports.in_use == 0
    finally:
        await srv.stop()


async def test_options_ping(server: tuple[SIPServer, App]) -> None:
    srv, _ = server
    rc, out = await sipp(SCEN / "uac_options.xml", srv.port)
    assert rc == 0, out
