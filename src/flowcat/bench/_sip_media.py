"""The caller media of ``flowcat bench sip``: N RTP sockets, 20 ms μ-law each, echo measured.

sipp places the calls (signalling only); each call's SDP offer names one socket of
this process (sipp's ``-inf`` injection file, written here: one port per line). As
the answerer, flowcat first sends its (silent) stream to the offered address; the
first packet tells this socket flowcat's RTP port, and the socket then sends
``packets`` 20 ms μ-law packets (PT 0) to it from the same address, so flowcat's
symmetric-RTP latch keeps pointing here and the echo comes back to the same socket.
Sends are spread over the 20 ms period in 2 ms groups, on one timer for all calls.

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


class CallMedia(asyncio.DatagramProtocol):
    def __init__(self, index: int, stats: Stats) -> None:
        self.index = index
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None
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

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < 12:
            return
        now = time.monotonic_ns()
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

    def send_next(self, now_ns: int) -> None:
        tr = self.transport
        if tr is None or self.dest is None:
            return
        payload = twilio_payload(self.index, self.sent, now_ns)
        tr.sendto(_HDR.pack(0x80, 0, self.seq, self.ts, self.ssrc) + payload, self.dest)
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
        proto = CallMedia(i, stats)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind((cfg.get("host", "127.0.0.1"), 0))
        sock.setblocking(False)
        await loop.create_datagram_endpoint(lambda p=proto: p, sock=sock)  # type: ignore[misc]
        calls.append(proto)
    csv = Path(cfg["csv"])
    ports = [c.transport.get_extra_info("sockname")[1] for c in calls if c.transport is not None]
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
            if c.dest is not None and c.sent < packets:
                c.send_next(now)
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
