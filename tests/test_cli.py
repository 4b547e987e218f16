"""The ``flowcat`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowcat.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("flowcat ")


def test_pipeline_demo_tone_survives() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowcat.cli", "pipeline", "--hop-frames", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "frames out: 50" in out.stdout
    assert "tone: 440.0 Hz" in out.stdout
    assert "routing cost per processor hop" in out.stdout
