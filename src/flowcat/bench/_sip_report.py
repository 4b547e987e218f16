"""Reporting for ``flowcat bench sip``: the plain-text table and the RESULTS.md section."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["SECTION", "format_table", "render_section", "write_section"]

_COLUMNS = (
    ("calls", "calls"),
    ("answered", "ok"),
    ("answer_p50_ms", "ans50"),
    ("answer_p99_ms", "ans99"),
    ("rtp_loss_pct", "loss%"),
    ("rtp_seq_lost", "gaps"),
    ("jitter_ms_mean", "jit"),
    ("echo_p50_ms", "rtt50"),
    ("echo_p99_ms", "rtt99"),
    ("server_cpu_pct", "cpu%"),
    ("cpu_ms_per_call_s", "ms/call"),
    ("calls_per_core", "c/core"),
    ("ws_p99_ms", "ws99"),
    ("ws_server_cpu_pct", "wscpu%"),
    ("ws_calls_per_core", "wsc/core"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of the rows."""
    lines = ["  ".join(f"{h:>8}" for _, h in _COLUMNS)]
    for r in rows:
        vals = [r.get(k) for k, _ in _COLUMNS]
        line = "  ".join(f"{'-' if v is None else v!s:>8}" for v in vals)
        lines.append(
            line + (" *" if r.get("flagged") else "") + (f"  error: {r['error']}" if "error" in r else "")
        )
    return "\n".join(lines)


SECTION = "## SIP load (`flowcat bench sip`)"


def render_section(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The RESULTS.md section: the run's conditions and one table row per N."""
    import platform

    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    out = [
        SECTION,
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"sipp 3.6 (`-r {args.rate:g}` calls/s); one flowcat worker (`serve_sip`, echo app, uvloop) on CPU "
        f"{args.server_cpu}, sipp and the caller media on CPU {args.gen_cpu}"
        f"{', SCHED_FIFO' if getattr(args, 'fifo', False) else ''}; window {args.duration} s with every call up; "
        f"load average at the end {load} (`uptime`; the box is shared).",
        "",
        "| calls | answered | INVITE→200 p50 / p99 ms | RTP loss % | flowcat gaps | jitter ms (mean / max) "
        "| echo RTT p50 / p99 ms | server CPU % | CPU ms per call·s | calls per core "
        "| WS echo p50 / p99 ms | WS CPU % | WS calls per core |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def v(r: dict[str, Any], k: str) -> str:
        x = r.get(k)
        return "–" if x is None else str(x)

    for r in rows:
        if "error" in r:
            out.append(f"| {r['calls']} | error: {r['error']} |" + " |" * 11)
            continue
        out.append(
            f"| {r['calls']} | {v(r, 'answered')} | {v(r, 'answer_p50_ms')} / {v(r, 'answer_p99_ms')} "
            f"| {v(r, 'rtp_loss_pct')} | {v(r, 'rtp_seq_lost')} | {v(r, 'jitter_ms_mean')} / {v(r, 'jitter_ms_max')} "
            f"| {v(r, 'echo_p50_ms')} / {v(r, 'echo_p99_ms')} | {v(r, 'server_cpu_pct')} "
            f"| {v(r, 'cpu_ms_per_call_s')} | {v(r, 'calls_per_core')}{' *' if r.get('flagged') else ''} "
            f"| {v(r, 'ws_p50_ms')} / {v(r, 'ws_p99_ms')} | {v(r, 'ws_server_cpu_pct')} | {v(r, 'ws_calls_per_core')} |"
        )
    out += [
        "",
        "RTP loss: packets the callers sent whose echo never came back (the whole round trip through "
        "flowcat); flowcat gaps: flowcat's own packets missing at the callers (sequence gaps); jitter: "
        "RFC 3550 interarrival jitter of flowcat's streams; calls per core: calls ÷ the server's CPU "
        "share in the window (what one core would carry at that cost; on loopback the sender's "
        "`sendto` also pays the receiver's kernel work). `*`: the caller media process lagged > 10 ms "
        "at least once. WS: the same N as Twilio-framed WebSocket echo calls (`bench capacity`'s "
        "flowcat point, aiohttp) in the same run.",
        "",
    ]
    return "\n".join(out)


def write_section(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Create or update ``path`` with the SIP section; other sections untouched."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    section = render_section(rows, args)
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
