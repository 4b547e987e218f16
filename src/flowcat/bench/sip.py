"""SIP load: sipp places N concurrent calls into one flowcat worker echoing their 20 ms μ-law audio.

Per point: a fresh server process (:mod:`flowcat.bench._sip_sut`: ``serve_sip``
with the echo app, uvloop) pinned to the server core; on the other core the caller
media process (:mod:`flowcat.bench._sip_media`: one RTP socket per call, 20 ms PCMU,
every packet numbered and timed; its sockets are drained on its send timer, not waited
on, so that flowcat's ``sendto`` on loopback wakes no process on the other CPU, which a
NIC would not charge it either) and sipp (Debian ``sip-tester``), which places the
calls at ``--rate`` per second (INVITE, 200, ACK, hold, BYE) with the media
sockets' ports in their SDP offers (``-inf``). Reported:

* answer latency, INVITE → 200, p50/p99 (sipp's response-time measurement, ``-trace_rtt``);
* RTP loss: packets sent by the callers whose echo never came back (loss anywhere on
  the round trip through flowcat), flowcat's own packets missing at the callers
  (sequence gaps), the RFC 3550 interarrival jitter of flowcat's streams, and the
  echo round trip p50/p99;
* the kernel's UDP drops: ``/proc/net/snmp`` ``InErrors``/``RcvbufErrors``/``SndbufErrors``
  over the window (the whole namespace: other traffic counts too), and the ``drops`` of
  the open sockets at the window's end, flowcat's RTP ports apart from the others (the
  callers'), in the JSON rows (``udp_*``): which side's socket lost what; and the CPU of
  the caller media process and of sipp over the window (``caller_media_cpu_pct``,
  ``sipp_cpu_pct``: whether the load generator's core is the limit);
* server CPU over the window when every call is up (``/proc`` schedstat, as
  ``bench capacity``): % of one core, CPU ms per call-second, and the calls one
  core would carry at that cost (``calls_per_core``);
* beside it, the same N as WebSocket calls (``bench capacity``'s flowcat point, the
  same echo app and window), unless ``--no-ws``.

The target (issue 18) is 500 concurrent calls per core with no RTP loss caused by
flowcat. ``--quick`` is the CI smoke (10 calls, short window).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ._sip_report import SECTION, format_table, render_section, write_section
from .capacity import _fifo, _free_port, _pin, _stop, cpu_ns

__all__ = [
    "SCENARIO",
    "SECTION",
    "add_arguments",
    "format_table",
    "main",
    "render_section",
    "run_point",
    "udp_counters",
    "udp_socket_drops",
    "write_section",
]

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- flowcat bench sip: one call; media by flowcat.bench._sip_media at the port of field0. -->
<scenario name="flowcat bench sip">
  <send retrans="500" start_rtd="1">
    <![CDATA[

      INVITE sip:echo@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
      To: <sip:echo@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bench 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [field0] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=ptime:20

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="1"/>
  <send>
    <![CDATA[

      ACK sip:echo@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
      To: <sip:echo@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="@HOLD_MS@"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:echo@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
      To: <sip:echo@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowcat bench sip``."""
    p.add_argument("--calls", default="100,250,500", help="comma-separated concurrent call counts")
    p.add_argument("--rate", type=float, default=100.0, help="calls placed per second (sipp -r)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after the last call starts")
    p.add_argument("--duration", type=float, default=10.0, help="measured window (s)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--gen-cpu", type=int, default=1, help="CPU of sipp and the caller media")
    p.add_argument("--rtp-ports", default="20000-40000", help="flowcat's RTP port range")
    p.add_argument(
        "--fifo", action="store_true", help="run server, caller media and sipp under chrt -f 10 (SCHED_FIFO)"
    )
    p.add_argument("--no-ws", action="store_true", help="skip the WebSocket echo point beside each N")
    p.add_argument("--quick", action="store_true", help="CI smoke: 10 calls, 2 s window, no WebSocket")
    p.add_argument("--json", action="store_true", help="print one JSON object per point (JSON lines)")
    p.add_argument("--sipp", default=None, help="sipp binary (default: sipp on PATH)")
    p.add_argument("--results", default=None, help="markdown file to update (default bench/RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")


def _rtts(folder: Path) -> list[float]:
    """sipp's ``-trace_rtt`` file: ``date_ms;response_time_ms;rtd_no`` lines after a header."""
    out: list[float] = []
    for path in folder.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(";")
            with contextlib.suppress(ValueError, IndexError):
                out.append(float(parts[1]))
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (``/proc/net/snmp``, this network namespace): ``InErrors``,
    ``RcvbufErrors``, ``SndbufErrors``; empty where they cannot be read."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        rows = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
        return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)
                if k in ("InErrors", "RcvbufErrors", "SndbufErrors")}  # fmt: skip
    return {}


def udp_socket_drops(ports: tuple[int, int]) -> tuple[int, int]:
    """Datagrams the kernel dropped at open UDP sockets (``/proc/net/udp``'s ``drops``, since
    each socket opened): (at local ports in ``ports``, at the others)."""
    inside = outside = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            f = line.split()
            with contextlib.suppress(ValueError, IndexError):
                port, drops = int(f[1].rsplit(":", 1)[1], 16), int(f[-1])
                if ports[0] <= port <= ports[1]:
                    inside += drops
                else:
                    outside += drops
    return inside, outside


def run_point(calls: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement: fresh server, caller media, sipp; CPU over the window. Returns the row."""
    sipp = args.sipp or shutil.which("sipp")
    if not sipp:
        raise BenchError("sipp not found (Debian package sip-tester)")
    ramp = calls / args.rate
    hold_s = ramp + args.settle + args.duration + 2.5
    packets = int((hold_s - 1.0) * 50)  # stop sending a second before sipp's BYE
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    row: dict[str, Any] = {"system": "flowcat-sip", "calls": calls}
    with tempfile.TemporaryDirectory(prefix="flowcat-bench-sip-") as tmp:
        folder = Path(tmp)
        scen = folder / "uac.xml"
        scen.write_text(SCENARIO.replace("@HOLD_MS@", str(int(hold_s * 1000))))
        fifo = getattr(args, "fifo", False)
        srv = subprocess.Popen(
            _fifo(
                [
                    sys.executable,
                    "-m",
                    "flowcat.bench._sip_sut",
                    "--port",
                    "0",
                    "--rtp-ports",
                    args.rtp_ports,
                ],
                fifo,
            ),
            preexec_fn=_pin({args.server_cpu}),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        media = sp = None
        try:
            assert srv.stdout is not None  # noqa: S101 - PIPE
            line = srv.stdout.readline()
            if not line.startswith("READY "):
                raise BenchError(f"SIP server did not start (exit {srv.poll()})")
            port = int(line.split()[1])
            cfg = {
                "calls": calls,
                "packets": packets,
                "settle": args.settle,
                "window": args.duration,
                "csv": str(folder / "calls.csv"),
                "deadline": hold_s + ramp + 30,
                "cpu": args.gen_cpu,
            }
            media = subprocess.Popen(
                _fifo([sys.executable, "-m", "flowcat.bench._sip_media", json.dumps(cfg)], fifo),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert media.stdout is not None  # noqa: S101 - PIPE
            if not media.stdout.readline().startswith("READY "):
                raise BenchError("caller media process did not start")
            # fmt: off
            cmd = [sipp, "-sf", str(scen), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(_free_port()),
                   "-inf", cfg["csv"], "-r", str(args.rate), "-l", str(calls), "-m", str(calls),
                   "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{int(hold_s + ramp + 30)}s", "-nostdin"]
            # fmt: on
            sp = subprocess.Popen(
                _fifo(cmd, fifo),
                cwd=tmp,
                preexec_fn=_pin({args.gen_cpu}),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            c0 = c1 = t0 = t1 = 0
            g0: tuple[int, int] = (0, 0)
            result: dict[str, Any] = {}
            udp0: dict[str, int] = {}
            lo, _, hi = args.rtp_ports.partition("-")
            for out in media.stdout:
                if out.startswith("WINDOW_START"):
                    c0, t0 = cpu_ns(srv.pid), time.monotonic_ns()
                    g0 = (cpu_ns(media.pid), cpu_ns(sp.pid))
                    udp0 = udp_counters()
                elif out.startswith("WINDOW_END"):
                    c1, t1 = cpu_ns(srv.pid), time.monotonic_ns()
                    g1 = (cpu_ns(media.pid), cpu_ns(sp.pid))
                    udp1 = udp_counters()
                    if t1 > t0:  # the other core: is the load generator the limit?
                        row["caller_media_cpu_pct"] = round(100.0 * (g1[0] - g0[0]) / (t1 - t0), 1)
                        row["sipp_cpu_pct"] = round(100.0 * (g1[1] - g0[1]) / (t1 - t0), 1)
                    for k, v in udp1.items():
                        if k in udp0:
                            row[f"udp_{k}_window"] = v - udp0[k]
                    row["udp_drops_flowcat"], row["udp_drops_other"] = udp_socket_drops((int(lo), int(hi or lo)))
                elif out.startswith("RESULT "):
                    result = json.loads(out[7:])
            media.wait(timeout=30)
            if not result:
                err = media.stderr.read() if media.stderr else ""
                raise BenchError(f"caller media failed: {err[-400:]}")
            try:
                sp.wait(timeout=hold_s + ramp + 40)
            except subprocess.TimeoutExpired:
                sp.kill()
                sp.wait(timeout=5)
            row["sipp_rc"] = sp.returncode
            answers = _rtts(folder)
        finally:
            for proc in (sp, media):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=5)
            _stop(srv)  # type: ignore[arg-type]  # text mode: same process handling
    row["answered"] = len(answers)
    row["answer_p50_ms"] = _pct(answers, 0.50)
    row["answer_p99_ms"] = _pct(answers, 0.99)
    row.update(result)
    if t1 > t0:
        cpu = (c1 - c0) / (t1 - t0)
        row["server_cpu_pct"] = round(100.0 * cpu, 1)
        row["cpu_ms_per_call_s"] = round(1000.0 * cpu / calls, 3)
        row["calls_per_core"] = int(calls / cpu) if cpu > 0 else None
    else:
        row["server_cpu_pct"] = row["cpu_ms_per_call_s"] = row["calls_per_core"] = None
    row["flagged"] = bool(result.get("gen_lag_events", 0))
    return row


def ws_point(calls: int, args: argparse.Namespace) -> dict[str, Any]:
    """The same N as WebSocket echo calls (``bench capacity``'s flowcat point)."""
    from .capacity import run_point as capacity_point

    ns = argparse.Namespace(
        engine="aiohttp",
        carrier="twilio",
        warmup=args.settle + 1.0,
        duration=args.duration,
        drain=2.0,
        server_cpu=args.server_cpu,
        gen_cpu=args.gen_cpu,
        fifo=getattr(args, "fifo", False),
        pin_workers=False,
    )
    row = capacity_point("flowcat", calls, ns)
    cpu = (row.get("server_cpu_pct") or 0) / 100.0
    return {
        "ws_p50_ms": row.get("p50_ms"),
        "ws_p99_ms": row.get("p99_ms"),
        "ws_throughput": row.get("throughput"),
        "ws_server_cpu_pct": row.get("server_cpu_pct"),
        "ws_calls_per_core": int(calls / cpu) if cpu > 0 else None,
    }


def main(args: argparse.Namespace) -> int:
    """Run the points; print a table (or JSON lines). Exit 1 when a point failed or lost calls."""
    if args.quick:
        args.calls, args.settle, args.duration, args.no_ws = "10", 0.5, 2.0, True
    rows: list[dict[str, Any]] = []
    for n in [int(x) for x in str(args.calls).split(",") if x.strip()]:
        try:
            row = run_point(n, args)
            if not args.no_ws:
                row.update(ws_point(n, args))
        except Exception as exc:  # one failed point must not lose the others
            row = {"system": "flowcat-sip", "calls": n, "error": str(exc)}
        rows.append(row)
        if not args.json:
            print(
                f"  sip N={n}: answered={row.get('answered')} loss={row.get('rtp_loss_pct')}% "
                f"cpu={row.get('server_cpu_pct')}% calls/core={row.get('calls_per_core')}",
                file=sys.stderr,
                flush=True,
            )
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_table(rows))
    if not args.no_write and (not args.quick or args.results is not None):
        write_section(Path(args.results or Path.cwd() / "bench" / "RESULTS.md"), rows, args)
    bad = any("error" in r or r.get("answered") != r["calls"] or r.get("started") != r["calls"] for r in rows)
    return 1 if bad else 0
