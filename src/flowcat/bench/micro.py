"""Micro-benchmark: per-hop routing cost, frames/s per core, tasks and RSS per idle call.

``flowcat bench micro [--vs-pipecat] [--json] [--quick]``

The flowcat side runs in this process (:mod:`flowcat.bench._micro_flowcat`);
with ``--vs-pipecat`` the same measurements run in pipecat-ai 1.14.0 in its own
virtual environment, as a subprocess in the same run
(:mod:`flowcat.bench._micro_pipecat`). Method: ``bench/RESULTS.md``,
section "Micro-benchmark".

Timing: ``time.perf_counter`` (wall) and ``time.process_time`` (CPU, for
frames/s per core); warm-up rounds, then the median of several repeats; the
garbage collector is disabled inside each timed section (collected just before).
Per hop = slope of µs/frame between K=1 and K=10 pass-through processors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from typing import Any

from . import _micro_flowcat as fc
from ._micro_pipecat import PIPECAT_VERSION, run_pipecat

__all__ = ["TARGETS", "add_arguments", "main", "summarize"]

TARGETS = {
    "per_hop_us_max": 0.5,
    "per_hop_ratio_min": 25.0,
    "idle_session_kb_max": 64.0,
    "tasks_per_session_max": 2.0,
}
K_LO, K_HI = 1, 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument(
        "--vs-pipecat", action="store_true", help=f"also run pipecat {PIPECAT_VERSION} (own venv)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke, a few seconds)")
    parser.add_argument(
        "--idle-calls", type=int, default=None, help="idle calls to start (default 1000, quick 100)"
    )
    parser.add_argument(
        "--pipecat-idle-calls", type=int, default=None, help="idle pipecat calls (default 1000, quick 50)"
    )


# Per-hop keys: which frame kind's hop timings and which mode give each slope.
_PER_HOP: dict[str, tuple[str, str]] = {
    "per_hop_us": ("data", "tput"),
    "per_hop_us_pingpong": ("data", "pp"),
    "per_hop_us_system": ("system", "tput"),
    "per_hop_us_system_pingpong": ("system", "pp"),
    "per_hop_us_cpu": ("data", "tput_cpu"),
    "per_hop_us_pingpong_cpu": ("data", "pp_cpu"),
    "per_hop_us_system_cpu": ("system", "tput_cpu"),
}


def _slope(frame_us: dict[str, dict[str, float]], mode: str) -> float:
    return (frame_us[str(K_HI)][mode] - frame_us[str(K_LO)][mode]) / (K_HI - K_LO)


def _side(raw: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    """Flatten one side's raw result into the public keys (None when absent)."""
    keys = (
        *_PER_HOP,
        "frame_us_k1",
        "frame_us_k3",
        "frame_us_k10",
        "frames_per_sec_k3",
        "frames_per_sec_k3_system",
        "idle_session_kb",
        "tasks_per_session",
        "idle_sessions",
        "idle_ended_cleanly",
    )
    out: dict[str, Any] = dict.fromkeys((prefix + k for k in keys), None)
    if raw is None:
        return out
    data, system = raw["frame_us"]["data"], raw["frame_us"]["system"]
    idle = raw["idle"]
    kinds = {"data": data, "system": system}
    out.update({prefix + key: _slope(kinds[kind], mode) for key, (kind, mode) in _PER_HOP.items()})
    out.update(
        {
            prefix + "frame_us_k1": data["1"]["tput"],
            prefix + "frame_us_k3": data["3"]["tput"],
            prefix + "frame_us_k10": data["10"]["tput"],
            prefix + "frames_per_sec_k3": 1e6 / data["3"]["tput_cpu"],
            prefix + "frames_per_sec_k3_system": 1e6 / system["3"]["tput_cpu"],
            prefix + "idle_session_kb": idle["idle_session_kb"],
            prefix + "tasks_per_session": idle["tasks_per_session"],
            prefix + "idle_sessions": idle["n"],
            prefix + "idle_ended_cleanly": idle["ended_cleanly"],
        }
    )
    return out


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def summarize(
    flowcat: dict[str, Any], pipecat: dict[str, Any] | None, *, quick: bool, load: list[float] | None = None
) -> dict[str, Any]:
    """Build the JSON result from both sides' raw measurements."""
    out: dict[str, Any] = {}
    out.update(_side(flowcat, ""))
    out.update(_side(pipecat, "pipecat_"))
    off = pipecat["frame_us"]["data_obs_off"] if pipecat else None
    out["pipecat_per_hop_us_observers_off"] = _slope(off, "tput") if off else None
    out["pipecat_per_hop_us_observers_off_pingpong"] = _slope(off, "pp") if off else None
    out["pipecat_per_hop_us_observers_off_cpu"] = _slope(off, "tput_cpu") if off else None
    out["pipecat_frames_per_sec_k3_observers_off"] = 1e6 / off["3"]["tput_cpu"] if off else None
    for name in _PER_HOP:
        out[name.replace("per_hop_us", "per_hop_ratio")] = _ratio(out["pipecat_" + name], out[name])
    out["per_hop_ratio_observers_off"] = _ratio(out["pipecat_per_hop_us_observers_off"], out["per_hop_us"])
    out["per_hop_ratio_observers_off_cpu"] = _ratio(
        out["pipecat_per_hop_us_observers_off_cpu"], out["per_hop_us_cpu"]
    )
    out["frames_per_sec_ratio"] = _ratio(out["frames_per_sec_k3"], out["pipecat_frames_per_sec_k3"])
    out["idle_session_kb_ratio"] = _ratio(out["pipecat_idle_session_kb"], out["idle_session_kb"])
    out["tasks_per_session_ratio"] = _ratio(out["pipecat_tasks_per_session"], out["tasks_per_session"])
    ratio = out["per_hop_ratio"]
    out["targets"] = {
        "per_hop_us_le_0_5": out["per_hop_us"] <= TARGETS["per_hop_us_max"],
        "per_hop_us_cpu_le_0_5": out["per_hop_us_cpu"] <= TARGETS["per_hop_us_max"],
        "per_hop_ratio_ge_25": None if ratio is None else ratio >= TARGETS["per_hop_ratio_min"],
        "per_hop_ratio_cpu_ge_25": None
        if out["per_hop_ratio_cpu"] is None
        else out["per_hop_ratio_cpu"] >= TARGETS["per_hop_ratio_min"],
        "idle_session_kb_le_64": out["idle_session_kb"] <= TARGETS["idle_session_kb_max"],
        "tasks_per_session_le_2": out["tasks_per_session"] <= TARGETS["tasks_per_session_max"],
    }
    out["frame_us"] = flowcat["frame_us"]
    out["pipecat_frame_us"] = pipecat["frame_us"] if pipecat else None
    out["meta"] = {
        "quick": quick,
        "python": platform.python_version(),
        "event_loop": "asyncio (default selector loop, both sides)",
        "pipecat_version": pipecat.get("pipecat_version") if pipecat else None,
        "ks": list(fc.KS),
        "flowcat_config": flowcat["config"],
        "pipecat_config": pipecat["config"] if pipecat else None,
        "gc": "disabled inside timed sections (collected before each)",
        "loadavg_1min_before_after": load,
    }
    return out


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 10_000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


def _ratio_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}×"


def table(r: dict[str, Any]) -> str:
    """The result as a Markdown table (flowcat, pipecat, ratio)."""
    rows: list[tuple[str, Any, Any, float | None]] = [
        ("per hop, DataFrame, throughput (µs)", r["per_hop_us"], r["pipecat_per_hop_us"], r["per_hop_ratio"]),
        (
            "per hop, DataFrame, ping-pong (µs)",
            r["per_hop_us_pingpong"],
            r["pipecat_per_hop_us_pingpong"],
            r["per_hop_ratio_pingpong"],
        ),
        (
            "per hop, SystemFrame, throughput (µs)",
            r["per_hop_us_system"],
            r["pipecat_per_hop_us_system"],
            r["per_hop_ratio_system"],
        ),
        (
            "per hop, SystemFrame, ping-pong (µs)",
            r["per_hop_us_system_pingpong"],
            r["pipecat_per_hop_us_system_pingpong"],
            r["per_hop_ratio_system_pingpong"],
        ),
        (
            "per hop, DataFrame, tput, pipecat observers off (µs)",
            r["per_hop_us"],
            r["pipecat_per_hop_us_observers_off"],
            r["per_hop_ratio_observers_off"],
        ),
        (
            "per hop, DataFrame, throughput, CPU time (µs)",
            r["per_hop_us_cpu"],
            r["pipecat_per_hop_us_cpu"],
            r["per_hop_ratio_cpu"],
        ),
        (
            "per hop, DataFrame, ping-pong, CPU time (µs)",
            r["per_hop_us_pingpong_cpu"],
            r["pipecat_per_hop_us_pingpong_cpu"],
            r["per_hop_ratio_pingpong_cpu"],
        ),
        (
            "per hop, SystemFrame, throughput, CPU time (µs)",
            r["per_hop_us_system_cpu"],
            r["pipecat_per_hop_us_system_cpu"],
            r["per_hop_ratio_system_cpu"],
        ),
        (
            "per hop, DataFrame, tput, CPU, pipecat observers off (µs)",
            r["per_hop_us_cpu"],
            r["pipecat_per_hop_us_observers_off_cpu"],
            r["per_hop_ratio_observers_off_cpu"],
        ),
    ]
    for k in (1, 3, 10):
        a, b = r[f"frame_us_k{k}"], r[f"pipecat_frame_us_k{k}"]
        rows.append((f"µs/frame, K={k}, DataFrame, throughput", a, b, _ratio(b, a)))
    rows += [
        (
            "frames/s per core, K=3, DataFrame",
            r["frames_per_sec_k3"],
            r["pipecat_frames_per_sec_k3"],
            r["frames_per_sec_ratio"],
        ),
        (
            "frames/s per core, K=3, SystemFrame",
            r["frames_per_sec_k3_system"],
            r["pipecat_frames_per_sec_k3_system"],
            _ratio(r["frames_per_sec_k3_system"], r["pipecat_frames_per_sec_k3_system"]),
        ),
        (
            "RSS per idle call (KB)",
            r["idle_session_kb"],
            r["pipecat_idle_session_kb"],
            r["idle_session_kb_ratio"],
        ),
        (
            "asyncio tasks per idle call",
            r["tasks_per_session"],
            r["pipecat_tasks_per_session"],
            r["tasks_per_session_ratio"],
        ),
        ("idle calls started (N)", r["idle_sessions"], r["pipecat_idle_sessions"], None),
        ("idle calls ended cleanly", r["idle_ended_cleanly"], r["pipecat_idle_ended_cleanly"], None),
    ]
    lines = ["| metric | flowcat | pipecat 1.14.0 | ratio |", "|---|---:|---:|---:|"]
    for name, a, b, ratio in rows:
        lines.append(f"| {name} | {_num(a)} | {_num(b)} | {_ratio_s(ratio)} |")
    t = r["targets"]
    marks = {True: "met", False: "MISSED", None: "not measured (no --vs-pipecat)"}
    lines += [
        "",
        "Ratios: pipecat ÷ flowcat for costs, flowcat ÷ pipecat for frames/s. Wall-clock rows count time"
        " the process waited for a core; the CPU-time rows do not (use them on a shared machine).",
        f"Targets: per hop ≤ 0.5 µs: {marks[t['per_hop_us_le_0_5']]} "
        f"(CPU time: {marks[t['per_hop_us_cpu_le_0_5']]}); "
        f"≥ 25× cheaper than pipecat: {marks[t['per_hop_ratio_ge_25']]} "
        f"(CPU time: {marks[t['per_hop_ratio_cpu_ge_25']]}); "
        f"idle call ≤ 64 KB: {marks[t['idle_session_kb_le_64']]}; "
        f"≤ 2 tasks: {marks[t['tasks_per_session_le_2']]}.",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print a table or (``--json``) one JSON object."""
    quick = bool(args.quick)
    cfg = dict(fc.QUICK if quick else fc.FULL)
    load = [os.getloadavg()[0]]
    if args.idle_calls:
        cfg["idle_calls"] = args.idle_calls
    flowcat = asyncio.run(fc.run(cfg))
    pipecat = None
    if args.vs_pipecat:
        n = args.pipecat_idle_calls or (50 if quick else 1000)
        try:
            pipecat = run_pipecat(quick=quick, idle_calls=n)
        except Exception as exc:  # report, but still print the flowcat side
            print(f"[bench micro] pipecat side failed: {exc}", file=sys.stderr)
            result = summarize(flowcat, None, quick=quick, load=[*load, os.getloadavg()[0]])
            print(json.dumps(result, indent=2) if args.json else table(result))
            return 1
    result = summarize(flowcat, pipecat, quick=quick, load=[*load, os.getloadavg()[0]])
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0
