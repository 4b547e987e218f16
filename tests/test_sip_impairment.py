"""Calls through an impaired network: two network namespaces the test creates, a veth between them.

``caller`` (198.18.N.1) runs sipp; ``server`` (198.18.N.2) runs flowcat's SIPServer, in
this process: the event loop's thread enters the namespace (``setns``) while the
server's sockets are made and the call runs, and returns to its own in ``finally``.
The namespaces are deleted at the end, whatever happens.

* **10 % random loss** on the caller's RTP into flowcat: ``tc qdisc netem loss 10%``
  where the kernel has netem, else an nftables ``numgen random mod 100 < 10`` drop
  rule on flowcat's RTP ports (Debian's cloud kernels and this CI's microVM lack
  ``sch_netem``). sipp streams 4 s of 20 ms PCMU (rtp_stream) and RFC 4733 digits
  ``4 2 #`` (its pcaps: 7 updates and 3 end packets each).
* **Delay and jitter with reordering**: netem ``delay 40ms 20ms distribution normal``
  on the caller's veth where available, else the same model applied by the caller's
  RTP peer in userspace (each packet leaves at its 20 ms slot plus a seeded normal
  40 ± 20 ms delay, so packets overtake each other). sipp places the call; its SDP
  names this peer, which streams 4 s of PCMU and the digits ``4 2 #``.

Asserted each time: every 20 ms frame flowcat delivered is bit-exact with one of the
source's and they come in source order (the jitter buffer reordered); the frames
missing inside the stream are exactly those the jitter buffer accounts as lost;
DTMF is ``4 2 #``, once each. Needs root and iproute2 (``ip netns``); without them the
module skips locally and fails under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _helpers import missing
from _sip_peer import App
from flowcat.audio import pcm16_to_ulaw, ulaw_to_pcm16
from flowcat.audio.dtmf import build_telephone_event
from flowcat.bench.sip import SCENARIO
from flowcat.transports.sip import SIPServer, Timers, build_rtp

# iproute2, nftables and tc live in /usr/sbin, which a CI shell's PATH may lack.
for _sbin in ("/usr/sbin", "/sbin"):
    if _sbin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + _sbin
IP = shutil.which("ip")
SIPP = shutil.which("sipp")
if IP is None or SIPP is None:
    missing("iproute2 and sipp (apt-get install -y iproute2 sip-tester)")
if os.geteuid() != 0:
    missing("root, to create network namespaces")

# Timing-sensitive (delay and jitter in namespaces): .ci/run runs it alone, after the parallel run.
pytestmark = [pytest.mark.serial, pytest.mark.timeout(120)]

SCEN = Path(__file__).parent / "fixtures" / "sip"
RTP = (34000, 34050)
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=check)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


class Net:
    """The two namespaces and their addresses."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.caller, self.server = f"fcc-{tag}", f"fcs-{tag}"
        self.veth_c, self.veth_s = f"fcc{tag}", f"fcs{tag}"
        n = random.randint(1, 254)  # noqa: S311 - a test subnet, not a secret
        self.caller_ip, self.server_ip = f"198.18.{n}.1", f"198.18.{n}.2"

    def up(self) -> None:
        sh("ip", "netns", "add", self.caller)
        sh("ip", "netns", "add", self.server)
        sh("ip", "link", "add", self.veth_c, "netns", self.caller, "type", "veth",
           "peer", "name", self.veth_s, "netns", self.server)  # fmt: skip
        for ns, dev, ip in (
            (self.caller, self.veth_c, self.caller_ip),
            (self.server, self.veth_s, self.server_ip),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in (self.caller, self.server):
            sh("ip", "netns", "del", ns, check=False)

    def netem(self, *spec: str) -> bool:
        """netem on the caller's veth egress (caller → flowcat); False where the kernel lacks it."""
        return sh("ip", "netns", "exec", self.caller, "tc", "qdisc", "add", "dev", self.veth_c,
                  "root", "netem", *spec, check=False).returncode == 0  # fmt: skip

    def nft_loss(self, percent: int) -> bool:
        """Drop ``percent`` % of UDP into flowcat's RTP ports (server's input hook)."""
        if shutil.which("nft") is None:
            return False
        rules = (
            "add table inet fcimpair\n"
            "add chain inet fcimpair input { type filter hook input priority 0; }\n"
            f"add rule inet fcimpair input udp dport {RTP[0]}-{RTP[1]} numgen random mod 100 < {percent} "
            "counter drop\n"
        )
        run = subprocess.run(["ip", "netns", "exec", self.server, "nft", "-f", "-"], input=rules,
                             capture_output=True, text=True, timeout=15)  # fmt: skip
        return run.returncode == 0

    def nft_dropped(self) -> int:
        out = sh("ip", "netns", "exec", self.server, "nft", "list", "table", "inet", "fcimpair").stdout
        return int(out.split("packets ")[1].split()[0])

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """This thread in namespace ``ns`` (sockets made meanwhile stay there), then back."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(f"/var/run/netns/{ns}")
            try:
                yield
            finally:
                if _libc.setns(home, _CLONE_NEWNET) != 0:  # pragma: no cover - would strand the test run
                    raise OSError(ctypes.get_errno(), "could not return to the test's network namespace")
        finally:
            os.close(home)


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        n.up()
    except (subprocess.CalledProcessError, OSError) as exc:
        n.down()
        missing(f"network namespaces (ip netns add/veth failed: {getattr(exc, 'stderr', exc)!s})")
    try:
        yield n
    finally:
        n.down()
    assert n.caller not in sh("ip", "netns", "list").stdout


def source_ulaw(seconds: float) -> bytes:
    """A sweep whose every 20 ms frame differs from every other (so each frame is identifiable)."""
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (6000 * np.sin(2 * np.pi * (300 + 300 * t) * t) + 50 * np.sin(2 * np.pi * 7 * t)).astype("<i2")
    return pcm16_to_ulaw(pcm.tobytes())


def frames_in_order(received: bytes, source_ulaw: bytes) -> tuple[int, int]:
    """(frames received, frames missing inside the stream), asserting every received 20 ms frame
    is bit-exact with a source frame and that they come in source order."""
    src = [ulaw_to_pcm16(source_ulaw[o : o + 160]) for o in range(0, len(source_ulaw), 160)]
    index = {f: i for i, f in enumerate(src)}
    assert len(index) == len(src), "source frames must be distinct"
    assert len(received) % 320 == 0
    got = [index.get(received[o : o + 320], -1) for o in range(0, len(received), 320)]
    assert -1 not in got, f"{got.count(-1)} received frames match no source frame"
    assert got == sorted(set(got)), "frames out of order or repeated"
    return len(got), got[-1] - got[0] + 1 - len(got)


async def sipp_in(net: Net, scenario: Path, port: int, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", net.caller, str(SIPP), "-sf", str(scenario), f"{net.server_ip}:{port}",
        "-i", net.caller_ip, "-mi", net.caller_ip, "-p", "5062", "-mp", "40000",
        "-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")[-1500:]


async def call_through(net: Net, app: App, scenario: Path, *extra: str) -> Any:
    """Run flowcat in the server namespace and sipp in the caller's; returns the call's RTPSession."""
    with net.inside(net.server):
        srv = SIPServer(app, host=net.server_ip, port=0, rtp_ports=RTP, timers=Timers(t1=0.1))
        await srv.start()
        try:
            run = asyncio.ensure_future(sipp_in(net, scenario, srv.port, *extra))
            await asyncio.wait_for(app.called.wait(), 15)
            media = app.calls[0][0].media  # kept: the transport lets go of it when the call ends
            rc, out = await run
            assert rc == 0, out
            await asyncio.wait_for(srv.wait_calls_ended(), 10)
        finally:
            await srv.stop()
    assert media is not None
    return media


async def test_ten_percent_loss_audio_bit_exact_where_it_arrived_and_dtmf_intact(
    net: Net, tmp_path: Path
) -> None:
    kernel = "netem" if net.netem("loss", "10%") else "nft" if net.nft_loss(10) else ""
    if not kernel:
        missing("a loss qdisc or rule: tc netem (sch_netem) or nftables (apt-get install -y nftables)")
    ulaw = source_ulaw(4.0)
    (tmp_path / "call.ulaw").write_bytes(ulaw)
    scenario = tmp_path / "uac.xml"
    text = (SCEN / "uac_pcmu_stream.xml").read_text()
    scenario.write_text(text.replace("@ULAW@", str(tmp_path / "call.ulaw")).replace("@STREAM_MS@", "4300"))
    app = App()
    media = await call_through(net, app, scenario)
    rec = app.calls[0][2]
    received, gaps = frames_in_order(bytes(rec.audio), ulaw)
    total = len(ulaw) // 160
    assert received + gaps <= total
    assert gaps == media.jitter.lost  # every gap inside the stream is accounted as lost
    assert 0 < total - received < total * 0.3  # ~10 % of 200 frames lost, not more
    if kernel == "nft":
        assert net.nft_dropped() >= gaps  # the kernel dropped them (and some DTMF packets, maybe)
    assert rec.dtmf == ["4", "2", "#"]  # 3 end packets + 7 updates per digit: survives 10 % loss


class ImpairedPeer(asyncio.DatagramProtocol):
    """The caller's RTP: learns flowcat's address from its first packet, then sends the audio
    (and RFC 4733 digits on their own SSRC) with a seeded 40 ± 20 ms normal delay per packet
    (``delay=False``: straight, the kernel's netem delays them)."""

    def __init__(self, ulaw: bytes, digits: str, *, delay: bool, seed: int = 18) -> None:
        self.ulaw = ulaw
        self.digits = digits
        self.delay = delay
        self.rng = random.Random(seed)
        self.transport: asyncio.DatagramTransport | None = None
        self.dest: tuple[str, int] | None = None
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.departures: list[tuple[float, int]] = []  # (departure, audio frame) to count reorders

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.dest is None:
            self.dest = (addr[0], addr[1])
            self.started.set()
            asyncio.get_running_loop().create_task(self._stream())

    def _at(self, t: float, pkt: bytes) -> float:
        loop = asyncio.get_running_loop()
        when = t + (max(0.0, self.rng.gauss(0.040, 0.020)) if self.delay else 0.0)
        loop.call_at(when, self._send, pkt)
        return when

    def _send(self, pkt: bytes) -> None:
        if self.transport is not None and self.dest is not None:
            self.transport.sendto(pkt, self.dest)

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        frames = len(self.ulaw) // 160
        for i in range(frames):
            pkt = build_rtp(0, i == 0, 1000 + i, 160 * i, 0x1111, self.ulaw[160 * i : 160 * i + 160])
            self.departures.append((self._at(t0 + 0.02 * i, pkt), i))
        keys = {"#": 11, "*": 10}
        seq = 5000
        for d, digit in enumerate(self.digits):  # during the audio, 600 ms apart
            start = t0 + 0.8 + 0.6 * d
            code = keys.get(digit, int(digit) if digit.isdigit() else 0)
            ts = 160 * int(start * 50)
            for k in range(10):  # 7 updates, then the end packet three times (RFC 4733 §2.5.1.4)
                end = k >= 7
                payload = build_telephone_event(code, end=end, duration=160 * min(k + 1, 8))
                self._at(start + 0.02 * min(k, 7) + (0.005 * (k - 6) if end else 0.0),
                         build_rtp(101, k == 0, seq, ts, 0x2222, payload))  # fmt: skip
                seq += 1
        await asyncio.sleep(t0 + 0.02 * frames + 0.3 - loop.time())
        self.finished.set()

    @property
    def reordered(self) -> int:
        """Audio packets that left after a later one (what the jitter buffer has to undo)."""
        order = [i for _, i in sorted(self.departures)]
        return sum(1 for a, b in zip(order, order[1:], strict=False) if b < a)


async def test_delay_and_jitter_with_reordering_audio_in_order_and_dtmf_intact(
    net: Net, tmp_path: Path
) -> None:
    kernel = net.netem("delay", "40ms", "20ms", "distribution", "normal")
    ulaw = source_ulaw(4.0)
    peer = ImpairedPeer(ulaw, "42#", delay=not kernel)
    loop = asyncio.get_running_loop()
    with net.inside(net.caller):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((net.caller_ip, 0))
    sock.setblocking(False)
    await loop.create_datagram_endpoint(lambda: peer, sock=sock)
    csv = tmp_path / "calls.csv"
    csv.write_text(f"SEQUENTIAL\n{sock.getsockname()[1]};\n")
    scenario = tmp_path / "uac.xml"
    scenario.write_text(SCENARIO.replace("@HOLD_MS@", "5500"))
    app = App()
    try:
        media = await call_through(net, app, scenario, "-inf", str(csv))
    finally:
        if peer.transport is not None:
            peer.transport.close()
    assert peer.finished.is_set()
    if not kernel:
        assert peer.reordered > 20  # the impairment really reordered the stream
    rec = app.calls[0][2]
    received, gaps = frames_in_order(bytes(rec.audio), ulaw)  # in source order: reordered
    assert gaps == media.jitter.lost  # what did not make it in time is accounted
    assert received >= 0.85 * len(ulaw) // 160  # the adaptive depth keeps most of it
    assert media.jitter.depth >= 1  # it had to grow
    assert rec.dtmf == ["4", "2", "#"]
