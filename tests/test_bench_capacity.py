"""``flowcat bench capacity``: the --quick smoke, overload admission, header scheme, report section."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import require
from flowcat.audio import pcm16_to_ulaw, ulaw_to_pcm16
from flowcat.bench import capacity
from flowcat.bench._loadgen import HDR, parse_twilio_payload, twilio_payload
from flowcat.bench._plot import SECTION, replace_section

# Its assertions are functional (counts, keys, refusals), not timings: it runs in the parallel part, one bench
# at a time on one worker (.ci/run's --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bench")

FIELDS = {"system", "engine", "calls", "p50_ms", "p99_ms", "p999_ms", "throughput", "server_cpu_pct"}


def _run(*extra: str) -> list[dict[str, object]]:
    cmd = [sys.executable, "-m", "flowcat.cli", "bench", "capacity", "--quick", "--json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert rows, out.stderr[-2000:]
    return rows


@pytest.mark.parametrize("engine", ["aiohttp", "picows"])
def test_quick_smoke_measures_flowcat_and_the_floor(engine: str) -> None:
    if engine == "picows":
        require("picows")
    rows = _run("--engine", engine)
    assert {r["system"] for r in rows} == {"flowcat", "floor"}
    for r in rows:
        assert r["engine"] == engine
        assert FIELDS <= r.keys(), r
        assert r["calls"] == 20 and r["connected"] == 20
        assert r["bad"] == 0
        # Echoed audio came back and was measured; how much and how fast is `--check`'s business.
        assert isinstance(r["received"], int) and r["received"] > 0
        assert r["p50_ms"] is not None
        assert r["server_cpu_pct"] is not None and r["server_cpu_pct"] > 0


def test_quick_overload_admits_capacity_and_refuses_the_rest() -> None:
    rows = _run("--overload", "--no-floor", "--workers", "1")
    over = [r for r in rows if r.get("offered")]
    assert len(over) == 1
    r = over[0]
    assert r["offered"] == 30 and r["connected"] == 20 and r["rejected"] == 10
    assert r["bad"] == 0 and r["received"] > 0


def test_check_reports_each_missed_threshold() -> None:
    """`--check` (not the unit tests) holds the measured numbers to THRESHOLDS."""
    good = {"system": "flowcat", "engine": "aiohttp", "workers": 1, "calls": 20, "throughput": 1.0, "p50_ms": 0.4}
    assert capacity.check([good, dict(good, system="floor")]) == []
    slow = dict(good, throughput=0.5, p50_ms=150.0, offered=30)
    failed = {"system": "floor", "engine": "aiohttp", "workers": 1, "calls": 20, "error": "boom"}
    assert capacity.check([good, slow, failed]) == [
        "flowcat aiohttp W=1 N=20 offered=30: throughput 0.5 < 0.95",
        "flowcat aiohttp W=1 N=20 offered=30: p50_ms 150.0 >= 100.0",
        "floor aiohttp W=1 N=20: throughput not measured (boom)",
        "floor aiohttp W=1 N=20: p50_ms not measured (boom)",
    ]
    p = argparse.ArgumentParser()
    capacity.add_arguments(p)
    assert p.parse_args(["--quick", "--check"]).check and not p.parse_args([]).check


def test_twilio_header_survives_mulaw_decode_and_encode() -> None:
    payload = twilio_payload(0xDEADBEEF, 0x7F7F7F7F, -(2**62) + 12345)
    assert len(payload) == 160
    again = pcm16_to_ulaw(ulaw_to_pcm16(payload))
    assert again == payload
    assert parse_twilio_payload(again) == (0xDEADBEEF, 0x7F7F7F7F, -(2**62) + 12345)
    assert parse_twilio_payload(b"\xff" * 160) is None
    # A 40 ms message carrying two frames: the first header is found.
    two = twilio_payload(1, 2, 3) + twilio_payload(1, 3, 4)
    assert parse_twilio_payload(two) == (1, 2, 3)
    assert HDR.size == 16


def test_plan_orders_points_and_limits_quick() -> None:
    p = argparse.ArgumentParser()
    capacity.add_arguments(p)
    args = p.parse_args(["--calls", "100,200", "--workers", "1,2", "--vs-pipecat", "--pipecat-calls", "50"])
    assert capacity.plan(args) == [
        ("floor", 100, 1, None, ""),
        ("flowcat", 100, 1, None, "default"),
        ("flowcat", 100, 2, None, "default"),
        ("floor", 200, 1, None, ""),
        ("flowcat", 200, 1, None, "default"),
        ("flowcat", 200, 2, None, "default"),
        ("pipecat", 50, 1, None, ""),
    ]
    quick = p.parse_args(["--quick", "--vs-pipecat", "--overload"])
    assert capacity.plan(quick) == [
        ("floor", 20, 1, None, ""),
        ("flowcat", 20, 1, None, "default"),
        ("flowcat", 20, 1, 30, "default"),
    ]
    both = p.parse_args(["--calls", "100", "--app", "both"])
    assert capacity.plan(both) == [
        ("floor", 100, 1, None, ""),
        ("flowcat", 100, 1, None, "default"),
        ("flowcat", 100, 1, None, "async"),
    ]
    assert capacity._server_cmd("flowcat", 1, both, 1, 100, "async")[-2:] == [
        "--app",
        "flowcat.server._apps:async_app",
    ]
    # Two workers float over the CPUs unless asked to be pinned one per CPU.
    two = p.parse_args(["--calls", "100", "--workers", "2"])
    assert "--pin" not in capacity._server_cmd("flowcat", 1, two, 2, 100)
    pinned = p.parse_args(["--calls", "100", "--workers", "2", "--pin-workers"])
    assert capacity._server_cmd("flowcat", 1, pinned, 2, 100)[-1] == "--pin"
    assert "--pin" not in capacity._server_cmd("flowcat", 1, pinned, 1, 100)


def test_results_section_is_replaced_without_touching_others(tmp_path: Path) -> None:
    other = "# Benchmark results\n\n## Micro-benchmark\n\nmicro table\n\n"
    first = replace_section(other, f"{SECTION}\n\nrun 1\n")
    assert first.startswith(other) and "run 1" in first
    with_tail = first + "## Later\n\nkept\n"
    second = replace_section(with_tail, f"{SECTION}\n\nrun 2\n")
    assert "run 1" not in second and "run 2" in second
    assert "## Micro-benchmark\n\nmicro table" in second and second.endswith("## Later\n\nkept\n")


def test_write_section_and_plot(tmp_path: Path) -> None:
    require("matplotlib")
    from flowcat.bench._plot import plot_p99, write_section

    rows = [
        {
            "system": s,
            "engine": "uvicorn" if s == "pipecat" else "aiohttp",
            "workers": 1,
            "calls": n,
            "p50_ms": 0.2,
            "p90_ms": 0.3,
            "p99_ms": p,
            "p999_ms": 1.0,
            "max_ms": 2.0,
            "throughput": 1.0,
            "server_cpu_pct": 10.0,
            "cpu_us_per_frame": 9.0,
            "cpu_vs_floor": 1.5,
            "connected": n,
        }
        for s, n, p in (
            ("flowcat", 100, 0.5),
            ("flowcat", 200, 0.9),
            ("floor", 100, 0.3),
            ("pipecat", 50, 2.0),
        )
    ]
    png = tmp_path / "capacity.png"
    assert plot_p99(rows, png) and png.stat().st_size > 1000
    p = argparse.ArgumentParser()
    capacity.add_arguments(p)
    md = tmp_path / "RESULTS.md"
    write_section(md, rows, p.parse_args([]), png)
    text = md.read_text()
    assert SECTION in text and "| flowcat | aiohttp | 1 | 200 |" in text and "capacity.png" in text


@pytest.mark.parametrize("carrier", ["raw", "twilio"])
def test_quick_overload_at_twice_the_load_refuses_the_surplus_cleanly(carrier: str) -> None:
    """Twice the calls a worker admits: the surplus is refused (503 before the upgrade, on the
    raw /ws route and on a carrier's), the admitted calls all run and echo."""
    rows = _run("--overload", "--overload-factor", "2", "--no-floor", "--workers", "1", "--carrier", carrier)
    over = [r for r in rows if r.get("offered")]
    assert len(over) == 1
    r = over[0]
    assert r["carrier"] == carrier
    assert r["offered"] == 40 and r["connected"] == 20 and r["rejected"] == 20
    assert r["bad"] == 0 and r["received"] > 0 and r["p99_ms"] is not None
