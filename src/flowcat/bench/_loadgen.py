"""Load generator for ``flowcat bench capacity`` (run in its own process, pinned to its own core).

Protocol (performance-baseline §1): N calls, each sends one 20 ms frame every
20 ms, sends spread evenly over the period in 1 ms buckets; every frame carries a
16-byte header ``conn_id u32, seq u32, t_send_ns i64`` and the round trip is
measured when the echo carrying that header comes back. Phases: connect, warm-up,
measured window, drain. Throughput = echoes (of frames sent in the window)
received by the end of the drain ÷ frames sent in the window.

Carriers:

* ``raw``: binary frames of 20 ms PCM16 at 8 kHz (320 bytes) whose first 16
  bytes are the header; the pipeline echoes the audio bytes unchanged (no
  resampling, the output's 20 ms chunks line up with the frames). The baseline's
  16 + 160 bytes would be 11 ms of PCM16 and be re-chunked by any paced output.
* ``twilio``: Twilio ``connected``/``start`` then ``media`` JSON with a 160-byte
  μ-law payload. The header is carried *inside the μ-law payload*, nibble-coded
  into bytes ``0xC0..0xCF`` behind a 2-byte marker: every such code survives
  μ-law → PCM16 → μ-law exactly (only ``0x7F`` does not), so it comes back
  intact through a pipeline at 8 kHz that decodes and re-encodes (no resampling).

Control lines on stdout: ``READY``, ``WINDOW_START``, ``WINDOW_END``, then
``RESULT <json>``. Invoke as ``python -m flowcat.bench._loadgen '<json config>'``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import sys
import time
from array import array
from typing import Any

HDR = struct.Struct("<IIq")
MARK = b"\xa5\x5a"
PERIOD_MS = 20
_NIB = bytes(range(0xC0, 0xD0))
_UNNIB = {c: i for i, c in enumerate(_NIB)}


def nibble_encode(hdr: bytes) -> bytes:
    """16 header bytes → 32 μ-law-safe bytes."""
    out = bytearray()
    for b in hdr:
        out.append(_NIB[b >> 4])
        out.append(_NIB[b & 15])
    return bytes(out)


def nibble_decode(data: bytes) -> bytes | None:
    """Inverse of :func:`nibble_encode`; None when a byte is not a nibble code."""
    out = bytearray()
    try:
        for i in range(0, len(data), 2):
            out.append((_UNNIB[data[i]] << 4) | _UNNIB[data[i + 1]])
    except (KeyError, IndexError):
        return None
    return bytes(out)


def twilio_payload(conn_id: int, seq: int, t_ns: int) -> bytes:
    """160 μ-law bytes carrying the header (marker + nibbles + 0xD5 padding)."""
    head = MARK + nibble_encode(HDR.pack(conn_id, seq, t_ns))
    return head + b"\xd5" * (160 - len(head))


def parse_twilio_payload(payload: bytes) -> tuple[int, int, int] | None:
    """Header from an echoed μ-law payload (at a 160-byte boundary), or None."""
    for off in range(0, len(payload), 160):
        if payload[off : off + 2] == MARK:
            raw = nibble_decode(payload[off + 2 : off + 34])
            if raw is not None:
                return HDR.unpack(raw)
    return None


class Stats:
    """Shared counters of the run."""

    def __init__(self) -> None:
        self.rtt_us = array("d")
        self.w0 = 1 << 62  # set when the measured window opens
        self.w1 = 1 << 62
        self.sent_window = 0
        self.recv_window = 0
        self.recv_total = 0
        self.bad = 0
        self.disconnected = 0


def make_listener(picows: Any, stats: Stats, conn_id: int, carrier: str) -> Any:
    """A picows listener checking and timing the echoes of one call."""

    class Listener(picows.WSListener):
        def __init__(self) -> None:
            self.last_seq = -1
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def on_ws_disconnected(self, transport: Any) -> None:
            stats.disconnected += 1

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            now = time.monotonic_ns()
            mt = frame.msg_type
            if mt == picows.WSMsgType.BINARY:
                data = frame.get_payload_as_bytes()
                if len(data) < 16:
                    stats.bad += 1
                    return
                cid, seq, t0 = HDR.unpack_from(data)
            elif mt == picows.WSMsgType.TEXT:
                text = frame.get_payload_as_ascii_text()
                i = text.find('"payload":')
                if i < 0:
                    return  # marks, clears, …: not audio
                i = text.index('"', i + 10) + 1
                hdr = parse_twilio_payload(base64.b64decode(text[i : text.index('"', i)]))
                if hdr is None:
                    stats.bad += 1
                    return
                cid, seq, t0 = hdr
            elif mt == picows.WSMsgType.CLOSE:
                transport.disconnect()
                return
            else:
                return
            if cid != conn_id or seq <= self.last_seq:
                stats.bad += 1
                return
            self.last_seq = seq
            stats.recv_total += 1
            if stats.w0 <= t0 < stats.w1:
                stats.recv_window += 1
                stats.rtt_us.append((now - t0) / 1000.0)

    return Listener


class Call:
    __slots__ = ("conn_id", "listener", "seq", "sid", "transport")

    def __init__(self, conn_id: int, transport: Any, listener: Any) -> None:
        self.conn_id = conn_id
        self.transport = transport
        self.listener = listener
        self.seq = 0
        self.sid = f"MZ{conn_id:032x}"


async def _connect(picows: Any, cfg: dict[str, Any], stats: Stats, n: int) -> tuple[list[Call], int, int]:
    calls: list[Call] = []
    rejected = failed = 0
    errors = cfg.setdefault("_errors", [])
    sem = asyncio.Semaphore(int(cfg.get("connect_concurrency", 64)))
    carrier = cfg["carrier"]

    async def one(i: int) -> None:
        nonlocal rejected, failed
        async with sem:
            try:
                tr, lis = await picows.ws_connect(make_listener(picows, stats, i, carrier), cfg["url"])
            except Exception as exc:  # refused upgrade (503) or network error
                if "503" in str(exc) or getattr(exc, "response", None) is not None and "503" in repr(exc):
                    rejected += 1
                else:
                    failed += 1
                    errors.append(repr(exc)[:300])
                return
            call = Call(i, tr, lis)
            if carrier == "twilio":
                tr.send(picows.WSMsgType.TEXT, b'{"event":"connected","protocol":"Call","version":"1.0.0"}')
                start = {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": call.sid,
                    "start": {
                        "accountSid": "AC0",
                        "streamSid": call.sid,
                        "callSid": f"CA{i:032x}",
                        "tracks": ["inbound"],
                        "customParameters": {},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
                tr.send(picows.WSMsgType.TEXT, json.dumps(start).encode())
            calls.append(call)

    await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(n))), timeout=float(cfg.get("connect_timeout", 60))
    )
    return calls, rejected, failed


def _send(picows: Any, call: Call, carrier: str, filler: bytes) -> None:
    seq = call.seq = call.seq + 1
    t = time.monotonic_ns()
    if carrier == "raw":
        call.transport.send(picows.WSMsgType.BINARY, HDR.pack(call.conn_id, seq, t) + filler)
    else:
        b64 = base64.b64encode(twilio_payload(call.conn_id, seq, t)).decode()
        msg = (
            f'{{"event":"media","sequenceNumber":"{seq + 2}","streamSid":"{call.sid}","media":'
            f'{{"track":"inbound","chunk":"{seq}","timestamp":"{seq * 20}","payload":"{b64}"}}}}'
        )
        call.transport.send(picows.WSMsgType.TEXT, msg.encode())


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    import picows

    stats = Stats()
    carrier = cfg["carrier"]
    loop = asyncio.get_running_loop()
    t_conn = time.monotonic()
    calls, rejected, failed = await _connect(picows, cfg, stats, int(cfg["calls"]))
    connect_s = time.monotonic() - t_conn
    print("READY", flush=True)
    buckets: list[list[Call]] = [[] for _ in range(PERIOD_MS)]
    for k, c in enumerate(calls):
        buckets[k % PERIOD_MS].append(c)
    filler = bytes([0x55]) * (320 - HDR.size)
    warm, dur, drain = float(cfg["warmup"]), float(cfg["duration"]), float(cfg["drain"])
    t_start = loop.time()
    t_w0, t_w1 = t_start + warm, t_start + warm + dur
    tick = 0
    max_lag = 0.0
    lag_over_5ms = 0
    in_window = False
    while True:
        due = t_start + tick * 0.001
        now = loop.time()
        if now >= t_w1:
            break
        if now < due:
            await asyncio.sleep(due - now)
            now = loop.time()
        lag = now - due
        if lag > max_lag:
            max_lag = lag
        if in_window and lag > 0.005:
            lag_over_5ms += 1
        if not in_window and now >= t_w0:
            in_window = True
            stats.w0 = time.monotonic_ns()
            print("WINDOW_START", flush=True)
        for c in buckets[tick % PERIOD_MS]:
            if not c.transport.is_disconnected:
                _send(picows, c, carrier, filler)
                if in_window:
                    stats.sent_window += 1
        tick += 1
    stats.w1 = time.monotonic_ns()
    print("WINDOW_END", flush=True)
    for _ in range(int(drain * 100)):
        if stats.recv_window >= stats.sent_window:
            break
        await asyncio.sleep(0.01)
    for c in calls:
        c.transport.disconnect()
    rtt = sorted(stats.rtt_us)

    def pct(p: float) -> float | None:
        return round(rtt[min(len(rtt) - 1, int(p * (len(rtt) - 1)))] / 1000.0, 3) if rtt else None

    cpu = sum(os.times()[:2])
    return {
        "calls": int(cfg["calls"]),
        "connected": len(calls),
        "rejected": rejected,
        "failed": failed,
        "connect_s": round(connect_s, 2),
        "sent": stats.sent_window,
        "received": stats.recv_window,
        "throughput": round(stats.recv_window / stats.sent_window, 4) if stats.sent_window else 0.0,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(rtt[-1] / 1000.0, 3) if rtt else None,
        "bad": stats.bad,
        "disconnected": stats.disconnected,
        "gen_max_lag_ms": round(max_lag * 1000, 2),
        "gen_lag_events": lag_over_5ms,
        "gen_cpu_s": round(cpu, 2),
        "window_s": round((stats.w1 - stats.w0) / 1e9, 3),
        "first_error": (cfg.get("_errors") or [None])[0],
    }


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    cpu = cfg.get("cpu")
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {int(cpu)})
        except OSError:
            pass
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(cfg))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
