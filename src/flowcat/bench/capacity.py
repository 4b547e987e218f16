"""Capacity: concurrent calls per core at a bounded tail, flowcat vs pipecat 1.14.0 vs a raw-socket floor.

Each point starts a fresh server process pinned to the server core and a load
generator process (uvloop + picows) pinned to the other core (protocol of
performance-baseline §1: 16-byte header in every 20 ms frame, sends spread over
the period, warm-up, measured window, drain). Reports p50/p90/p99/p99.9/max
round trip, throughput, server CPU % from ``/proc/<pid>/task/*/schedstat`` over
the measured window, CPU µs per echoed frame and its ratio to the floor's.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import BenchError

__all__ = ["THRESHOLDS", "add_arguments", "check", "ensure_pipecat_venv", "main", "run_point"]

PIPECAT_VERSION = "1.14.0"
PIPECAT_VENV = Path.home() / ".cache" / "flowcat" / "bench" / f"pipecat-{PIPECAT_VERSION}"
_PIPECAT_IMPORTS = "import pipecat, fastapi, uvicorn, websockets, uvloop, loguru"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowcat bench capacity``."""
    p.add_argument("--calls", default="100,200,400,800,1200,1600", help="comma-separated call counts")
    p.add_argument("--vs-pipecat", action="store_true", help="also run pipecat 1.14.0 (own venv)")
    p.add_argument("--pipecat-calls", default="25,50,75,100,150", help="call counts for pipecat")
    p.add_argument("--carrier", choices=("raw", "twilio"), default="raw")
    p.add_argument(
        "--engine",
        choices=("aiohttp", "picows"),
        default="aiohttp",
        help="WebSocket library of flowcat's media path (serve --engine) and of the floor",
    )
    p.add_argument("--workers", default="1", help="flowcat worker counts, e.g. 1,2 (scaling rows)")
    p.add_argument(
        "--app",
        default="default",
        help="flowcat's processors: default (inline hops), async (pipecat-style async "
        "process_frame), both, or a module:function factory",
    )
    p.add_argument("--no-floor", action="store_true", help="skip the raw-socket floor")
    p.add_argument("--overload", action="store_true",
                   help="offer --overload-factor x each N to flowcat with --capacity N")
    p.add_argument("--overload-factor", type=float, default=1.5,
                   help="with --overload, the calls offered per admitted call (default 1.5; 2 = twice the load)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0, help="measured window (s)")
    p.add_argument("--drain", type=float, default=2.0)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--gen-cpu", type=int, default=1)
    p.add_argument("--fifo", action="store_true", help="run both under chrt -f 10 (SCHED_FIFO)")
    p.add_argument(
        "--pin-workers",
        action="store_true",
        help="with --workers N > 1, pin worker i to CPU i (serve --pin); by default the kernel "
        "balances them over the CPUs, which on a box where the generator needs a core of its own "
        "keeps a worker from sharing that core for the whole run",
    )
    p.add_argument("--quick", action="store_true", help="CI smoke: 20 calls, 2 s, no pipecat")
    p.add_argument("--json", action="store_true", help="print one JSON object per point (JSON lines)")
    p.add_argument("--results", default=None, help="markdown file to update (default bench/RESULTS.md)")
    p.add_argument("--plot", default=None, help="PNG plot path (default bench/capacity.png)")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md / the plot")
    p.add_argument("--pipecat-python", default=None, help="python of a ready pipecat venv")
    p.add_argument(
        "--check",
        action="store_true",
        help="hold every measured point to the thresholds (THRESHOLDS: throughput, p50); "
        "print PASS/FAIL and exit 1 when one is missed",
    )


# What `--check` holds every measured point to: (field, minimum, maximum), None for no bound. A --quick run on a
# busy 2-core machine meets them; they are performance bounds, so they live here, not in the unit tests.
THRESHOLDS: tuple[tuple[str, float | None, float | None], ...] = (
    ("throughput", 0.95, None),
    ("p50_ms", None, 100.0),
)


def check(rows: list[dict[str, Any]]) -> list[str]:
    """The thresholds each row misses, one line per miss (empty: every point passes)."""
    misses = []
    for r in rows:
        where = f"{r['system']} {r.get('engine')} W={r['workers']} N={r['calls']}"
        if r.get("offered"):
            where += f" offered={r['offered']}"
        for field, low, high in THRESHOLDS:
            v = r.get(field)
            if v is None:
                misses.append(f"{where}: {field} not measured ({r.get('error', 'no value')})")
            elif low is not None and v < low:
                misses.append(f"{where}: {field} {v} < {low}")
            elif high is not None and v >= high:
                misses.append(f"{where}: {field} {v} >= {high}")
    return misses


# ------------------------------------------------------------------ processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
    return out


def cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of ``pid`` and its descendants (all threads), from schedstat."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
    return total


def _pin(cpus: set[int]) -> Any:
    def pre() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)

    return pre


def _fifo(cmd: list[str], on: bool) -> list[str]:
    return ["chrt", "-f", "10", *cmd] if on else cmd


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError("server did not become ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def ensure_pipecat_venv(explicit: str | None = None) -> str:
    """Python of the pipecat 1.14.0 venv, creating it (idempotently, under a lock) if needed."""
    if explicit:
        return explicit
    py = PIPECAT_VENV / "bin" / "python"
    PIPECAT_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(PIPECAT_VENV.parent / f".pipecat-{PIPECAT_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ok = (
            py.exists()
            and subprocess.run([str(py), "-c", _PIPECAT_IMPORTS], capture_output=True).returncode == 0
        )
        if not ok:
            if not py.exists():
                subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(PIPECAT_VENV)], check=True)
            subprocess.run(
                [
                    "uv",
                    "pip",
                    "install",
                    "-q",
                    "-p",
                    str(py),
                    f"pipecat-ai=={PIPECAT_VERSION}",
                    "fastapi",
                    "uvicorn[standard]",
                    "uvloop",
                ],
                check=True,
            )
    return str(py)


_APPS = {"async": "flowcat.server._apps:async_app"}


def _server_cmd(
    system: str, port: int, args: argparse.Namespace, workers: int, capacity: int, app: str = "default"
) -> list[str]:
    if system == "flowcat":
        cmd = [sys.executable, "-m", "flowcat.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", str(workers), "--capacity", str(capacity), "--sample-rate", "8000"]
        cmd += ["--idle-timeout", "0", "--no-verify", "--drain-timeout", "1", "--engine", args.engine]
        cmd += ["--call-rate", "0"]  # the load generator opens every call from one address
        if app != "default":
            cmd += ["--app", _APPS.get(app, app)]
        if args.engine == "picows":  # the aiohttp app (webhooks) needs a port of its own
            cmd += ["--http-port", str(_free_port())]
        return cmd + (["--pin"] if workers > 1 and args.pin_workers else [])
    if system == "floor":
        return [
            sys.executable,
            "-m",
            "flowcat.bench._floor_sut",
            "--port",
            str(port),
            "--engine",
            args.engine,
        ]
    sut = Path(__file__).with_name("_pipecat_sut.py")
    return [args.pipecat_python_resolved, str(sut), "--port", str(port)]


def run_point(
    system: str,
    calls: int,
    args: argparse.Namespace,
    *,
    workers: int = 1,
    offered: int | None = None,
    app: str = "default",
) -> dict[str, Any]:
    """One measurement: fresh server, generator, CPU over the window. Returns the row."""
    port = _free_port()
    server_cpus = {args.server_cpu} if workers == 1 else set(range(max(2, workers)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    srv = subprocess.Popen(
        _fifo(_server_cmd(system, port, args, workers, calls, app), args.fifo),
        preexec_fn=_pin(server_cpus),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    offer = offered or calls
    path = "/ws?sample_rate=8000" if args.carrier == "raw" else f"/{args.carrier}/ws"
    cfg = {
        "url": f"ws://127.0.0.1:{port}{path}",
        "calls": offer,
        "carrier": args.carrier,
        "warmup": args.warmup,
        "duration": args.duration,
        "drain": args.drain,
        "cpu": args.gen_cpu,
    }
    row: dict[str, Any] = {
        "system": system,
        "engine": engine_of(system, args),
        "carrier": args.carrier,
        "workers": workers,
        "calls": calls,
    }
    if system == "flowcat":
        row["app"] = app
    if offered:
        row["offered"] = offer
    try:
        _wait_healthy(port, srv)
        gen = subprocess.Popen(
            _fifo([sys.executable, "-m", "flowcat.bench._loadgen", json.dumps(cfg)], args.fifo),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert gen.stdout is not None
        c0 = c1 = t0 = t1 = 0
        result: dict[str, Any] = {}
        limit = time.monotonic() + 120 + args.warmup + args.duration + args.drain + offer / 20
        for line in gen.stdout:
            if line.startswith("WINDOW_START"):
                c0, t0 = cpu_ns(srv.pid), time.monotonic_ns()
            elif line.startswith("WINDOW_END"):
                c1, t1 = cpu_ns(srv.pid), time.monotonic_ns()
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
            if time.monotonic() > limit:
                gen.kill()
                break
        gen.wait(timeout=30)
        if not result:
            err = gen.stderr.read() if gen.stderr else ""
            raise BenchError(f"load generator failed: {err[-400:]}")
    finally:
        _stop(srv)
    result.pop("calls", None)
    row.update(result)
    if t1 > t0:
        row["server_cpu_pct"] = round(100.0 * (c1 - c0) / (t1 - t0), 1)
        echoed = max(1, int(result.get("received", 0)))
        row["cpu_us_per_frame"] = round((c1 - c0) / 1000.0 / echoed, 2)
    else:
        row["server_cpu_pct"] = None
        row["cpu_us_per_frame"] = None
    row["flagged"] = bool(result.get("gen_lag_events", 0))
    return row


# ------------------------------------------------------------------ orchestration


def engine_of(system: str, args: argparse.Namespace) -> str:
    """The WebSocket library a system serves with in this run."""
    return "uvicorn" if system == "pipecat" else str(args.engine)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _apps(args: argparse.Namespace) -> list[str]:
    app = getattr(args, "app", "default")
    return ["default", "async"] if app == "both" else [app]


def plan(args: argparse.Namespace) -> list[tuple[str, int, int, int | None, str]]:
    """(system, calls, workers, offered, app) for every point, in run order."""
    calls = [20] if args.quick else _ints(args.calls)
    apps = _apps(args)
    points: list[tuple[str, int, int, int | None, str]] = []
    for n in calls:
        if not args.no_floor:
            points.append(("floor", n, 1, None, ""))
        for app in apps:
            for w in _ints(args.workers):
                points.append(("flowcat", n, w, None, app))
            if args.overload:
                points.append(("flowcat", n, 1, int(n * getattr(args, "overload_factor", 1.5)), app))
    if args.vs_pipecat and not args.quick:
        for n in _ints(args.pipecat_calls):
            points.append(("pipecat", n, 1, None, ""))
    return points


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    floor = {r["calls"]: r.get("cpu_us_per_frame") for r in rows if r["system"] == "floor"}
    for r in rows:
        f = floor.get(r["calls"])
        us = r.get("cpu_us_per_frame")
        r["cpu_vs_floor"] = round(us / f, 2) if us and f else None


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of the rows."""
    head = (
        "system",
        "engine",
        "W",
        "calls",
        "offer",
        "conn",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "thru",
        "cpu%",
        "us/fr",
        "xfloor",
    )
    lines = ["  ".join(f"{h:>7}" for h in head)]
    for r in rows:
        vals = (
            r["system"] + ("/async" if r.get("app") == "async" else ""),
            r.get("engine"),
            r["workers"],
            r["calls"],
            r.get("offered", ""),
            r.get("connected"),
            r.get("p50_ms"),
            r.get("p90_ms"),
            r.get("p99_ms"),
            r.get("p999_ms"),
            r.get("max_ms"),
            r.get("throughput"),
            r.get("server_cpu_pct"),
            r.get("cpu_us_per_frame"),
            r.get("cpu_vs_floor"),
        )
        lines.append(
            "  ".join(f"{'-' if v is None else v!s:>7}" for v in vals) + (" *" if r.get("flagged") else "")
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print a table (or JSON lines); update RESULTS.md and the plot."""
    if args.quick:
        args.warmup, args.duration, args.drain = 0.5, 2.0, 1.0
    args.pipecat_python_resolved = None
    if args.vs_pipecat and not args.quick:
        args.pipecat_python_resolved = ensure_pipecat_venv(args.pipecat_python)
    rows: list[dict[str, Any]] = []
    for system, n, w, offered, app in plan(args):
        try:
            row = run_point(system, n, args, workers=w, offered=offered, app=app or "default")
        except Exception as exc:  # one failed point must not lose the others
            row = {
                "system": system,
                "engine": engine_of(system, args),
                "carrier": args.carrier,
                "workers": w,
                "calls": n,
                "error": str(exc),
            }
        rows.append(row)
        if not args.json:
            print(
                f"  {system:8} {app:7} {row['engine']:7} W={w} N={n}{' offered=' + str(offered) if offered else ''}: "
                f"p99={row.get('p99_ms')} ms thru={row.get('throughput')} cpu={row.get('server_cpu_pct')}%",
                file=sys.stderr,
                flush=True,
            )
    _add_ratios(rows)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_table(rows))
    write = not args.no_write and (not args.quick or args.results is not None)
    if write:
        from ._plot import plot_p99, write_section

        root = Path.cwd()
        results = Path(args.results or root / "bench" / "RESULTS.md")
        png = Path(args.plot or results.with_name("capacity.png"))
        plotted = plot_p99(rows, png)
        write_section(results, rows, args, png if plotted else None)
    bad = any("error" in r or r.get("bad") for r in rows)
    if args.check:
        misses = check(rows)
        for line in misses:
            print(f"check: FAIL {line}", file=sys.stderr)
        print(f"check: {'FAIL' if misses else 'PASS'} ({len(rows)} points)", file=sys.stderr)
        bad = bad or bool(misses)
    return 1 if bad else 0
