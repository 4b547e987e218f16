"""What the in-process benches (``flowcat bench soak``, ``flowcat bench gc``) share: uvloop for
their own loop, the callers' process (started with its JSON config, answering in tagged lines)
and a ``gc.callbacks`` clock timing every collection."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import BenchError


def install_uvloop() -> None:
    """Run the bench's loop on uvloop where it is installed."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass


async def start_client(module: str, cfg: dict[str, Any]) -> asyncio.subprocess.Process:
    """``python -m module <cfg as JSON>``, its stdin and stdout piped to this process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        json.dumps(cfg),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def tagged_line(
    proc: asyncio.subprocess.Process,
    want: str,
    timeout: float,
    who: str,
    other: Callable[[str, str], None] | None = None,
) -> str:
    """The rest of the next line tagged ``want`` (lines with other tags go to ``other``)."""
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise BenchError(f"{who} exited (rc {proc.returncode}) before {want}")
            tag, _, body = line.strip().partition(" ")
            if tag == want:
                return body
            if other is not None:
                other(tag, body)


class PauseClock:
    """A ``gc.callbacks`` entry timing each collection, wall and this thread's CPU time; a subclass
    records them in :meth:`collected`."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._c0 = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            self._c0 = time.thread_time_ns()
            return
        ms = (time.perf_counter() - self._t0) * 1e3
        cpu = (time.thread_time_ns() - self._c0) / 1e6
        self.collected(info, ms, cpu)

    def collected(self, info: dict[str, Any], ms: float, cpu: float) -> None:
        """One collection ended (``info`` as ``gc.callbacks`` gives it; ``ms`` wall, ``cpu`` CPU)."""
        raise NotImplementedError
