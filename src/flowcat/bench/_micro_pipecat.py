"""Runs the pipecat side of ``flowcat bench micro`` in pipecat's own virtual environment.

The environment (``pipecat-ai==1.14.0``) is created on first use under
``$FLOWCAT_BENCH_CACHE`` (default ``~/.cache/flowcat/bench``) with ``uv`` when it
is on PATH, otherwise ``python -m venv`` + pip, and reused afterwards. The
worker script :mod:`flowcat.bench._pipecat_micro` runs there as a subprocess
and answers one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import BenchError

__all__ = ["PIPECAT_VERSION", "ensure_venv", "run_pipecat", "venv_dir"]

PIPECAT_VERSION = "1.14.0"
_WORKER = Path(__file__).with_name("_pipecat_micro.py")
_MARKER = ".flowcat-ready"


def venv_dir() -> Path:
    """Where the pipecat environment lives."""
    base = os.environ.get("FLOWCAT_BENCH_CACHE") or str(Path.home() / ".cache" / "flowcat" / "bench")
    return Path(base) / f"pipecat-{PIPECAT_VERSION}"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _log(msg: str) -> None:
    print(f"[bench micro] {msg}", file=sys.stderr, flush=True)


def ensure_venv() -> Path:
    """Return the environment's python, creating the environment if needed."""
    venv = venv_dir()
    py = _python(venv)
    if (venv / _MARKER).exists() and py.exists():
        return py
    venv.parent.mkdir(parents=True, exist_ok=True)
    pkg = f"pipecat-ai=={PIPECAT_VERSION}"
    uv = shutil.which("uv")
    if uv:
        _log(f"creating {venv} with uv and installing {pkg} (once)")
        cmds = [
            [uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--quiet", "--python", str(py), pkg],
        ]
    else:
        _log(f"creating {venv} with venv + pip and installing {pkg} (once)")
        cmds = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(py), "-m", "pip", "install", "--quiet", pkg],
        ]
    for cmd in cmds:
        subprocess.run(cmd, check=True, timeout=900)
    check = subprocess.run(
        [str(py), "-c", "import pipecat; print(pipecat.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check.returncode != 0 or check.stdout.strip() != PIPECAT_VERSION:
        raise BenchError(f"pipecat {PIPECAT_VERSION} not importable in {venv}: {check.stderr.strip()[-500:]}")
    (venv / _MARKER).write_text(PIPECAT_VERSION + "\n")
    return py


def run_pipecat(*, quick: bool, idle_calls: int, timeout: float = 900.0) -> dict[str, Any]:
    """Run the pipecat measurements in a subprocess and return its JSON result."""
    py = ensure_venv()
    cmd = [str(py), "-I", str(_WORKER), "--idle-calls", str(idle_calls)]
    if quick:
        cmd.append("--quick")
    _log("running the pipecat side (" + " ".join(cmd[2:]) + ")")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"pipecat worker failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
