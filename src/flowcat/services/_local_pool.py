"""One bounded worker pool per process for local model inference (offline STT and TTS).

Whisper, Piper and espeak run in native code that holds a CPU core for tens to hundreds
of milliseconds; on the event loop that would stall every call's audio. All of them run
here instead: ``workers`` threads (default 1: the box this targets has two cores, one of
them the event loop's) in front of a queue of at most ``max_pending`` jobs. A job beyond
that is refused at once with :class:`~flowcat.errors.InferenceOverloadError` rather than
left to grow a backlog that no caller would still be waiting for.

Queued jobs run by **priority**, then in order: a caller waits on a transcription
(:data:`URGENT`, the default) and on the first audio of a reply, not on the later sentences
of a reply already speaking (:data:`LATER`), so those never hold up another call's turn.

The models hold no per-call state, so one copy of each serves every call in the process
(see each service's ``shared()``); the pool bounds how many inferences run at once, and
each model's own thread count (``cpu_threads``, ``intra_op_num_threads``) how many cores
one inference uses. Before a local service first loads a native engine,
:func:`prepare_native_env` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` to 1 unless already set: on two shared cores oversubscription doubled
STT latency (docs/offline.md). A library already loaded (numpy's OpenBLAS) keeps what it
read, so set them before starting Python to be sure. It sets ``HF_HUB_OFFLINE=1`` too
(unless set): the local services load models from installed files by path, never from a
model hub. Merely importing the provider packages changes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError, InferenceOverloadError

__all__ = ["LATER", "URGENT", "LocalInferencePool", "prepare_native_env"]

T = TypeVar("T")

URGENT = 0
"""Priority of a job someone waits on now: a transcription, a reply's first audio, a load."""
LATER = 1
"""Priority of a job whose result is needed later: the next sentences of a reply being spoken."""


def prepare_native_env() -> None:
    """Thread counts for the native engines and no model hub, unless the environment says otherwise
    (called by the local services before they import an engine)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


class LocalInferencePool:
    """A fixed set of worker threads and a bounded queue in front of them.

    Args:
        workers: Threads running inferences (the most that run at once).
        max_pending: Jobs admitted (running plus queued); one more is refused.
        name: Thread name prefix.
    """

    _shared: ClassVar[LocalInferencePool | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, workers: int = 1, max_pending: int = 16, name: str = "flowcat-local") -> None:
        if workers < 1 or max_pending < workers:
            raise ConfigError(f"local pool: need workers >= 1 and max_pending >= workers ({workers}, {max_pending})")
        self.workers = workers
        self.max_pending = max_pending
        self._queue: queue.PriorityQueue[tuple[int, int, Any, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"{name}_{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()
        self._lock = threading.Lock()
        self._pending = 0
        self._running = 0
        self.max_running = 0
        """The most jobs seen running at once (for tests and metrics)."""
        self.refused = 0
        """Jobs refused because the queue was full."""

    @classmethod
    def shared(cls) -> LocalInferencePool:
        """The process-wide pool (built on first use; ``FLOWCAT_LOCAL_WORKERS`` and
        ``FLOWCAT_LOCAL_MAX_PENDING`` size it)."""
        pool = cls._shared
        if pool is None:
            with cls._shared_lock:
                pool = cls._shared
                if pool is None:
                    try:
                        workers = int(os.environ.get("FLOWCAT_LOCAL_WORKERS", "1"))
                        pending = int(os.environ.get("FLOWCAT_LOCAL_MAX_PENDING", str(max(16, 4 * workers))))
                    except ValueError as exc:
                        raise ConfigError(f"FLOWCAT_LOCAL_WORKERS / FLOWCAT_LOCAL_MAX_PENDING: {exc}") from None
                    pool = cls._shared = cls(workers, pending)
        return pool

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished (running plus queued)."""
        return self._pending

    def _admit(self) -> None:
        with self._lock:
            if self._pending >= self.max_pending:
                self.refused += 1
                raise InferenceOverloadError(
                    f"local inference pool is full ({self._pending} jobs for {self.workers} worker(s))"
                )
            self._pending += 1

    def _done(self, _fut: object) -> None:
        with self._lock:
            self._pending -= 1

    def _wrap(self, fn: Callable[[], T]) -> Callable[[], T]:
        def job() -> T:
            with self._lock:
                self._running += 1
                self.max_running = max(self.max_running, self._running)
            try:
                return fn()
            finally:
                with self._lock:
                    self._running -= 1

        return job

    def _worker(self) -> None:
        while True:
            _prio, _seq, fut, fn = self._queue.get()
            if fut is None:  # shutdown
                return
            if not fut.set_running_or_notify_cancel():  # cancelled while queued: never runs
                continue
            try:
                result = fn()
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    def _enqueue(self, fn: Callable[[], T], priority: int) -> concurrent.futures.Future[T]:
        self._admit()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        fut.add_done_callback(self._done)
        if self._closed:
            fut.cancel()
            return fut
        self._queue.put((priority, next(self._seq), fut, self._wrap(fn)))
        return fut

    async def run(self, fn: Callable[[], T], priority: int = URGENT) -> T:
        """Run ``fn`` on a worker and await its result.

        Queued jobs run by ``priority`` (lowest first: :data:`URGENT`, :data:`LATER`), then
        in order. Cancelling the caller drops a queued job; a running one finishes on its
        worker (native code cannot be interrupted) and its result is discarded.

        Raises:
            InferenceOverloadError: ``max_pending`` jobs are already admitted.
        """
        return await asyncio.wrap_future(self._enqueue(fn, priority))

    def submit(self, fn: Callable[[], T], priority: int = URGENT) -> concurrent.futures.Future[T]:
        """Queue ``fn`` from any thread (admission and priority as :meth:`run`)."""
        return self._enqueue(fn, priority)

    def shutdown(self) -> None:
        """Stop the workers (queued jobs are cancelled)."""
        self._closed = True
        while True:
            try:
                _p, _s, fut, _fn = self._queue.get_nowait()
            except queue.Empty:
                break
            if fut is not None:
                fut.cancel()
        for _ in self._threads:
            self._queue.put((1 << 30, next(self._seq), None, None))
