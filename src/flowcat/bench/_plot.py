"""Report output of ``flowcat bench capacity``: the p99-vs-calls plot and the RESULTS.md section."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

__all__ = ["SECTION", "plot_p99", "render_section", "replace_section", "write_section"]

SECTION = "## Capacity benchmark"
_COLORS = {
    "flowcat": "tab:blue",
    "flowcat (2 workers)": "tab:cyan",
    "flowcat (1.5x offered)": "tab:purple",
    "pipecat": "tab:red",
    "floor": "tab:gray",
}


def _label(r: dict[str, Any]) -> str:
    name = str(r["system"])
    if r.get("app") == "async":
        name += " (async processors)"
    if r.get("workers", 1) != 1:
        name += f" ({r['workers']} workers)"
    if r.get("offered"):
        name += " (1.5x offered)"
    return name


def plot_p99(rows: list[dict[str, Any]], path: Path) -> bool:
    """p99 round trip vs calls, one line per system (log y). False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        if r.get("p99_ms") is None:
            continue
        series.setdefault(_label(r), []).append((r["calls"], r["p99_ms"], r.get("throughput") or 0.0))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, pts in series.items():
        pts.sort()
        color = _COLORS.get(name, _COLORS.get(name.split()[0]))
        style = "--" if "(" in name else "-"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=name, color=color)
        lossy = [p for p in pts if p[2] < 0.99]
        if lossy:
            ax.scatter(
                [p[0] for p in lossy], [p[1] for p in lossy], marker="x", s=80, color="black", zorder=5
            )
    ax.axhline(50, color="tab:orange", linewidth=0.8, linestyle=":", label="50 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent calls (50 frames/s each)")
    ax.set_ylabel("p99 round trip (ms)")
    engines = ", ".join(
        sorted({str(r["engine"]) for r in rows if r.get("engine") and r["system"] != "pipecat"})
    )
    ax.set_title(
        "Echo round trip p99 vs calls, one server core (x: throughput < 0.99)"
        + (f"\nengine: {engines}" if engines else "")
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(v: Any) -> str:
    return "–" if v is None else str(v)


def render_section(rows: list[dict[str, Any]], args: argparse.Namespace, png: Path | None) -> str:
    """The markdown section (heading included)."""
    out = [SECTION, ""]
    out.append(
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} × {_cpu_model()}, "
        f"Python {platform.python_version()}; carrier `{args.carrier}`; engine `{getattr(args, 'engine', 'aiohttp')}`; warm-up {args.warmup} s, "
        f"window {args.duration} s, drain {args.drain} s; server on CPU {args.server_cpu}, generator on "
        f"CPU {args.gen_cpu}{', SCHED_FIFO' if args.fifo else ''}."
    )
    out.append("")
    out.append(
        "| system | engine | workers | calls | offered | connected | p50 | p90 | p99 | p99.9 | max (ms) | throughput "
        "| server CPU % | CPU µs/frame | × floor |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            out.append(
                f"| {r['system']} | {_fmt(r.get('engine'))} | {r['workers']} | {r['calls']} "
                f"| error: {r['error'][:80]} |" + " |" * 10
            )
            continue
        flag = " *" if r.get("flagged") else ""
        out.append(
            "| "
            + " | ".join(
                _fmt(x)
                for x in (
                    _label(r),
                    r.get("engine"),
                    r["workers"],
                    r["calls"],
                    r.get("offered"),
                    r.get("connected"),
                    r.get("p50_ms"),
                    r.get("p90_ms"),
                    r.get("p99_ms"),
                    f"{_fmt(r.get('p999_ms'))}{flag}",
                    r.get("max_ms"),
                    r.get("throughput"),
                    r.get("server_cpu_pct"),
                    r.get("cpu_us_per_frame"),
                    r.get("cpu_vs_floor"),
                )
            )
            + " |"
        )
    out += [
        "",
        "`*`: the generator's own tick lagged > 5 ms in the window (machine stall); `× floor`: CPU per frame "
        "÷ the floor's (a raw echo on the same WebSocket library) at the same N. Throughput = echoes of window frames ÷ frames sent in the "
        "window. `offered`: overload rows offer 1.5 × the worker's `--capacity`; the surplus gets HTTP 503 "
        "before the upgrade, `connected` calls are the admitted ones.",
    ]
    if png is not None:
        out += ["", f"![p99 vs calls]({png.name})"]
    out += [
        "",
        "How flowcat's output behaves here: bot audio is paced in real time on one shared 20 ms "
        "`AudioClock` with a 2-chunk send-ahead window; an echoed chunk that arrives on time is written "
        "at once as the frame it came in, and after a stall the window may grow by up to 4 chunks "
        "(`audio_out_catch_up_chunks`) so a late burst goes out at once; a steady stream may overshoot "
        "the window by one chunk, and one with a backlog (frames fed in a burst at its start) lets the "
        "window grow the same way until the backlog is sent. A burst beyond that waits for "
        "the clock, which is what rows near saturation show before the CPU runs out. The floor and "
        "pipecat send echoes immediately. The analysis of a run is in the next section, written by hand.",
    ]
    out += [
        "",
        "Systems: **flowcat** = `flowcat serve` (real pipeline: transport input → serializer → 2 pass-throughs + "
        "echo → serializer → paced output; the processors take audio inline, see docs/architecture.md; "
        "**flowcat (async processors)** = the same app written the pipecat way, `--app async`); **pipecat 1.14.0** = FastAPI + uvicorn, `FastAPIWebsocketTransport` + "
        "serializer + echo, one `PipelineWorker`/`WorkerRunner` per connection, default settings, WARNING logging; "
        "**floor** = a WebSocket echo with no pipeline on the run's engine (`--engine`: aiohttp, or picows as "
        "`flowcat serve --engine picows`), so `× floor` compares like with like. Twilio carrier: the header rides in the μ-law payload, "
        "nibble-coded into codes 0xC0–0xCF that survive μ-law → PCM16 → μ-law exactly at 8 kHz.",
        "",
        "Full sweep (quiet machine, ~15 min): `flowcat bench capacity --vs-pipecat --workers 1,2 "
        "--calls 100,200,400,800,1200,1600,2000 --fifo` (and again with `--engine picows`) then `--overload --no-floor --calls 1200,1500` and "
        "`--carrier twilio --vs-pipecat`.",
        "",
    ]
    return "\n".join(out)


def replace_section(text: str, section: str) -> str:
    """``text`` with the capacity section replaced (or appended); other sections untouched."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def write_section(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace, png: Path | None) -> None:
    """Create or update ``path`` with the capacity section."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(old, render_section(rows, args, png)))
