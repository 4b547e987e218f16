"""SileroBatcher: one ONNX call per event-loop iteration for every stream's ready window.

Streams queue themselves when their next window is ready. The first one in an
iteration schedules a single ``loop.call_soon(flush)``; the flush takes one window
from each queued stream (a stream's next window needs the state its previous window
produced, so a stream with several windows ready takes one per round, a round per
iteration), runs them as one batch and hands each stream its probability.

A batch expected to cost more than ``max_inline_secs`` of CPU (about 1 ms: roughly
25 or more streams; unbounded in a process pinned to one CPU) runs in the process's
single VAD worker thread instead, and its
results are delivered back on the loop; while it runs, newly ready windows collect
for the next batch, so batches grow with load. No call owns a thread or a model.

Under load the batcher also waits for rows: an ONNX call has a large fixed cost (a
batch of one costs about as much as four rows of a batch of 32), so once windows
arrive fast enough that ``max_wait_secs`` would gather at least two of them, a flush
is delayed by ``target_rows / arrival rate`` (at most ``max_wait_secs``), or until
``target_rows`` are queued, or every active stream has its window queued (a stream has
at most one window in a batch: the next needs the state this one produces). A window is then scored at most ``max_wait_secs`` late;
with a few calls, windows are scored in the iteration they arrive, as before.

A window that can start or stop speech (:attr:`~flowcat.audio.vad.VADAnalyzer.decisive`:
it would complete ``stop_secs`` of quiet or ``start_secs`` of voice) is never kept
waiting: the end of the user's turn, or a barge-in, waits on its score. It is flushed in
the iteration it arrives, with whatever rows are queued; such windows are a few per
utterance, so batches stay large.

Nor is a stream that has fallen behind (:attr:`~SileroVADAnalyzer.behind`: a further window
of it is queued behind the one in the batch). A stream takes one window per round, so
rounds that each wait for rows can run no faster than the windows arrive: once a burst put
streams a window behind, they stayed behind for as long as the load lasted, their speech
events a window or more late each (seen at 160 calls: the turn ends of ~90 calls 0.3-1.8 s
late for 3 s). Their rounds now run back to back until they are level again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._silero_model import SileroLane, SileroModel

if TYPE_CHECKING:
    from ._silero import SileroVADAnalyzer

__all__ = ["BatcherStats", "SileroBatcher", "vad_executor"]

logger = logging.getLogger("flowcat.vad")

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def vad_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The process-wide, single-thread executor for large VAD batches."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flowcat-vad")
    return _executor


@dataclass(slots=True)
class BatcherStats:
    """Counters of a batcher (all since it was created)."""

    batches: int = 0
    rows: int = 0
    waited_flushes: int = 0
    inline_batches: int = 0
    thread_batches: int = 0
    max_batch: int = 0
    errors: int = 0
    decisive_flushes: int = 0
    """Flushes not delayed (or cut short) because a window could start or stop speech."""
    behind_flushes: int = 0
    """Flushes not delayed (or cut short) because a stream had fallen a window behind."""


_DECISIVE = 2
_BEHIND = 1


def _urgency(stream: SileroVADAnalyzer) -> int:
    """Why the stream's window may not wait for rows: 2 decisive, 1 behind, 0 it may."""
    if stream.decisive:
        return _DECISIVE
    return _BEHIND if stream.behind else 0


class _LaneQueue:
    __slots__ = ("busy", "lane", "streams")

    def __init__(self, lane: SileroLane) -> None:
        self.lane = lane
        self.streams: list[SileroVADAnalyzer] = []
        self.busy = False


def _default_max_inline_secs() -> float:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return float("inf") if cpus <= 1 else 0.001


class SileroBatcher:
    """Batches Silero windows of all streams on one event loop.

    Get it with :meth:`for_loop` (one per loop; a flowcat worker process runs one loop).

    Args:
        loop: The event loop whose iterations delimit batches.
        model: The model (default :meth:`SileroModel.shared`).
        max_inline_secs: Largest expected batch CPU time run on the loop itself. Default:
            1 ms, or no bound when the process may run on one CPU only (a worker pinned to
            a core): there a thread runs on the same core as the loop anyway, and each
            hand-over costs the loop a GIL switch (up to the 5 ms switch interval).
        max_batch: Most rows per ONNX call.
        max_wait_secs: Longest a ready window may wait for others under load (0: never).
        target_rows: Rows worth waiting for; a flush happens as soon as this many are queued.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SileroBatcher] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        model: SileroModel | None = None,
        *,
        max_inline_secs: float | None = None,
        max_batch: int = 2048,
        max_wait_secs: float = 0.02,
        target_rows: int = 32,
    ) -> None:
        self.loop = loop
        self.model = model or SileroModel.shared()
        if max_inline_secs is None:
            max_inline_secs = _default_max_inline_secs()
        self.max_inline_secs = max_inline_secs
        self.max_batch = max_batch
        self.max_wait_secs = max_wait_secs
        self.target_rows = target_rows
        self.stats = BatcherStats()
        self._queues: dict[SileroLane, _LaneQueue] = {}
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._queued = 0
        self._arrivals = 0
        self._rate_since = loop.time()
        self.arrival_rate = 0.0
        """Windows per second submitted, measured over the last 0.1 s or more."""
        self.active_streams = 0
        """Streams that submitted a window in that period (a batch has one row of each at most)."""
        self._epoch = 1
        self._streams_seen = 0

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop | None = None) -> SileroBatcher:
        """The batcher of ``loop`` (default: the running loop), created on first use."""
        loop = loop or asyncio.get_running_loop()
        batcher = cls._by_loop.get(loop)
        if batcher is None:
            batcher = cls._by_loop[loop] = cls(loop)
        return batcher

    def submit(self, stream: SileroVADAnalyzer) -> None:
        """Queue ``stream``: its next window is ready. Called on the loop."""
        lane = stream._lane
        q = self._queues.get(lane)  # type: ignore[arg-type]
        if q is None:
            q = self._queues[lane] = _LaneQueue(lane)  # type: ignore[index,arg-type]
        q.streams.append(stream)
        self._arrivals += 1
        self._queued += 1
        if stream._epoch != self._epoch:  # first window of this stream in this rate period
            stream._epoch = self._epoch
            self._streams_seen += 1
        if q.busy:
            return
        urgent = _urgency(stream)
        if not self._scheduled:
            self._schedule(urgent)
        elif self._timer is not None and (urgent or self._queued >= self._enough_rows()):
            self._count(urgent)
            self._timer.cancel()
            self._timer = None
            self.loop.call_soon(self._flush)

    def hurry(self) -> None:
        """A queued stream fell a window behind: end the wait for rows now, if one runs."""
        if self._timer is not None:
            self.stats.behind_flushes += 1
            self._timer.cancel()
            self._timer = None
            self.loop.call_soon(self._flush)

    def _enough_rows(self) -> int:
        """Rows worth a flush: the target, or one window of every active stream."""
        return min(self.target_rows, max(self.active_streams, self._streams_seen))

    def _count(self, urgent: int) -> None:
        if urgent == _DECISIVE:
            self.stats.decisive_flushes += 1
        elif urgent == _BEHIND:
            self.stats.behind_flushes += 1

    def _schedule(self, urgent: int = 0) -> None:
        self._scheduled = True
        wait = 0.0
        rate = self.arrival_rate
        if rate * self.max_wait_secs >= 2.0 and self._queued < self._enough_rows():
            if urgent:
                self._count(urgent)
            else:
                wait = min(self.max_wait_secs, (self.target_rows - self._queued) / rate)
        if wait > 0.0:
            self.stats.waited_flushes += 1
            self._timer = self.loop.call_later(wait, self._flush)
        else:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._timer = None
        now = self.loop.time()
        elapsed = now - self._rate_since
        if elapsed >= 0.1:
            self.arrival_rate = self._arrivals / elapsed
            self.active_streams = self._streams_seen
            self._arrivals = self._streams_seen = 0
            self._epoch += 1
            self._rate_since = now
        for q in list(self._queues.values()):
            if q.streams and not q.busy:
                self._run(q)

    def _run(self, q: _LaneQueue) -> None:
        streams = q.streams
        if len(streams) > self.max_batch:
            q.streams = streams[self.max_batch :]
            streams = streams[: self.max_batch]
        else:
            q.streams = []
        self._queued -= len(streams)
        streams = [s for s in streams if s._slot >= 0]
        if not streams:
            return
        lane = q.lane
        n = len(streams)
        idx, x, state = lane.gather([s._slot for s in streams], [s._fifo[0] for s in streams])
        st = self.stats
        st.batches += 1
        st.rows += n
        if n > st.max_batch:
            st.max_batch = n
        if lane.base_cost + lane.row_cost * n <= self.max_inline_secs:
            st.inline_batches += 1
            try:
                probs, new_state, cpu = lane.infer(x, state)
            except Exception as exc:
                self._failed(q, streams, idx, x, exc)
                return
            lane.scatter(idx, x, new_state, cpu)
            self._deliver(streams, probs, lane.mean_squares(x))
            return
        st.thread_batches += 1
        q.busy = True
        fut = self.loop.run_in_executor(vad_executor(), lane.infer, x, state)
        fut.add_done_callback(functools.partial(self._done, q, streams, idx, x))

    def _done(
        self,
        q: _LaneQueue,
        streams: list[SileroVADAnalyzer],
        idx: np.ndarray,
        x: np.ndarray,
        fut: asyncio.Future[Any],
    ) -> None:
        q.busy = False
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or exc is not None:
            self._failed(q, streams, idx, x, exc)
        else:
            probs, new_state, cpu = fut.result()
            q.lane.scatter(idx, x, new_state, cpu)
            self._deliver(streams, probs, q.lane.mean_squares(x))
        if q.streams and not self._scheduled:
            self._schedule(max(map(_urgency, q.streams)))

    def _failed(
        self,
        q: _LaneQueue,
        streams: list[SileroVADAnalyzer],
        idx: np.ndarray,
        x: np.ndarray,
        exc: BaseException | None,
    ) -> None:
        self.stats.errors += 1
        logger.error("Silero VAD batch of %d failed; scoring it as silence", len(streams), exc_info=exc)
        q.lane.scatter(idx, x, None, 0.0)
        self._deliver(streams, np.zeros(len(streams), dtype=np.float32), q.lane.mean_squares(x))

    @staticmethod
    def _deliver(streams: list[SileroVADAnalyzer], probs: np.ndarray, ms: list[float]) -> None:
        for stream, p, m in zip(streams, probs.tolist(), ms, strict=True):
            try:
                stream._on_probability(p, m)
            except Exception:
                logger.exception("VAD listener of %r raised", stream)
