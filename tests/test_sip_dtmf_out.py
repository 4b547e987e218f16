"""DTMF out on a SIP call: ``OutputDTMFFrame`` / ``OutputDTMFUrgentFrame`` become RFC 4733 events
at the payload type the caller offered (here 120, as pjsip does), captured on a raw UDP socket
that the caller's SDP points the media at.

On the wire: the marker on each event's first packet only, one timestamp for all of an event's
packets (the RTP timestamp of its start), growing durations, three end packets (E bit) with the
final duration, sequence numbers continuous with the audio packets around them, the audio
timestamp still advancing by 160 per 20 ms tick, and the digits decoded back by flowcat's own
receiver. A call whose caller offered no telephone-event sends none. baresip (Debian
``baresip-core``), dialled by flowcat, reports the keys flowcat sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from _helpers import missing
from _sip_peer import App, Dialog, Peer, status
from flowcat.audio.dtmf import TelephoneEventDecoder, parse_telephone_event
from flowcat.frames import KeypadEntry, OutputDTMFFrame, OutputDTMFUrgentFrame
from flowcat.transports.sip import SIPServer, Timers, parse_rtp

pytestmark = [pytest.mark.timeout(60)]  # baresip starts slowly on a busy CI host

RTP = (34900, 35000)
BARESIP = shutil.which("baresip")


class Capture(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[Any] = []
        self.events = 0
        self.changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pkt = parse_rtp(data)
        if pkt is not None:
            self.packets.append(pkt)
            if pkt.payload_type == 120 and parse_telephone_event(pkt.payload).end:  # type: ignore[union-attr]
                self.events += 1
            self.changed.set()

    async def wait_ends(self, n: int) -> None:
        while self.events < n:
            self.changed.clear()
            await self.changed.wait()


async def _call(te_pt: int | None) -> tuple[SIPServer, Peer, App, Capture, Any]:
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.05, t2=0.2, t4=0.2))
    await srv.start()
    loop = asyncio.get_running_loop()
    cap = Capture()
    tr, _ = await loop.create_datagram_endpoint(lambda: cap, local_addr=("127.0.0.1", 0))
    rtp_port = tr.get_extra_info("sockname")[1]
    peer = await Peer.open()
    dialog = Dialog(peer, srv.port, te_pt=te_pt or 101)
    if te_pt is None:  # an offer without telephone-event
        body = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        )
        invite = dialog.invite(rtp_port=rtp_port)
        head = invite.split("Content-Length:")[0]
        peer.send(f"{head}Content-Length: {len(body)}\r\n\r\n{body}", srv.port)
    else:
        dialog.send_invite(rtp_port=rtp_port)
    (ok,) = await peer.expect(status(200))
    dialog.ack((ok.get("To") or "").split("tag=")[-1])
    await asyncio.wait_for(app.called.wait(), 5)
    return srv, peer, app, cap, tr


async def test_output_dtmf_frames_go_out_as_rfc4733_events_at_the_negotiated_pt() -> None:
    srv, peer, app, cap, tr = await _call(120)
    try:
        _transport, task, _ = app.calls[0]
        await task.queue_frames(
            [OutputDTMFFrame(button=KeypadEntry.FIVE), OutputDTMFFrame(button=KeypadEntry.POUND)]
        )
        await asyncio.wait_for(cap.wait_ends(6), 5)
        await task.queue_frames([OutputDTMFUrgentFrame(button=KeypadEntry.STAR)])
        await asyncio.wait_for(cap.wait_ends(9), 5)
        pkts = list(cap.packets)
        assert {p.payload_type for p in pkts} == {0, 120}  # PCMU audio and PT 120 events, no 101
        # one SSRC, sequence numbers continuous over audio and events
        assert len({p.ssrc for p in pkts}) == 1
        seqs = [p.sequence for p in pkts]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        events = [p for p in pkts if p.payload_type == 120]
        groups: list[list[Any]] = []
        for p in events:
            if p.marker:
                groups.append([])
            groups[-1].append(p)
        assert len(groups) == 3
        decoder = TelephoneEventDecoder(120)
        digits = []
        for group in groups:
            parsed = [parse_telephone_event(p.payload) for p in group]
            assert len({p.timestamp for p in group}) == 1  # the event's start timestamp throughout
            assert [e.end for e in parsed] == [False] * (len(parsed) - 3) + [True] * 3  # type: ignore[union-attr]
            durations = [e.duration for e in parsed]  # type: ignore[union-attr]
            assert durations[: len(durations) - 3] == sorted(durations[: len(durations) - 3])
            assert durations[-3:] == [800, 800, 800]  # 100 ms at 8 kHz, repeated three times
            assert sum(p.marker for p in group) == 1 and group[0].marker
            for p in group:
                key = decoder.feed(120, p.marker, p.timestamp, p.sequence, p.payload)
                if key is not None:
                    digits.append(key.value)
        assert digits == ["5", "#", "*"]
        # the audio clock kept running: the audio packet after an event is 160 ticks per packet on
        idx = pkts.index(groups[0][0])
        before = pkts[idx - 1]
        after = next(p for p in pkts[idx:] if p.payload_type == 0)
        n = pkts.index(after) - (idx - 1)
        assert before.payload_type == 0 and (after.timestamp - before.timestamp) & 0xFFFFFFFF == 160 * n
        assert groups[0][0].timestamp == (before.timestamp + 160) & 0xFFFFFFFF
    finally:
        tr.close()
        peer.close()
        await srv.stop()


async def test_without_telephone_event_no_dtmf_is_sent() -> None:
    srv, peer, app, cap, tr = await _call(None)
    try:
        transport, task, _ = app.calls[0]
        media = transport.media
        assert media is not None and media.negotiated.telephone_event_pt is None
        await task.queue_frames([OutputDTMFFrame(button=KeypadEntry.ONE)])
        while len(cap.packets) < 30:  # 600 ms of media after the frame was queued
            cap.changed.clear()
            await asyncio.wait_for(cap.changed.wait(), 2)
        assert {p.payload_type for p in cap.packets} == {0}
        assert media.dtmf_packets_out == 0
    finally:
        tr.close()
        peer.close()
        await srv.stop()


async def test_baresip_receives_the_keys_flowcat_sends(tmp_path: Path) -> None:
    """An independent receiver: flowcat dials baresip (auto-answer) and sends 7 and 3 as
    OutputDTMFFrames; baresip reports each event and its end on stdout."""
    if BARESIP is None:
        missing("baresip (Debian package baresip-core: apt-get install -y baresip-core)")
    from test_sip_baresip import baresip_config, free_port, free_sip_port, tone_wav, wait_ready

    app = App()
    srv = SIPServer(app, port=0, rtp_ports=(35000, 35100), timers=Timers(t1=0.1))
    await srv.start()
    sip_port = free_sip_port()
    baresip_config(
        tmp_path / "baresip", tone_wav(tmp_path / "tone.wav", 10), sip_port, free_port(), auto_answer=True
    )
    proc = await asyncio.create_subprocess_exec(
        str(BARESIP), "-f", str(tmp_path / "baresip"), "-t", "45",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        await wait_ready(proc)
        call = await srv.dial(f"sip:alice@127.0.0.1:{sip_port}", from_user="agent")
        await asyncio.wait_for(app.called.wait(), 10)
        _, task, _ = app.calls[0]
        await task.queue_frames(
            [OutputDTMFFrame(button=KeypadEntry.SEVEN), OutputDTMFFrame(button=KeypadEntry.THREE)]
        )

        async def read() -> None:
            assert proc.stdout is not None
            while sum("end=1" in line for line in lines) < 2:
                line = await proc.stdout.readline()
                if not line:  # baresip exited: the assertion below shows what it printed
                    return
                lines.append(line.decode(errors="replace"))

        await asyncio.wait_for(read(), 10)
        await call.hangup()
        await asyncio.wait_for(call.ended.wait(), 10)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        await srv.stop()
    events = re.findall(r"received event: '(.)' \(end=(\d)\)", "".join(lines))
    assert events == [("7", "0"), ("7", "1"), ("3", "0"), ("3", "1")], lines  # each key once, then its end
