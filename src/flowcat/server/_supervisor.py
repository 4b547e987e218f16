"""The parent of ``flowcat serve``: checks the app, starts the workers, restarts crashed ones.

Before any worker starts, the parent loads ``--app`` itself (:func:`~._apps.load_app`,
with the working directory on ``sys.path``): a bad module path, a missing attribute
or an app that raises while importing is one :class:`~flowcat.errors.ConfigError`,
and no worker is started.

A worker that exits while the server is not stopping is restarted after a delay
that doubles with each crash in a row (:class:`RestartBackoff`: 0.5 s, 1 s, 2 s, …
up to 30 s); a worker that ran for ``stable_secs`` before exiting starts the count
again. Each restart is logged with the exit status and the delay. A worker that
exits with :data:`~._workers.EXIT_CONFIG` (it could not load the app) stops the
server: restarting it could only fail the same way. SIGTERM/SIGINT are forwarded
to the workers (pending restarts are dropped) and the parent returns once they
have all exited (0), or kills them past ``drain_timeout`` + 10 s (1).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ._apps import load_app
from ._workers import EXIT_CONFIG, ServeOptions

__all__ = ["RestartBackoff", "Supervisor", "supervise"]

logger = logging.getLogger("flowcat.server")


@dataclass(frozen=True)
class RestartBackoff:
    """How long the supervisor waits before restarting a worker that exited.

    The ``n``-th crash in a row waits ``min(cap, base * 2 ** (n - 1))`` seconds; a
    worker that ran at least ``stable_secs`` before it exited starts again at ``base``.
    """

    base: float = 0.5
    cap: float = 30.0
    stable_secs: float = 30.0

    def delay(self, crashes: int) -> float:
        """Seconds before the restart that follows ``crashes`` crashes in a row (>= 1)."""
        return float(min(self.cap, self.base * 2 ** max(0, min(crashes - 1, 62))))


class _Proc(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class _Slot:
    """One worker position: its process, when it started, its crashes in a row, a pending restart."""

    __slots__ = ("crashes", "proc", "restart_at", "started_at")

    def __init__(self) -> None:
        self.proc: _Proc | None = None
        self.started_at = 0.0
        self.crashes = 0
        self.restart_at: float | None = None


class Supervisor:
    """The restart policy of :func:`supervise`, one :meth:`step` at a time (testable without
    processes or real time: ``spawn`` starts worker ``i``, ``clock`` is monotonic seconds).

    Args:
        workers: How many workers.
        spawn: Starts worker ``i`` and returns its process (``poll``, ``send_signal``, ``kill``).
        clock: Monotonic time in seconds.
        backoff: The restart delays.
        max_crashes: Crashes in a row of one worker after which the server stops (None: never).
        stop_timeout: After :meth:`stop`, seconds before the workers left are killed.
    """

    def __init__(
        self,
        workers: int,
        spawn: Callable[[int], _Proc],
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: RestartBackoff | None = None,
        max_crashes: int | None = 20,
        stop_timeout: float = 40.0,
    ) -> None:
        self.spawn = spawn
        self.clock = clock
        self.backoff = backoff or RestartBackoff()
        self.max_crashes = max_crashes
        self.stop_timeout = stop_timeout
        self.slots = [_Slot() for _ in range(workers)]
        self.stopping = False
        self.exit_status = 0
        self._deadline: float | None = None

    def start(self) -> None:
        """Start every worker."""
        for i in range(len(self.slots)):
            self._start(i)

    def _start(self, i: int) -> None:
        if self.stopping:  # a signal may arrive while a step runs
            return
        slot = self.slots[i]
        slot.restart_at = None
        slot.started_at = self.clock()
        slot.proc = self.spawn(i)

    def stop(self, exit_status: int = 0) -> None:
        """Forward SIGTERM to the running workers and drop pending restarts."""
        if not self.stopping:
            self.stopping = True
            self.exit_status = exit_status
            self._deadline = self.clock() + self.stop_timeout
        for slot in self.slots:
            slot.restart_at = None
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)

    def step(self) -> int | None:
        """Look at the workers once: restart what is due, note what exited.

        Returns the exit status once the supervisor is done, else None.
        """
        now = self.clock()
        if self.stopping:
            if all(s.proc is None or s.proc.poll() is not None for s in self.slots):
                return self.exit_status
            if self._deadline is not None and now > self._deadline:
                for slot in self.slots:
                    if slot.proc is not None and slot.proc.poll() is None:
                        slot.proc.kill()
                return 1
            return None
        for i, slot in enumerate(self.slots):
            if self.stopping:
                return None
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    self._start(i)
                continue
            proc = slot.proc
            rc = None if proc is None else proc.poll()
            if proc is None or rc is None:
                continue
            if rc == EXIT_CONFIG:
                logger.error("worker %d could not load its configuration; stopping the server", i)
                self.stop(2)
                return None
            ran = now - slot.started_at
            slot.crashes = 1 if ran >= self.backoff.stable_secs else slot.crashes + 1
            if self.max_crashes is not None and slot.crashes > self.max_crashes:
                logger.error("worker %d crashed %d times in a row; giving up", i, slot.crashes - 1)
                self.stop(1)
                return None
            delay = self.backoff.delay(slot.crashes)
            logger.error(
                "worker %d (pid %d) exited with status %s after %.1f s; restarting in %.1f s "
                "(crash %d in a row)",
                i,
                proc.pid,
                rc,
                ran,
                delay,
                slot.crashes,
            )
            slot.restart_at = now + delay
        return None


def _worker_cmd(opts: ServeOptions, worker_id: int) -> list[str]:
    return [sys.executable, "-m", "flowcat.server.worker", json.dumps(asdict(opts)), str(worker_id)]


def supervise(
    opts: ServeOptions,
    *,
    max_restarts: int | None = 20,
    ready: Any = None,
    backoff: RestartBackoff | None = None,
) -> int:
    """Start ``opts.workers`` workers, restart crashed ones, forward SIGTERM. Blocks.

    Args:
        opts: The workers' options.
        max_restarts: Crashes in a row of one worker before the server stops (None: never).
        ready: Called once the workers were started.
        backoff: Restart delays (default :class:`RestartBackoff`).

    Raises:
        ConfigError: ``opts.app`` cannot be loaded (nothing was started).
    """
    opts.app_dir = os.path.abspath(opts.app_dir or os.getcwd())
    load_app(opts.app, app_dir=opts.app_dir)  # a bad app fails here, once, before any fork

    def spawn(i: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ, FLOWCAT_WORKER_ID=str(i))
        proc = subprocess.Popen(_worker_cmd(opts, i), env=env)  # noqa: S603 - argv list of sys.executable and our own options, no shell
        if opts.pin:
            try:
                cpus = sorted(os.sched_getaffinity(0))
                os.sched_setaffinity(proc.pid, {cpus[i % len(cpus)]})
            except OSError:
                logger.warning("could not pin worker %d", i)
        return proc

    sup = Supervisor(
        opts.workers,
        spawn,
        backoff=backoff,
        max_crashes=max_restarts,
        stop_timeout=opts.drain_timeout + 10.0,
    )

    def on_signal(_signum: int, _frame: Any) -> None:
        sup.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sup.start()
    if ready is not None:
        ready()
    while True:
        status = sup.step()
        if status is not None:
            return status
        time.sleep(0.1)
