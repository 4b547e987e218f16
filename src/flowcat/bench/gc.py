"""Collector pauses with N live calls, and what an ended call leaves to the collector.

``flowcat bench gc [--calls 2000] [--engine picows|aiohttp] [--churn 500] [--policy freeze|none] [--json]``

This process serves raw-PCM calls (``flowcat serve``'s default echo app, the
worker's collector policy) while a client process (:mod:`flowcat.bench._gc_client`)
connects ``--calls`` calls, each sending one 20 ms frame a second. Measured here,
with ``gc.callbacks`` timing every collection:

* **ramp-up**: the automatic collections while the calls connect;
* **full collection**: ``gc.collect()`` three times with every call live (the pause a
  full collection costs at that size);
* **churn**: ``--churn`` calls end and as many start while the rest stay live;
* **left per ended call**: every call then ends with the collector off; a collection of
  everything (frozen objects included) counts the objects that were left in reference
  cycles, divided by the calls that ended.

``--policy none`` keeps CPython's own full collections (only the start-up freeze of
the worker before :class:`~flowcat.runtime.CollectorPolicy`): the "before".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import time
from collections import Counter
from typing import Any

from ._harness import PauseClock, install_uvloop, start_client, tagged_line

__all__ = ["add_arguments", "main", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    p.add_argument("--calls", type=int, default=2000, help="live calls (default 2000)")
    p.add_argument("--churn", type=int, default=500, help="calls ended and replaced while live (default 500)")
    p.add_argument("--engine", choices=("picows", "aiohttp"), default="picows")
    p.add_argument(
        "--policy",
        choices=("freeze", "none"),
        default="freeze",
        help="freeze: the worker's CollectorPolicy; none: CPython's full collections (before)",
    )
    p.add_argument("--freeze-every", type=int, default=1, help="CollectorPolicy.freeze_every")
    p.add_argument(
        "--scan", action="store_true", help="CollectorPolicy.scan (a full collection before each freeze)"
    )
    p.add_argument(
        "--young-secs",
        type=float,
        default=0.25,
        help="CollectorPolicy.young_secs (0: off, CPython's count alone)",
    )
    p.add_argument(
        "--gen1-threshold",
        type=int,
        default=3,
        help="CollectorPolicy.gen1_threshold (default 3; 0: CPython's 10)",
    )
    p.add_argument("--hold", type=float, default=3.0, help="seconds live before the measurements")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


class _Pauses(PauseClock):
    """Every collection's pause, by phase (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = "start-up"
        self.by_phase: dict[str, list[tuple[int, float, float]]] = {}

    def collected(self, info: dict[str, Any], ms: float, cpu: float) -> None:
        self.by_phase.setdefault(self.phase, []).append((info["generation"], ms, cpu))

    def summary(self) -> dict[str, Any]:
        """Per phase: the worst pause (wall and this thread's CPU time) per generation.
        Wall time includes the host taking the CPU away mid-collection; CPU time is
        the collector's own work."""
        out: dict[str, Any] = {}
        for phase, rows in self.by_phase.items():
            gens: dict[str, Any] = {}
            for g in (0, 1, 2):
                ms = [p for gen, p, _ in rows if gen == g]
                cpu = [c for gen, _, c in rows if gen == g]
                gens[str(g)] = {
                    "n": len(ms),
                    "worst_ms": round(max(ms), 2) if ms else None,
                    "worst_cpu_ms": round(max(cpu), 2) if cpu else None,
                }
            out[phase] = {
                "worst_ms": round(max(p for _, p, _ in rows), 2),
                "worst_cpu_ms": round(max(c for _, _, c in rows), 2),
                "by_generation": gens,
            }
        return out


async def _serve(engine: str, calls: int) -> tuple[Any, int, Any]:
    from ..server._app import ServerConfig, ServerState, create_app

    state = ServerState(ServerConfig(capacity=calls * 2 + 100, idle_timeout_secs=None))
    if engine == "picows":
        from ..server._picows_engine import serve_picows

        server = await serve_picows(state, "127.0.0.1", 0, backlog=4096)
        return state, server.sockets[0].getsockname()[1], server
    from aiohttp import web

    runner = web.AppRunner(create_app(state.config, state=state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    return state, site._server.sockets[0].getsockname()[1], runner  # type: ignore[union-attr]


async def _line(proc: asyncio.subprocess.Process, want: str, timeout: float) -> str:
    return await tagged_line(proc, want, timeout, "gc client")


def _say(proc: asyncio.subprocess.Process, cmd: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(cmd.encode() + b"\n")


async def _until(pred: Any, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.05)
    return True


async def run(
    calls: int,
    *,
    churn: int,
    engine: str,
    policy: str,
    hold: float,
    freeze_every: int = 1,
    scan: bool = False,
    young_secs: float = 0.25,
    gen1_threshold: int = 3,
) -> dict[str, Any]:
    """Serve ``calls`` live calls in this process and measure (see the module docstring)."""
    state, port, server = await _serve(engine, calls)
    collector: Any = None
    if policy == "freeze":
        from ..runtime import CollectorPolicy

        collector = CollectorPolicy(
            freeze_every=freeze_every, scan=scan, young_secs=young_secs or None, gen1_threshold=gen1_threshold
        )
        collector.install()
    else:  # the worker before CollectorPolicy: freeze what start-up loaded, nothing more
        gc.collect()
        gc.freeze()
    pauses = _Pauses()
    gc.callbacks.append(pauses)
    cfg = {"url": f"ws://127.0.0.1:{port}/ws?sample_rate=8000", "calls": calls}
    client = await start_client("flowcat.bench._gc_client", cfg)
    out: dict[str, Any] = {"calls": calls, "churn": churn, "engine": engine, "policy": policy}
    try:
        pauses.phase = "ramp-up"
        t0 = time.perf_counter()
        await _line(client, "READY", 300)
        await _until(lambda: len(state.calls) >= calls, 60)
        out["ramp_s"] = round(time.perf_counter() - t0, 2)
        pauses.phase = "live"
        await asyncio.sleep(hold)
        out["live_calls"] = len(state.calls)
        out["tracked_objects"] = len(gc.get_objects())
        out["frozen_objects"] = gc.get_freeze_count()
        full, full_cpu = [], []
        pauses.phase = "full collection"
        for _ in range(3):
            t, c = time.perf_counter(), time.thread_time_ns()
            gc.collect()
            full.append((time.perf_counter() - t) * 1e3)
            full_cpu.append((time.thread_time_ns() - c) / 1e6)
            await asyncio.sleep(0.2)
        out["full_collection_ms"] = [round(x, 2) for x in full]
        out["full_collection_cpu_ms"] = [round(x, 2) for x in full_cpu]
        pauses.phase = "churn"
        ended0 = state.finished_calls
        _say(client, f"CHURN {churn}")
        await _line(client, "CHURNED", 300)
        await _until(lambda: state.finished_calls - ended0 >= churn, 30)
        await asyncio.sleep(hold)
        out["churned"] = state.finished_calls - ended0
        # Every call ends with the collector off: what is left in cycles is still there after.
        pauses.phase = "end"
        gc.collect()
        gc.disable()
        ended0 = state.finished_calls
        _say(client, "END")
        done = await _line(client, "DONE", 120)
        out["echoes"] = json.loads(done)["echoes"]
        await _until(lambda: not state.calls, 60)
        await asyncio.sleep(0.5)
        ended = state.finished_calls - ended0
        gc.callbacks.remove(pauses)
        if collector is not None:
            collector.uninstall()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.unfreeze()
        found = gc.collect()
        owned = Counter(
            type(o).__qualname__ for o in gc.garbage if (type(o).__module__ or "").startswith("flowcat")
        )
        gc.garbage.clear()
        gc.set_debug(0)
        out["ended"] = ended
        out["left_per_ended_call"] = round(found / max(1, ended), 1)
        out["flowcat_objects_left_per_ended_call"] = round(sum(owned.values()) / max(1, ended), 1)
        out["flowcat_objects_left"] = dict(owned.most_common(12))
    finally:
        gc.enable()
        if collector is not None:
            collector.uninstall()
        if pauses in gc.callbacks:
            gc.callbacks.remove(pauses)
        if client.returncode is None:
            client.kill()
            await client.wait()
        if engine == "picows":
            server.close()
        else:
            await server.cleanup()
    out["pauses"] = pauses.summary()
    live_phases = ("ramp-up", "live", "churn")
    for key in ("worst_ms", "worst_cpu_ms"):
        out[f"worst_automatic_pause_{key[6:]}"] = max(
            (out["pauses"][p][key] for p in live_phases if p in out["pauses"]), default=0.0
        )
    if collector is not None:
        out["collector"] = {
            "frozen_collections": collector.stats.frozen_collections,
            "freeze_every": collector.freeze_every,
            "scan": collector.scan,
            "young_secs": collector.young_secs,
            "young_ticks": collector.stats.young_ticks,
            "gen1_threshold": collector.gen1_threshold,
        }
    return out


def format_table(r: dict[str, Any]) -> str:
    """The result as a short text table."""
    lines = [
        f"{r['calls']} live calls ({r['engine']}, policy {r['policy']}); ramp-up {r.get('ramp_s')} s; "
        f"{r.get('tracked_objects')} tracked objects, {r.get('frozen_objects')} frozen",
        "full gc.collect() with every call live: "
        + ", ".join(f"{x:.1f}" for x in r.get("full_collection_ms", []))
        + " ms (CPU "
        + ", ".join(f"{x:.1f}" for x in r.get("full_collection_cpu_ms", []))
        + " ms)",
        f"worst automatic pause while calls were live: {r.get('worst_automatic_pause_ms')} ms "
        f"(CPU {r.get('worst_automatic_pause_cpu_ms')} ms)",
        "",
        "| phase | gen 0: n, worst ms (CPU ms) | gen 1 | gen 2 |",
        "|---|---|---|---|",
    ]
    for phase, row in r["pauses"].items():
        g = row["by_generation"]
        cells = [f"{g[k]['n']}, {g[k]['worst_ms']} ({g[k]['worst_cpu_ms']})" for k in ("0", "1", "2")]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"ended calls {r.get('ended')} (+{r.get('churned')} churned): left in cycles per ended call "
        f"{r.get('left_per_ended_call')} objects, {r.get('flowcat_objects_left_per_ended_call')} of them flowcat's",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``flowcat bench gc``."""
    install_uvloop()
    result = asyncio.run(
        run(
            args.calls,
            churn=args.churn,
            engine=args.engine,
            policy=args.policy,
            hold=args.hold,
            freeze_every=args.freeze_every,
            scan=args.scan,
            young_secs=args.young_secs,
            gen1_threshold=args.gen1_threshold,
        )
    )
    result["host"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
        if result.get("flowcat_objects_left"):
            print("flowcat objects left:", result["flowcat_objects_left"])
    return 0
