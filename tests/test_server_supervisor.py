"""``flowcat serve``'s parent: a bad ``--app`` fails fast, apps load from the working directory,
crashed workers are restarted with a capped exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from _server_helpers import free_port, health
from flowcat.errors import ConfigError
from flowcat.server import CallInfo, RestartBackoff, load_app
from flowcat.server._supervisor import Supervisor
from flowcat.server._workers import EXIT_CONFIG

FLIP_APP = '''
from flowcat.frames import InputAudioRawFrame, OutputAudioRawFrame
from flowcat.runtime import FrameProcessor


class Flip(FrameProcessor):
    """Caller audio back with every byte inverted: proof that this app, not the echo, ran."""

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            flipped = bytes(255 - b for b in frame.audio)
            await self.push_frame(OutputAudioRawFrame(flipped, frame.sample_rate, frame.num_channels))
        else:
            await self.push_frame(frame, direction)


def app(call):
    return [Flip()]
'''


def _flowcat() -> list[str]:
    """The ``flowcat`` console script (not ``python -m``, which would put the cwd on sys.path itself)."""
    script = Path(sys.executable).with_name("flowcat")
    return [str(script)] if script.exists() else [sys.executable, "-P", "-m", "flowcat.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env.pop("PYTHONPATH", None)
    return env


# ------------------------------------------------------------------ a bad --app fails fast


@pytest.mark.parametrize(
    ("spec", "files", "expected"),
    [
        ("no_such_module_fc:app", {}, "no module named 'no_such_module_fc'"),
        ("fc_noattr:app", {"fc_noattr.py": "x = 1\n"}, "module 'fc_noattr' ("),
        ("fc_noattr:x", {"fc_noattr.py": "x = 1\n"}, "'x' in 'fc_noattr' is a int, not a function"),
        (
            "fc_raises:app",
            {"fc_raises.py": "import os\n\nraise RuntimeError('no API key')\n"},
            "importing 'fc_raises' raised RuntimeError: no API key (",
        ),
        (
            "fc_broken:app",
            {"fc_broken.py": "import no_such_dependency_fc\n\ndef app(call): ...\n"},
            "importing 'fc_broken' failed: ModuleNotFoundError: No module named 'no_such_dependency_fc'",
        ),
        ("fc_syntax:app", {"fc_syntax.py": "def app(:\n"}, "importing 'fc_syntax' raised SyntaxError"),
        ("nocolon", {}, "--app must be 'module:function'"),
    ],
)
def test_bad_app_is_one_error_line_and_a_nonzero_exit(
    tmp_path: Path, spec: str, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    t0 = time.monotonic()
    out = subprocess.run(
        [*_flowcat(), "serve", "--app", spec, "--port", str(free_port()), "--workers", "2"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - t0
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("flowcat serve: --app"), lines
    assert expected in lines[0], lines
    assert "Traceback" not in out.stderr and "worker" not in out.stderr
    assert elapsed < 30, elapsed  # no restart loop (startup of the interpreter only)
    if "raised RuntimeError" in expected:
        assert f"{tmp_path / 'fc_raises.py'}:3)" in lines[0]  # where it was raised


def test_load_app_errors_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "fc_two_args.py").write_text("def app(call, other): ...\n")
    with pytest.raises(ConfigError, match="must take the call's CallInfo or nothing, but needs 2"):
        load_app("fc_two_args:app", app_dir=str(tmp_path))
    (tmp_path / "fc_exits.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(ConfigError, match="importing 'fc_exits' raised SystemExit: 3"):
        load_app("fc_exits:app", app_dir=str(tmp_path))


# ------------------------------------------------------------------ apps from the working directory


def test_load_app_imports_from_the_app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    (tmp_path / "fc_cwd_app.py").write_text(FLIP_APP)
    monkeypatch.chdir(tmp_path)
    factory = load_app("fc_cwd_app:app")
    assert sys.path[0] == str(tmp_path)
    assert type(factory(CallInfo(carrier="raw"))[0]).__name__ == "Flip"  # type: ignore[index]


PAYLOAD = bytes(range(256)) + bytes(range(64))


def _wait_health(port: int, proc: subprocess.Popen[str], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if health(port) is not None:
            return
        time.sleep(0.05)
    raise AssertionError("server did not come up")


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return err


def test_an_app_in_the_working_directory_serves_calls(tmp_path: Path) -> None:
    """The user's module next to them is found by the parent and by every worker, also
    where Python itself would not look in the working directory (``PYTHONSAFEPATH``)."""
    (tmp_path / "fc_cwd_app.py").write_text(FLIP_APP)
    port = free_port()
    proc = subprocess.Popen(
        [*_flowcat(), "serve", "--app", "fc_cwd_app:app", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=_env(PYTHONSAFEPATH="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_health(port, proc)

        async def call() -> bytes:
            async with aiohttp.ClientSession() as s:
                ws = await s.ws_connect(f"http://127.0.0.1:{port}/ws?sample_rate=8000")
                await ws.send_bytes(PAYLOAD)  # one 20 ms chunk at 8 kHz
                msg = await asyncio.wait_for(ws.receive(), 10.0)
                await ws.close()
                data: bytes = msg.data
                return data

        got = asyncio.run(call())
        assert got == bytes(255 - b for b in PAYLOAD)
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert f"serving on 127.0.0.1:{port}" in err  # an info line, shown by default for serve
    assert "WARNING" not in err, err


# ------------------------------------------------------------------ restarts back off


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rc: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.rc

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.rc = 0

    def kill(self) -> None:
        self.rc = -9


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _supervisor(
    workers: int = 1, **kw: object
) -> tuple[Supervisor, list[tuple[float, int, FakeProc]], Clock]:
    clock = Clock()
    started: list[tuple[float, int, FakeProc]] = []

    def spawn(i: int) -> FakeProc:
        p = FakeProc(100 + len(started))
        started.append((clock.now, i, p))
        return p

    sup = Supervisor(workers, spawn, clock=clock, **kw)  # type: ignore[arg-type]
    sup.start()
    return sup, started, clock


def _run_until(sup: Supervisor, clock: Clock, until: float, tick: float = 0.05) -> None:
    while clock.now < until:
        assert sup.step() is None
        clock.now = round(clock.now + tick, 6)


def test_restart_backoff_doubles_up_to_the_cap() -> None:
    b = RestartBackoff(base=0.5, cap=30.0)
    assert [b.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert b.delay(10_000) == 30.0


def test_a_crashing_worker_is_restarted_with_growing_delays(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "flowcat.server")
    sup, started, clock = _supervisor(backoff=RestartBackoff(base=0.5, cap=4.0, stable_secs=30.0))
    crash_times = []
    for _ in range(6):  # each new worker crashes 0.2 s after it started
        _run_until(sup, clock, started[-1][0] + 0.2)
        started[-1][2].rc = 1
        crash_times.append(clock.now)
        n = len(started)
        while len(started) == n:
            assert sup.step() is None
            clock.now = round(clock.now + 0.05, 6)
    gaps = [round(started[i + 1][0] - crash_times[i], 2) for i in range(6)]
    # restarted after 0.5, 1, 2, 4 s, then at the cap
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], gaps
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 6
    assert (
        "worker 0 (pid 100) exited with status 1 after 0.2 s; restarting in 0.5 s (crash 1 in a row)"
        == msgs[0]
    )
    assert msgs[3].endswith("restarting in 4.0 s (crash 4 in a row)")
    assert msgs[5].endswith("restarting in 4.0 s (crash 6 in a row)")


def test_a_worker_that_ran_long_enough_starts_the_backoff_again() -> None:
    sup, started, clock = _supervisor(backoff=RestartBackoff(base=0.5, cap=30.0, stable_secs=10.0))
    for _ in range(3):
        started[-1][2].rc = 1
        t = clock.now
        n = len(started)
        while len(started) == n:
            sup.step()
            clock.now = round(clock.now + 0.05, 6)
    assert round(started[-1][0] - t, 2) == 2.0  # third crash in a row: 2 s
    _run_until(sup, clock, clock.now + 11.0)  # stable now
    started[-1][2].rc = 1
    t = clock.now
    n = len(started)
    while len(started) == n:
        sup.step()
        clock.now = round(clock.now + 0.05, 6)
    assert round(started[-1][0] - t, 2) == 0.5


def test_sigterm_during_a_backoff_wait_drops_the_restart() -> None:
    sup, started, clock = _supervisor(workers=2)
    started[0][2].rc = 1
    sup.step()  # worker 0 crashed: restart pending
    sup.stop()
    assert started[1][2].signals == [signal.SIGTERM]
    clock.now += 60.0
    assert sup.step() == 0
    assert len(started) == 2  # never restarted


def test_a_worker_that_cannot_load_the_app_stops_the_server(caplog: pytest.LogCaptureFixture) -> None:
    sup, started, clock = _supervisor(workers=2)
    started[0][2].rc = EXIT_CONFIG
    assert sup.step() is None
    assert started[1][2].signals == [signal.SIGTERM]
    assert sup.step() == 2
    assert len(started) == 2
    assert "could not load its configuration" in caplog.text


def test_gives_up_after_max_crashes_in_a_row() -> None:
    sup, started, clock = _supervisor(max_crashes=3, backoff=RestartBackoff(base=0.1, cap=0.1))
    status = None
    for _ in range(200):
        if started[-1][2].rc is None:
            started[-1][2].rc = 1
        status = sup.step()
        if status is not None:
            break
        clock.now = round(clock.now + 0.05, 6)
    assert status == 1
    assert len(started) == 4  # the first start and three restarts


def test_a_worker_crashing_in_a_real_server_is_restarted_with_backoff(tmp_path: Path) -> None:
    """A good app (it loads in the parent) whose workers die at start: the restarts are
    logged with growing delays, no tight loop, and SIGTERM still ends the server."""
    (tmp_path / "fc_dies.py").write_text(
        textwrap.dedent(
            """
            import os
            if os.environ.get("FLOWCAT_WORKER_ID") is not None:
                os._exit(3)  # the worker dies at once; the parent's check passes

            def app(call):
                return []
            """
        )
    )
    proc = subprocess.Popen(
        [*_flowcat(), "serve", "--app", "fc_dies:app", "--port", str(free_port()), "--workers", "1"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and sum("restarting in" in ln for ln in lines) < 3:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
    finally:
        err = _stop(proc)
    restarts = [ln for ln in lines if "restarting in" in ln]
    assert len(restarts) >= 3, "".join(lines) + err
    assert "exited with status 3" in restarts[0]
    assert "restarting in 0.5 s (crash 1 in a row)" in restarts[0]
    assert "restarting in 1.0 s (crash 2 in a row)" in restarts[1]
    assert "restarting in 2.0 s (crash 3 in a row)" in restarts[2]
    assert proc.returncode == 0


@pytest.mark.parametrize("ms", ["25", "0", "210"])
def test_a_bad_output_chunk_is_one_error_line_and_exit_2(tmp_path: Path, ms: str) -> None:
    out = subprocess.run(
        [*_flowcat(), "serve", "--port", str(free_port()), "--audio-out-chunk-ms", ms],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"flowcat serve: --audio-out-chunk-ms must be a multiple of 10 from 10 to 200, not {ms}"
    )
