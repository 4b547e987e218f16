"""Soak: calls of random length arriving and ending for minutes; memory, objects, tasks, fds and the tail stay flat.

``flowcat bench soak [--minutes 30] [--echo-calls 560] [--agent-calls 14] [--json]``

This process serves (the real server's routes on picows, the worker's
:class:`~flowcat.runtime.CollectorPolicy`, its lag probe and stall watchdog) two apps on two
ports: ``flowcat serve``'s echo app, and, with ``--agent-calls``, the agent of ``flowcat
bench agent`` (Silero VAD, Deepgram STT, OpenAI LLM, Cartesia TTS) on the fake providers of
``python -m flowcat.testing.fakes`` (its own process). The callers run in their own process
(:mod:`flowcat.bench._soak_client`): ``--echo-calls`` and ``--agent-calls`` slots, each dialling
one call after another of ``--min-call``..``--max-call`` seconds (compressed time: real calls
last 30 s to 5 min), so calls arrive and end continuously at a steady number of live calls.
The defaults are ~70 % of this machine's capacity: 800 echo calls at a 50 pps p99 ≤ 40 ms
(``flowcat bench capacity --engine picows``) and 20 agent sessions (``flowcat bench agent``).

Phases: a warm-up (``--warmup`` s of calls, then every call ends) → snapshot A (no call live)
→ the soak (``--minutes``, a row every ``--window`` s) → every call ends → snapshot B.
A snapshot, taken in this process while no call is live: a deep collection (cycles left
among frozen objects; what it found counted by type), gc-tracked objects counted by type (frozen ones included), asyncio
tasks, open file descriptors, RSS. Per window: RSS (max of 1 s samples), live calls,
collections per generation and the worst pause (``gc.callbacks``), loop stalls, the echo
round trip p50/p99/p99.9/max at the callers, agent turns answered.

Checks (the exit status is 1 when one fails): RSS of every window ≤ the first window's +
``--rss-growth-mb``; no object type grew by more than ``--object-growth`` from A to B; no
task and no fd more at B than at A; the soak's collections found at most ``--cycles-per-call``
objects in reference cycles per ended call (a call's objects are freed by reference counting);
p99.9 flat: the median of the last third of the windows
≤ ``--p999-factor`` × the first third's + ``--p999-slack-ms`` (thirds of at least 3 windows); no call failed to connect;
≥ ``--min-answered`` of the agent turns answered.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

from ..errors import BenchError
from ._harness import install_uvloop, start_client, tagged_line
from ._soak_measure import _Gc, open_fds, rss_mb, snapshot

__all__ = ["add_arguments", "check", "main", "run", "snapshot"]

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    a = p.add_argument
    a("--minutes", type=float, default=30.0, help="length of the soak (default 30)")
    a("--echo-calls", type=int, default=560, help="live echo calls (default 560: 70%% of 800)")
    a(
        "--agent-calls",
        type=int,
        default=14,
        help="live agent calls on the fakes (default 14: 70%% of 20; 0: none)",
    )
    a(
        "--echo-app",
        default=None,
        help="module:factory serving the echo calls (default: flowcat serve's echo app)",
    )
    a(
        "--agent-idle-calls",
        type=int,
        default=0,
        help="live agent calls sending one frame a second (default 0)",
    )
    a("--pps", type=float, default=50.0, help="frames a second per echo call (default 50: real time)")
    a("--min-call", type=float, default=5.0, help="shortest call, s (default 5)")
    a("--max-call", type=float, default=30.0, help="longest call, s (default 30)")
    a("--gap", type=float, default=1.0, help="a slot waits 0..GAP s between calls (default 1)")
    a("--window", type=float, default=30.0, help="seconds per row (default 30)")
    a("--warmup", type=float, default=None, help="warm-up seconds (default --max-call)")
    a("--rss-growth-mb", type=float, default=16.0, help="RSS bound over the first window (default 16)")
    a("--object-growth", type=int, default=200, help="growth bound per object type, A to B (default 200)")
    a("--p999-factor", type=float, default=1.5)
    a("--p999-slack-ms", type=float, default=5.0)
    a(
        "--cycles-per-call",
        type=float,
        default=1.0,
        help="objects the collections may find per ended call (default 1)",
    )
    a("--min-answered", type=float, default=0.9, help="share of agent turns answered (default 0.9)")
    a("--json", action="store_true", help="print one JSON object instead of a table")


# ----------------------------------------------------------------------- server


async def _serve(app: Any, capacity: int) -> tuple[Any, Any, int]:
    from ..server._app import ServerConfig, ServerState
    from ..server._picows_engine import serve_picows

    kw: dict[str, Any] = {"app": app} if app is not None else {}
    cfg = ServerConfig(
        capacity=capacity, idle_timeout_secs=None, audio_in_sample_rate=8000, audio_out_sample_rate=8000, **kw
    )
    state = ServerState(cfg)
    server = await serve_picows(state, "127.0.0.1", 0, backlog=4096)
    return state, server, server.sockets[0].getsockname()[1]


def _start_fakes(port_file: str) -> Any:
    import subprocess

    from .agent import REPLY

    cmd = [
        sys.executable,
        "-m",
        "flowcat.testing.fakes",
        "--port-file",
        port_file,
        "--stt-delay",
        "0.15",
        "--llm-ttft",
        "0.2",
        "--llm-inter-token",
        "0.01",
        "--tts-ttfa",
        "0.1",
        "--llm-reply",
        REPLY,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise BenchError("the fakes did not start")
        time.sleep(0.05)
    return proc


async def _line(
    proc: asyncio.subprocess.Process, want: str, timeout: float, rows: list[Any] | None = None
) -> Any:
    """The JSON after the next ``want`` line (``WINDOW`` lines before it go to ``rows``)."""

    def other(tag: str, body: str) -> None:
        if tag == "WINDOW" and rows is not None:
            rows.append(json.loads(body))

    body = await tagged_line(proc, want, timeout, "soak client", other)
    return json.loads(body) if body else None


async def _no_calls(states: list[Any], timeout: float) -> bool:
    for _ in range(int(timeout / 0.05)):
        if not any(s.calls for s in states):
            return True
        await asyncio.sleep(0.05)
    return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve, drive the callers, measure (see the module docstring). Returns the result with its checks."""
    from ..runtime import CollectorPolicy

    fakes = None
    tmp = tempfile.TemporaryDirectory(prefix="flowcat-soak-")
    states: list[Any] = []
    servers: list[Any] = []
    cfg: dict[str, Any] = {
        "echo_calls": args.echo_calls,
        "agent_calls": args.agent_calls,
        "idle_calls": args.agent_idle_calls,
        "pps": args.pps,
        "min_call": args.min_call,
        "max_call": args.max_call,
        "gap": args.gap,
        "window": args.window,
        "warmup": args.warmup if args.warmup is not None else args.max_call,
        "soak": args.minutes * 60,
    }
    echo_app = None
    if args.echo_app:
        from ..server._apps import load_app

        echo_app = load_app(args.echo_app)
    st, srv, port = await _serve(echo_app, args.echo_calls * 2 + 50)
    states.append(st)
    servers.append(srv)
    cfg["echo_url"] = f"ws://127.0.0.1:{port}/ws?sample_rate=8000"
    if args.agent_calls or args.agent_idle_calls:
        from . import _agent_app

        port_file = os.path.join(tmp.name, "fakes.json")
        fakes = _start_fakes(port_file)
        os.environ[_agent_app.FAKES_ENV] = port_file
        _agent_app._urls = None
        await asyncio.to_thread(_agent_app.agent_app.warm_up)  # type: ignore[attr-defined]  # as flowcat serve does
        st, srv, port = await _serve(
            _agent_app.agent_app, (args.agent_calls + args.agent_idle_calls) * 2 + 10
        )
        states.append(st)
        servers.append(srv)
        cfg["agent_url"] = f"ws://127.0.0.1:{port}/ws?sample_rate=8000"
    collector = CollectorPolicy()
    collector.install()
    for s in states:
        s.collector = collector
    states[0].metrics.start_probe()  # the lag probe and the stall watchdog of the worker
    dog = states[0].metrics.watchdog
    pauses = _Gc()
    client = await start_client("flowcat.bench._soak_client", cfg)
    out: dict[str, Any] = {"config": {k: v for k, v in cfg.items() if not k.endswith("_url")}}
    rows: list[dict[str, Any]] = []
    server_rows: list[dict[str, Any]] = []
    try:
        out["warmup"] = await _line(client, "WARMED", cfg["warmup"] + 120)
        if not await _no_calls(states, 30):
            raise BenchError(
                f"{[len(s.calls) for s in states]} calls still live 30 s after the warm-up ended them"
            )
        await asyncio.sleep(1.0)
        snapshot(collector)  # warms the snapshot's own code paths (ABC caches, …)
        a = snapshot(collector)
        await asyncio.sleep(0.2)  # the snapshot's own stall is reported before the soak
        stalls0, dog.worst_secs = dog.stalls, 0.0
        assert client.stdin is not None
        gc.callbacks.append(pauses)
        client.stdin.write(b"GO\n")
        windows = asyncio.create_task(_windows(states, pauses, dog, cfg["window"], server_rows))
        try:
            out["callers"] = await _line(client, "DRAINED", cfg["soak"] + 180, rows)
        finally:
            windows.cancel()
            await asyncio.gather(windows, return_exceptions=True)
            del windows
        if not await _no_calls(states, 30):
            raise BenchError(
                f"{[len(s.calls) for s in states]} calls still live 30 s after the soak ended them"
            )
        await asyncio.sleep(1.0)
        gc.callbacks.remove(pauses)
        out["stalls"] = dog.stalls - stalls0  # the snapshots' own (blocking) counts are outside
        out["worst_stall_ms"] = round(dog.worst_secs * 1e3, 1)
        # Pooled keep-alive connections (HTTP to the fakes) close on their idle timeout: wait for
        # the fds to come back to A's count, bounded; how long it took is reported.
        t_fd = time.monotonic()
        for _ in range(80):  # bounded: 40 s
            if sum(open_fds().values()) <= sum(a["fds"].values()):
                break
            await asyncio.sleep(0.5)
        out["fd_wait_s"] = round(time.monotonic() - t_fd, 1)
        b = snapshot(collector)
        client.stdin.write(b"QUIT\n")
    finally:
        if pauses in gc.callbacks:
            gc.callbacks.remove(pauses)
        collector.uninstall()
        await states[0].metrics.stop_probe()
        if client.returncode is None:
            try:
                await asyncio.wait_for(client.wait(), 10)
            except TimeoutError:
                client.kill()
                await client.wait()
        for srv in servers:
            srv.close()
        if fakes is not None:
            fakes.kill()
            fakes.wait()
        tmp.cleanup()
    out["gc"] = pauses.summary()
    ended = sum((out["callers"].get("ended") or {}).values())
    out["gc"]["found_per_ended_call"] = round(pauses.total_found / max(1, ended), 2)
    out["windows"] = [{**srv_row, **row} for srv_row, row in zip(server_rows, rows, strict=False)]
    out["before"], out["after"] = _brief(a), _brief(b)
    growth = {k: b["types"][k] - a["types"].get(k, 0) for k in b["types"]}
    out["grown_types"] = dict(
        sorted(((k, v) for k, v in growth.items() if v > 0), key=lambda kv: -kv[1])[:15]
    )
    out["new_tasks"] = dict(b["tasks"] - a["tasks"])
    out["new_fds"] = dict(b["fds"] - a["fds"])
    out["checks"] = check(out, args)
    return out


async def _windows(
    states: list[Any], pauses: _Gc, dog: Any, window: float, rows: list[dict[str, Any]]
) -> None:
    """Server side of each window (merged with the callers' rows by index)."""
    t0 = time.monotonic()
    k = 1
    rss, live = 0.0, [10**9, 0]
    pauses.reset()
    stalls = dog.stalls
    while True:
        await asyncio.sleep(1.0)
        rss = max(rss, rss_mb())
        n = sum(len(s.calls) for s in states)
        live = [min(live[0], n), max(live[1], n)]
        if time.monotonic() - t0 >= k * window:
            rows.append(
                {
                    "rss_mb": round(rss, 1),
                    "live_min": live[0],
                    "live_max": live[1],
                    "gc": list(pauses.n),
                    "gc_worst_ms": round(pauses.worst_ms, 2),
                    "gc_worst_cpu_ms": round(pauses.worst_cpu_ms, 2),
                    "gc_found": pauses.found,
                    "stalls": dog.stalls - stalls,
                }
            )
            k += 1
            rss, live = 0.0, [10**9, 0]
            pauses.reset()
            stalls = dog.stalls


def _brief(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "rss_mb": s["rss_mb"],
        "objects": s["objects"],
        "cycles_found": s["cycles_found"],
        "cycle_types": dict(s["cycle_types"].most_common(10)),
        "tasks": sum(s["tasks"].values()),
        "fds": sum(s["fds"].values()),
    }


# ------------------------------------------------------------------------ checks


def check(r: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The bounds of the module docstring: ``{name: {"ok", "value", "bound"}}``."""
    out: dict[str, dict[str, Any]] = {}
    w = r["windows"]

    def put(name: str, ok: bool, value: Any, bound: Any) -> None:
        out[name] = {"ok": bool(ok), "value": value, "bound": bound}

    if w:
        growth = round(max(x["rss_mb"] for x in w) - w[0]["rss_mb"], 1)
        put("rss_growth_mb", growth <= args.rss_growth_mb, growth, args.rss_growth_mb)
    worst = max(r["grown_types"].items(), key=lambda kv: kv[1], default=("-", 0))
    put("object_growth", worst[1] <= args.object_growth, f"{worst[0]} +{worst[1]}", args.object_growth)
    put("tasks_left", not r["new_tasks"], r["new_tasks"], {})
    put("fds_left", not r["new_fds"], r["new_fds"], {})
    tails = [x["rtt_p999_ms"] for x in w if x.get("rtt_p999_ms") is not None]
    if len(tails) >= 3:
        third = min(len(tails) // 2, max(3, len(tails) // 3))
        first, last = statistics.median(tails[:third]), statistics.median(tails[-third:])
        bound = round(first * args.p999_factor + args.p999_slack_ms, 2)
        put("p999_flat_ms", last <= bound, round(last, 2), bound)
    per_call = r["gc"]["found_per_ended_call"]
    put("cycles_per_call", per_call <= args.cycles_per_call, per_call, args.cycles_per_call)
    callers = r.get("callers") or {}
    failed = sum((callers.get("failed") or {}).values())
    put("calls_failed", failed == 0, failed, 0)
    if callers.get("turns"):
        share = round(callers["answered"] / callers["turns"], 3)
        put("agent_answered", share >= args.min_answered, share, args.min_answered)
    return out


# -------------------------------------------------------------------------- CLI


def format_table(r: dict[str, Any]) -> str:
    """The result as text: one row per window, then the snapshots and the checks."""
    lines = [
        "| window | live | RSS MB | gc 0/1/2 | worst gc ms (CPU) | found | stalls | echo p50 / p99 / p99.9 / max ms | turns ok |",
        "|---:|---|---:|---|---|---:|---:|---|---|",
    ]
    for i, x in enumerate(r["windows"]):
        lines.append(
            f"| {i} | {x['live_min']}–{x['live_max']} | {x['rss_mb']} | {'/'.join(map(str, x['gc']))} | "
            f"{x['gc_worst_ms']} ({x['gc_worst_cpu_ms']}) | {x['gc_found']} | {x['stalls']} | {x['rtt_p50_ms']} / {x['rtt_p99_ms']} / {x['rtt_p999_ms']} / "
            f"{x['rtt_max_ms']} | {x['answered']}/{x['turns']} |"
        )
    g = r["gc"]
    lines += [
        "",
        f"collections 0/1/2: {g['collections']}, worst ms {g['worst_ms']} (CPU {g['worst_cpu_ms']}); "
        f"found in cycles {g['found_in_cycles']} ({g['found_per_ended_call']} per ended call); "
        f"loop stalls {r['stalls']} (worst {r['worst_stall_ms']} ms); callers {r['callers']}",
    ]
    lines += ["", f"before: {r['before']}", f"after:  {r['after']}", f"grown types: {r['grown_types']}", ""]
    for name, c in r["checks"].items():
        lines.append(f"{'ok  ' if c['ok'] else 'FAIL'} {name}: {c['value']} (bound {c['bound']})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``flowcat bench soak``."""
    install_uvloop()
    result = asyncio.run(run(args))
    result["host"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    print(json.dumps(result) if args.json else format_table(result))
    return 0 if all(c["ok"] for c in result["checks"].values()) else 1
