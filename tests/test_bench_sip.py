"""``flowcat bench sip``: the --quick smoke (sipp places 10 calls into one worker echoing their audio)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import missing
from flowcat.bench import sip

# Timing-sensitive (the SIP bench's load and echo timing): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial

if shutil.which("sipp") is None:
    missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")

FIELDS = {
    "answered", "answer_p50_ms", "answer_p99_ms", "rtp_sent", "rtp_echoed", "rtp_loss_pct", "rtp_seq_lost",
    "jitter_ms_mean", "echo_p50_ms", "echo_p99_ms", "server_cpu_pct", "cpu_ms_per_call_s", "calls_per_core",
    "udp_drops_flowcat", "udp_drops_other", "caller_media_cpu_pct", "sipp_cpu_pct",
}  # fmt: skip


def test_quick_smoke_calls_are_answered_and_their_audio_echoed() -> None:
    cmd = [sys.executable, "-m", "flowcat.cli", "bench", "sip", "--quick", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1, out.stderr[-2000:]
    row = rows[0]
    assert FIELDS <= row.keys(), row
    assert row["calls"] == row["answered"] == row["started"] == 10, row
    assert row["sipp_rc"] == 0
    assert 0 <= row["answer_p50_ms"] <= row["answer_p99_ms"] < 2000  # sipp measures in whole ms
    # every call streamed, and (nearly) every packet came back through flowcat's echo, matched by
    # the (call, sequence, send time) carried in its μ-law payload
    assert row["rtp_sent"] >= 10 * 50 * 2
    assert row["rtp_echoed"] >= 0.9 * row["rtp_sent"]
    assert row["rtp_received"] >= row["rtp_echoed"]
    assert row["server_cpu_pct"] is not None and row["calls_per_core"] > 0
    assert out.returncode == 0
    table = sip.format_table(rows)
    assert "ans99" in table and "c/core" in table


def test_udp_socket_drops_are_counted_at_the_socket_that_dropped_them() -> None:
    import socket

    full = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    full.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # the kernel's minimum: a few datagrams
    full.bind(("127.0.0.1", 0))
    port = full.getsockname()[1]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        before = sip.udp_counters()
        for _ in range(200):
            tx.sendto(bytes(172), ("127.0.0.1", port))  # never read: the buffer fills, the rest is dropped
        inside, _ = sip.udp_socket_drops((port, port))
        assert inside > 100
        after = sip.udp_counters()
        assert after["RcvbufErrors"] - before["RcvbufErrors"] >= inside
    finally:
        full.close()
        tx.close()


def test_the_scenario_offers_the_media_port_of_the_injection_file() -> None:
    assert "m=audio [field0] RTP/AVP 0 101" in sip.SCENARIO
    assert '<recv response="200" rtd="1"/>' in sip.SCENARIO and 'start_rtd="1"' in sip.SCENARIO
    assert "@HOLD_MS@" in sip.SCENARIO


def test_results_section_is_written_and_replaced_without_touching_others(tmp_path: Path) -> None:
    args = argparse.Namespace(rate=100.0, server_cpu=0, gen_cpu=1, fifo=True, duration=10.0)
    row = {"calls": 500, "answered": 500, "answer_p50_ms": 0.0, "answer_p99_ms": 8.0, "rtp_loss_pct": 0.0,
           "rtp_seq_lost": 0, "calls_per_core": 812, "ws_calls_per_core": 700}  # fmt: skip
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Capacity benchmark\n\nkept\n")
    sip.write_section(path, [row], args)
    sip.write_section(path, [dict(row, calls_per_core=900), {"calls": 1000, "error": "boom"}], args)
    text = path.read_text()
    assert text.count(sip.SECTION) == 1 and "kept" in text
    assert "| 500 | 500 | 0.0 / 8.0 | 0.0 | 0 |" in text and "| 900 " in text and "| 812 " not in text
    assert "error: boom" in text and "SCHED_FIFO" in text and "load average" in text


def test_caller_media_drains_its_socket_with_the_kernels_arrival_times() -> None:
    """The callers read on their timer, not on readiness (flowcat's sendto wakes nobody): a
    drain takes every datagram waiting, each timed by the kernel's receive stamp, not the drain."""
    import socket
    import time

    from flowcat.bench import _sip_media
    from flowcat.bench._loadgen import twilio_payload

    class _Stats:
        in_window = True
        rtts: list[float] = []
        starts = 0

        def started(self, call: object) -> None:
            self.starts += 1

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, _sip_media._SO_TIMESTAMPNS, 1)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    stats = _Stats()
    call = _sip_media.CallMedia(3, stats, rx)  # type: ignore[arg-type]
    try:
        call.drain()  # nothing yet: returns at once
        assert call.received == 0 and call.dest is None
        # The kernel turns receive stamping on for the first such socket a moment later (a
        # deferred work item): until then a datagram is stamped when read. Wait for it.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            tx.sendto(b"probe", rx.getsockname())
            time.sleep(0.05)
            _, anc, _, _ = rx.recvmsg(64, _sip_media._ANC)
            sec, nsec = _sip_media._TSPEC.unpack_from(anc[0][2])
            if time.time_ns() - (sec * 1_000_000_000 + nsec) > 40_000_000:
                break
        sent_at = time.time_ns()
        for seq in range(3):
            header = bytes((0x80, 0)) + seq.to_bytes(2, "big") + (160 * seq).to_bytes(4, "big") + bytes(4)
            tx.sendto(header + twilio_payload(3, seq, sent_at), rx.getsockname())
        time.sleep(0.1)  # the drain comes 100 ms after the arrivals
        call.drain()
        assert call.received == call.echoed == 3 and stats.starts == 1
        assert call.dest == tx.getsockname() and call.seq_lost == 0
        # each arrival is the kernel's stamp (at the send, on loopback), not the drain's time
        assert len(stats.rtts) == 3 and max(stats.rtts) < 50.0, stats.rtts
    finally:
        rx.close()
        tx.close()
