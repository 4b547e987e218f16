"""Smoke test of ``flowcat bench micro --quick --json`` (flowcat side only; no timing asserts)."""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from pathlib import Path

import pytest

from flowcat.bench import micro

# Its assertions are functional (counts, keys, refusals), not timings: it runs in the parallel part, one bench
# at a time on one worker (.ci/run's --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bench")

REQUIRED = (
    "per_hop_us",
    "per_hop_us_pingpong",
    "per_hop_us_system",
    "per_hop_us_system_pingpong",
    "frames_per_sec_k3",
    "idle_session_kb",
    "tasks_per_session",
    "idle_sessions",
    "pipecat_per_hop_us",
    "pipecat_idle_session_kb",
    "pipecat_tasks_per_session",
    "per_hop_ratio",
    "targets",
    "frame_us",
    "meta",
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    micro.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def quick_result() -> dict:
    # One run for the whole module; main() prints JSON on stdout.
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = micro.main(_args("--quick", "--json", "--idle-calls", "50"))
    assert rc == 0
    return json.loads(buf.getvalue())


def test_quick_json_has_keys_and_sane_values(quick_result: dict) -> None:
    r = quick_result
    for key in REQUIRED:
        assert key in r, key
    # Without --vs-pipecat every pipecat number and ratio is null.
    assert all(v is None for k, v in r.items() if k.startswith("pipecat_"))
    assert r["per_hop_ratio"] is None and r["targets"]["per_hop_ratio_ge_25"] is None
    for key in ("per_hop_us", "per_hop_us_pingpong", "frames_per_sec_k3", "frame_us_k1", "frame_us_k10"):
        assert isinstance(r[key], float) and math.isfinite(r[key]), key
    assert r["frame_us_k1"] > 0 and r["frames_per_sec_k3"] > 0
    assert set(r["frame_us"]) == {"data", "system"}
    assert set(r["frame_us"]["data"]) == {"1", "3", "10"}
    assert set(r["frame_us"]["data"]["3"]) == {"tput", "tput_cpu", "pp", "pp_cpu"}
    assert r["meta"]["quick"] is True


def test_quick_idle_calls_are_started_counted_and_ended(quick_result: dict) -> None:
    r = quick_result
    assert r["idle_sessions"] == 50
    assert r["idle_ended_cleanly"] == 50
    # A started idle call holds its run() task and nothing else per call.
    assert 0 < r["tasks_per_session"] <= 2
    assert -64 < r["idle_session_kb"] < 1024


def test_summarize_ratios_and_targets() -> None:
    def side(k1: float, k10: float, kb: float, tasks: float) -> dict:
        row = {str(k): {"tput": v, "tput_cpu": v, "pp": v, "pp_cpu": v} for k, v in ((1, k1), (10, k10))}
        row["3"] = {"tput": k1, "tput_cpu": 2.0, "pp": k1, "pp_cpu": k1}
        idle = {"n": 10, "tasks_per_session": tasks, "idle_session_kb": kb, "ended_cleanly": 10}
        return {"config": {}, "frame_us": {"data": row, "system": row, "data_obs_off": row}, "idle": idle}

    r = micro.summarize(side(1.0, 4.6, 10.0, 1.0), side(10.0, 190.0, 300.0, 21.0), quick=True)
    assert r["per_hop_us"] == pytest.approx(0.4)
    assert r["pipecat_per_hop_us"] == pytest.approx(20.0)
    assert r["per_hop_ratio"] == pytest.approx(50.0)
    assert r["per_hop_ratio_cpu"] == pytest.approx(50.0)
    assert r["idle_session_kb_ratio"] == pytest.approx(30.0)
    assert r["frames_per_sec_k3"] == pytest.approx(500_000)
    assert r["targets"] == {
        "per_hop_us_le_0_5": True,
        "per_hop_us_cpu_le_0_5": True,
        "per_hop_ratio_ge_25": True,
        "per_hop_ratio_cpu_ge_25": True,
        "idle_session_kb_le_64": True,
        "tasks_per_session_le_2": True,
    }
    assert "| per hop, DataFrame, throughput (µs) | 0.400 | 20.00 | 50.0× |" in micro.table(r)


def _import_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in {path.name}"
            roots.add((node.module or "").split(".")[0])
    return roots - set(sys.stdlib_module_names) - {"__future__"}


def test_shared_kernel_imports_only_stdlib() -> None:
    # The pipecat worker loads it by path in pipecat's environment, where flowcat is absent.
    assert _import_roots(Path(micro.__file__).with_name("_micro_kernel.py")) == set()


def test_both_sides_run_the_same_processor_code() -> None:
    from flowcat.bench import _micro_flowcat as fc
    from flowcat.bench import _micro_kernel as kernel

    class Base:
        async def process_frame(self, frame: object, direction: object) -> None: ...

    passthrough, sink = kernel.processors(Base)
    assert fc.Passthrough.process_frame.__code__ is passthrough.process_frame.__code__
    assert fc.Sink.process_frame.__code__ is sink.process_frame.__code__


def test_pipecat_worker_imports_only_pipecat_and_stdlib() -> None:
    path = Path(micro.__file__).with_name("_pipecat_micro.py")
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in the pipecat worker"
            roots.add((node.module or "").split(".")[0])
    assert roots - set(sys.stdlib_module_names) - {"__future__"} == {"pipecat"}
