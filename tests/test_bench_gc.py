"""``flowcat bench gc`` at a small size: calls served over real sockets are measured, and every
ended call (churned or ended at the end) left nothing in reference cycles."""

from __future__ import annotations

import gc

import pytest

from _helpers import require
from flowcat.bench import gc as bench_gc

# Its assertions are functional (counts, keys, refusals), not timings: it runs in the parallel part, one bench
# at a time on one worker (.ci/run's --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bench")

require("picows")


async def test_bench_gc_measures_and_ended_calls_leave_nothing() -> None:
    thresholds = gc.get_threshold()
    r = await bench_gc.run(30, churn=10, engine="picows", policy="freeze", hold=0.3)
    assert gc.get_threshold() == thresholds and gc.isenabled()  # the policy was uninstalled
    assert r["live_calls"] == 30 and r["churned"] == 10 and r["ended"] == 30
    assert r["echoes"] > 0
    assert len(r["full_collection_ms"]) == 3
    assert {"ramp-up", "full collection"} <= set(r["pauses"])
    assert r["left_per_ended_call"] == 0 and r["flowcat_objects_left"] == {}
    assert "gen 0" in bench_gc.format_table(r)
