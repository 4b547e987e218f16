"""Helpers of the tests that run ``flowcat serve`` as a process: a free port, the ``/healthz``
answer, a server started in its own process group, a bounded wait until it answers, killing a
process with its group, and the ``stop_after`` fixture that kills what a test started (bind it in a test module with
``stop_after = _server_helpers.stop_after``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(port: int) -> dict[str, Any] | None:
    """The server's ``/healthz`` JSON (None: nothing answered)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=2.0) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (OSError, urllib.error.URLError):
        return None


def serve(port: int, *extra: str) -> subprocess.Popen[bytes]:
    """``flowcat serve --port PORT --sample-rate 8000 EXTRA…`` in a process group of its own."""
    cmd = [sys.executable, "-m", "flowcat.cli", "serve", "--port", str(port), "--sample-rate", "8000", *extra]
    # Own process group: a test that fails can kill the workers too, not only the supervisor.
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_up(port: int, proc: subprocess.Popen[bytes], within: float = 20.0) -> dict[str, Any]:
    """The first ``/healthz`` answer on ``port`` (fails when ``proc`` exits or after ``within`` s)."""
    deadline = time.monotonic() + within
    while True:
        h = health(port)
        if h is not None:
            return h
        assert proc.poll() is None, "server exited before it served"
        assert time.monotonic() < deadline, f"nothing answered on {port}"
        time.sleep(0.05)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` with its process group (started with ``start_new_session=True``) and reap it."""
    with contextlib.suppress(ProcessLookupError):  # workers outlive a killed supervisor
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture
def stop_after() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes a test appends here are killed with their process group at its end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        kill_group(p)
