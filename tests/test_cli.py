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


def test_serve_says_where_it_listens_at_info_level() -> None:
    """The "serving on" line is no warning (it is no problem), and ``serve`` shows it without ``-v``."""
    import os
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcat.cli", "serve", "--port", str(port), "--workers", "1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    try:
        line = proc.stderr.readline()  # the first line the server writes (bounded by the test timeout)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rest = proc.communicate(timeout=30)[1]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert "INFO flowcat.server: worker 0 (pid " in line and f"serving on 127.0.0.1:{port}" in line, (
        line + rest
    )
    assert proc.returncode == 0
    assert "WARNING" not in rest and "Traceback" not in rest, rest
