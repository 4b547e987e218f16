"""Smoke test of ``flowcat bench vad`` (tiny sizes; the numbers themselves are not asserted)."""

from __future__ import annotations

import argparse
import json

import pytest

from _helpers import require

# Its assertions are functional (counts, keys, refusals), not timings: it runs in the parallel part, one bench
# at a time on one worker (.ci/run's --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bench")

require("onnxruntime")

from flowcat.bench import vad  # noqa: E402


def test_bench_vad_json_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    vad.add_arguments(parser)
    args = parser.parse_args(["--json", "--quick", "--calls", "3", "--seconds", "0.3"])
    assert vad.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calls"] == 3
    assert result["batched_speedup"] > 0
    for key in ("batched", "per_call", "per_call_inline"):
        assert result[key]["cpu_us_per_call_per_audio_s"] > 0
    assert result["batched"]["mean_batch"] == pytest.approx(3.0)
    assert "smart_turn" in result and "media" in result
