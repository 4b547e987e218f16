"""The caller media of ``flowcat bench sip``: N RTP sockets, 20 ms μ-law each, echo measured.

sipp places the calls (signalling only); each call's SDP offer names one socket of
this process (sipp's ``-inf`` injection file, written here: one port per line). As
the answerer, flowcat first sends its (silent) stream to the offered address; the
first packet tells this socket flowcat's RTP port, and the socket then sends
``packets`` 20 ms μ-law packets (PT 0) to it from the same address, so flowcat's
symmetric-RTP latch keeps pointing here and the echo comes back to the same socket.
Sends are spread over the 20 ms period in 2 ms groups, on one timer for all calls.

**Receiving on the timer, not on readiness.** The sockets are not in the event loop:
each group's sockets are drained (non-blocking ``recvmsg`` until ``EAGAIN``) on the
same 2 ms tick, just before the group sends, so each socket every 20 ms. On loopback
the receiver's kernel path runs inside the *sender's* ``sendto``: were this process
waiting on its sockets, every packet flowcat sends would wake it on the other CPU
(an inter-processor interrupt, costly in a VM), charged to flowcat's ``sendto``, which
a NIC would not charge it (py-spy: 43-50 % of the worker's samples in that ``sendto``
at 300 calls). A 20 ms drain holds about one packet per socket; the receive buffer
(256 KiB) holds over a second of it. Arrival times stay exact: each socket has
``SO_TIMESTAMPNS``, and the kernel's receive time (``CLOCK_REALTIME``, which the send
times in the payloads use too) is read from the ``recvmsg`` ancillary data, so the
echo round trip and the jitter do not carry the drain's 20 ms granularity.

Each payload carries ``(call, sequence, send time)`` nibble-coded into μ-law codes
that survive μ-law → PCM16 → μ-law (:func:`flowcat.bench._loadgen.twilio_payload`),
so every echoed packet is matched to the one sent: its round trip, and whether it
came back at all. Also measured per call, on flowcat's stream: packets received,
sequence gaps (lost on the way here) and the RFC 3550 interarrival jitter.

Control lines on stdout: ``READY <csv>``, ``WINDOW_START``, ``WINDOW_END`` (the
window opens ``settle`` s after every call is streaming), ``RESULT <json>``. Invoke
as ``python -m flowcat.bench._sip_media '<json config>'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from ._loadgen import parse_twilio_payload, twilio_payload

_HDR = struct.Struct("!BBHII")
_GROUPS = 10  # sends spread over the 20 ms period: one group every 2 ms
_TICK_NS = 20_000_000 // _GROUPS
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux (Python 3.11 lacks the name)
_SCM_TIMESTAMPNS = _SO_TIMESTAMPNS  # the control message carries the option's number
_TSPEC = struct.Struct("@qq")  # struct timespec (64-bit Linux)
_ANC = socket.CMSG_SPACE(_TSPEC.size)


class CallMedia:
    """One call's RTP socket: sends on the shared timer, drained on it too (see the module docstring)."""

    def __init__(self, index: int, stats: Stats, sock: socket.socket) -> None:
        self.index = index
        self.stats = stats
        self.sock = sock
        self.dest: tuple[str, int] | None = None
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.sent = 0
        self.echoed = 0
        self.received = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self._base = -1
        self._high = -1  # extended highest sequence number

    def drain(self) -> None:
        """Take every datagram waiting at the socket, each with the kernel's arrival time."""
        recvmsg = self.sock.recvmsg
        while True:
            try:
                data, anc, _, addr = recvmsg(2048, _ANC)
            except OSError:  # EAGAIN: nothing more (or an ICMP error queued on the socket)
                return
            now = time.time_ns()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(raw) >= _TSPEC.size:
                    sec, nsec = _TSPEC.unpack_from(raw)
                    now = sec * 1_000_000_000 + nsec
            self.packet(data, addr, now)

    def packet(self, data: bytes, addr: tuple[Any, ...], now: int) -> None:
        """One datagram from flowcat, arrived at ``now`` (ns, CLOCK_REALTIME)."""
        if len(data) < 12:
            return
        if self.dest is None:
            self.dest = (addr[0], addr[1])
            self.stats.started(self)
        _, _, seq, ts, _ = _HDR.unpack_from(data)
        self.received += 1
        # RFC 3550 A.8: interarrival jitter in timestamp units (8 kHz)
        transit = now * 8e-6 - ts
        if self._transit is not None:
            d = transit - self._transit
            d = d + 2**32 if d < -(2**31) else d - 2**32 if d > 2**31 else d
            self.jitter += (abs(d) - self.jitter) / 16
        self._transit = transit
        if self._high < 0:
            self._base = self._high = seq
        else:
            delta = (seq - self._high) & 0xFFFF
            if delta < 0x8000:
                self._high += delta
        got = parse_twilio_payload(data[12:])
        if got is not None and got[0] == self.index:
            self.echoed += 1
            if self.stats.in_window:
                self.stats.rtts.append((now - got[2]) / 1e6)

    def send_next(self) -> None:
        if self.dest is None:
            return
        payload = twilio_payload(self.index, self.sent, time.time_ns())
        with contextlib.suppress(OSError):  # a full buffer: the packet counts as lost
            self.sock.sendto(_HDR.pack(0x80, 0, self.seq, self.ts, self.ssrc) + payload, self.dest)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        self.sent += 1

    @property
    def seq_lost(self) -> int:
        return 0 if self._high < 0 else max(0, self._high - self._base + 1 - self.received)


class Stats:
    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.active = 0
        self.in_window = False
        self.rtts: list[float] = []
        self.all_started = asyncio.Event()

    def started(self, call: CallMedia) -> None:
        self.active += 1
        if self.active >= self.calls:
            self.all_started.set()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n = int(cfg["calls"])
    packets = int(cfg["packets"])
    stats = Stats(n)
    calls: list[CallMedia] = []
    for i in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        # the kernel stamps each datagram's arrival (on loopback: inside flowcat's sendto)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        sock.bind((cfg.get("host", "127.0.0.1"), 0))
        sock.setblocking(False)
        calls.append(CallMedia(i, stats, sock))
    csv = Path(cfg["csv"])
    ports = [c.sock.getsockname()[1] for c in calls]
    csv.write_text("SEQUENTIAL\n" + "".join(f"{p};\n" for p in ports))  # noqa: ASYNC240 - before the calls start
    print(f"READY {csv}", flush=True)

    lag_events = 0
    done = asyncio.Event()
    groups = [calls[g::_GROUPS] for g in range(_GROUPS)]
    t_next = time.monotonic_ns()
    k = 0
    last_send = time.monotonic()

    def tick() -> None:
        nonlocal t_next, k, lag_events, last_send
        now = time.monotonic_ns()
        if now - t_next > 10_000_000:
            lag_events += 1
        for c in groups[k]:
            c.drain()
            if c.dest is not None and c.sent < packets:
                c.send_next()
                last_send = time.monotonic()
        k = (k + 1) % _GROUPS
        t_next += _TICK_NS
        if t_next < now:  # fell behind: skip ahead, keep the phase
            t_next = now + _TICK_NS - (now - t_next) % _TICK_NS
        if not done.is_set():
            loop.call_at(loop.time() + (t_next - time.monotonic_ns()) / 1e9, tick)

    loop.call_soon(tick)
    deadline = float(cfg["deadline"])
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(stats.all_started.wait(), deadline)
        await asyncio.sleep(float(cfg["settle"]))
        print("WINDOW_START", flush=True)
        stats.in_window = True
        await asyncio.sleep(float(cfg["window"]))
        stats.in_window = False
        print("WINDOW_END", flush=True)
    except TimeoutError:
        print(f"only {stats.active} of {n} calls started", file=sys.stderr, flush=True)
    # until every started call has sent its packets, then one second for the last echoes
    while time.monotonic() - t0 < deadline:
        if all(c.sent >= packets for c in calls if c.dest is not None) and time.monotonic() - last_send > 1.0:
            break
        await asyncio.sleep(0.1)
    done.set()
    for c in calls:
        c.drain()  # the last echoes (the timer has stopped)
        c.sock.close()
    started = [c for c in calls if c.dest is not None]
    sent = sum(c.sent for c in started)
    echoed = sum(c.echoed for c in started)
    jit = [c.jitter / 8.0 for c in started]  # timestamp units → ms
    return {
        "started": len(started),
        "rtp_sent": sent,
        "rtp_echoed": echoed,
        "rtp_loss_pct": round(100.0 * (sent - echoed) / sent, 3) if sent else None,
        "rtp_received": sum(c.received for c in started),
        "rtp_seq_lost": sum(c.seq_lost for c in started),
        "jitter_ms_mean": round(sum(jit) / len(jit), 3) if jit else None,
        "jitter_ms_max": round(max(jit), 3) if jit else None,
        "echo_p50_ms": _pct(stats.rtts, 0.50),
        "echo_p99_ms": _pct(stats.rtts, 0.99),
        "gen_lag_events": lag_events,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if "cpu" in cfg:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {int(cfg["cpu"])})
    try:
        import uvloop

        result = uvloop.run(run(cfg))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        result = asyncio.run(run(cfg))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
