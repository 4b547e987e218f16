"""The report of ``flowcat bench agent``: the tables and the capacity summary over repeated rounds."""

from __future__ import annotations

from typing import Any

__all__ = ["capacity", "format_capacity", "format_local_table", "format_table"]


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def capacity(rows: list[dict[str, Any]], bound_ms: float = 100.0) -> dict[str, Any]:
    """Sessions per core at p99 ≤ ``bound_ms`` per system, from every run of every point.

    A point holds when every run answered every turn and barge-in and the median over its
    runs of the p99 is within the bound; a system's capacity is its largest N that holds
    (0: none). Two readings: every turn (``all``), and each call's first turn left out
    (``later``: a per-call cold start, like pipecat's, counts once per call, not per turn).
    ``cpu_live``: each system's median CPU per live session (% of a core) at its ``later``
    capacity, and ``ratio["cpu_live"]`` pipecat's over flowcat's (how many of flowcat's live
    calls one of pipecat's costs).
    """
    by_point: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_point.setdefault((r["system"], r["sessions"]), []).append(r)
    out: dict[str, Any] = {"bound_ms": bound_ms, "points": [], "capacity": {}}
    for (system, n), runs in by_point.items():
        complete = all("error" not in r and r.get("turns_ok") == r.get("turns")
                       and r.get("barge_ins_ok") == r.get("barge_ins") for r in runs)
        point: dict[str, Any] = {"system": system, "sessions": n, "runs": len(runs), "complete": complete}
        for key in ("added_p99_ms", "added_p99_later_ms", "server_cpu_live_pct"):
            vals = [float(r[key]) for r in runs if r.get(key) is not None]
            point[key] = round(_median(vals), 3 if key == "server_cpu_live_pct" else 1) if vals else None
        out["points"].append(point)
        for reading, key in (("all", "added_p99_ms"), ("later", "added_p99_later_ms")):
            cap = out["capacity"].setdefault(system, {}).setdefault(reading, 0)
            p99 = point[key]
            if complete and p99 is not None and p99 <= bound_ms and n > cap:
                out["capacity"][system][reading] = n
    at_cap = {(p["system"], p["sessions"]): p.get("server_cpu_live_pct") for p in out["points"]}
    out["cpu_live"] = {system: at_cap.get((system, cap["later"])) for system, cap in out["capacity"].items()}
    fc, pc = out["capacity"].get("flowcat"), out["capacity"].get("pipecat")
    if fc and pc:
        out["ratio"] = {reading: (round(fc[reading] / pc[reading], 1) if pc[reading] else None)
                        for reading in ("all", "later")}
        f_cpu, p_cpu = out["cpu_live"].get("flowcat"), out["cpu_live"].get("pipecat")
        out["ratio"]["cpu_live"] = round(p_cpu / f_cpu, 1) if f_cpu and p_cpu else None
    return out


def format_capacity(summary: dict[str, Any]) -> str:
    """The capacity summary as text."""
    lines = [f"sessions per core at p99 <= {summary['bound_ms']:g} ms (median of each point's runs):"]
    for p in summary["points"]:
        lines.append(f"  {p['system']:>18} N={p['sessions']:<4} runs={p['runs']} complete={p['complete']} "
                     f"p99={p['added_p99_ms']} p99_later={p['added_p99_later_ms']}")
    for system, cap in summary["capacity"].items():
        lines.append(f"  {system}: {cap['all']} (every turn), {cap['later']} (first turns left out)")
    if "ratio" in summary:
        r = summary["ratio"]
        lines.append(f"  flowcat / pipecat: {r['all'] if r['all'] is not None else 'n/a (pipecat holds at none)'} "
                     f"(every turn), {r['later'] if r['later'] is not None else 'n/a'} (first turns left out)")
        cpu = summary.get("cpu_live", {})
        if r.get("cpu_live"):
            lines.append(f"  CPU per live session at that capacity: flowcat {cpu.get('flowcat')} %, pipecat "
                         f"{cpu.get('pipecat')} % of a core: {r['cpu_live']}x")
        else:
            lines.append("  CPU per live session at that capacity: n/a (a system holds at no point)")
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of the rows."""
    head = ("system", "sessions", "added_p50", "added_p99", "p99_later", "turns_ok", "barge_ok", "cpu%/sess",
            "cpu%/live", "peak_live", "MB/sess", "srv_core%", "gen_core%")
    lines = ["  ".join(f"{h:>10}" for h in head)]
    for r in rows:
        turns = f"{r.get('turns_ok')}/{r.get('turns')}" if "turns" in r else "-"
        barge = f"{r.get('barge_ins_ok')}/{r.get('barge_ins')}" if "barge_ins" in r else "-"
        vals = (r["system"], r["sessions"], r.get("added_p50_ms"), r.get("added_p99_ms"),
                r.get("added_p99_later_ms"), turns, barge,
                r.get("server_cpu_pct"), r.get("server_cpu_live_pct"), r.get("peak_live"), r.get("rss_mb"),
                r.get("server_core_busy_pct"), r.get("gen_core_busy_pct"))
        lines.append("  ".join(f"{'-' if v is None else v!s:>10}" for v in vals) + (f"  {r['error']}" if "error" in r else ""))
    return "\n".join(lines)


def format_local_table(rows: list[dict[str, Any]], budget_ms: float) -> str:
    """Plain-text table of ``--local`` rows."""
    head = ("sessions", "p50_ms", "p95_ms", f"<={budget_ms:g}ms", "answered", "barge_ok", "cpu%/call",
            "rss_ready_MB", "rss_peak_MB")
    lines = ["  ".join(f"{h:>12}" for h in head)]
    for r in rows:
        vals = (r["sessions"], r.get("first_audio_p50_ms"), r.get("first_audio_p95_ms"),
                f"{r.get('within_budget')}/{r.get('turns')}", f"{r.get('turns_ok')}/{r.get('turns')}",
                f"{r.get('barge_ins_ok')}/{r.get('barge_ins')}", r.get("server_cpu_pct"), r.get("rss_ready_mb"),
                r.get("rss_peak_mb"))
        lines.append("  ".join(f"{'-' if v is None else v!s:>12}" for v in vals) + (f"  {r['error']}" if "error" in r else ""))
    return "\n".join(lines)
