"""``/metrics``: the worker's counters in Prometheus text format (``flowcat[metrics]``).

The metrics live in a registry of their own per worker (:class:`ServerMetrics`), so
several servers in one process (tests) do not share counters. Without
``prometheus-client`` the server runs the same and ``/metrics`` answers 501 with the
install command.

Metrics (labels in brackets):

* ``flowcat_calls_active`` [agent, transport] — calls in progress;
* ``flowcat_calls_total`` [agent, transport] — calls accepted;
* ``flowcat_calls_rejected_total`` [agent, reason] — calls refused (capacity, draining, rate);
* ``flowcat_turn_stage_seconds`` [agent, stage] — per-turn latency by stage (histogram):
  ``stt`` end of speech → final transcript, ``turn`` → LLM response start, ``llm`` → first
  token, ``tts`` → first TTS audio, ``output`` → first audio out, ``total`` end of speech →
  first audio out (:class:`~flowcat.runtime.TurnLatencyObserver` on config agents' calls, with
  ``--turn-metrics`` only: an observer turns the call's inline hops into observed ones, about
  12 µs more per hop per frame);
* ``flowcat_event_loop_lag_seconds`` — how late a periodic 0.25 s probe wakes (histogram);
* ``flowcat_event_loop_stalls_total`` — times the loop was blocked ≥ ``STALL_SECS`` (0.1 s), by
  :class:`~flowcat.runtime.LoopWatchdog`, which also logs each one (rate-limited) with the stack
  of the code that blocked it; runs with or without ``prometheus-client``;
* ``flowcat_frames_dropped_total`` [agent, reason] — frames a call's scheduler dropped
  (``input_audio`` over the lane cap, ``interrupted`` by an interruption), added at call end;
* ``flowcat_provider_errors_total`` [agent, service] — ErrorFrames that reached the top of a
  call's pipeline (the task's ``on_pipeline_error``: no per-frame cost), by processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..frames import ErrorFrame, TurnLatencyMetricsData
from ..runtime import LoopStall, LoopWatchdog, TurnLatencyObserver

__all__ = ["CallObserver", "ServerMetrics", "metrics_available"]

logger = logging.getLogger("flowcat.server")

INSTALL = "pip install 'flowcat[metrics]'"
STAGES = ("stt", "turn", "llm", "tts", "output", "total")
_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
PROBE_SECS = 0.25
STALL_SECS = 0.1


def metrics_available() -> bool:
    """Whether ``prometheus-client`` is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class ServerMetrics:
    """One worker's Prometheus registry and metrics (no-ops when ``prometheus-client`` is absent)."""

    def __init__(self) -> None:
        self.enabled = metrics_available()
        self._probe: asyncio.Task[None] | None = None
        self.watchdog = LoopWatchdog(STALL_SECS, on_stall=self._on_stall)
        """Event-loop stalls with their stacks (started with the probe)."""
        if not self.enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        reg = self.registry = CollectorRegistry(auto_describe=True)
        self.active = Gauge("flowcat_calls_active", "Calls in progress", ["agent", "transport"], registry=reg)
        self.total = Counter("flowcat_calls", "Calls accepted", ["agent", "transport"], registry=reg)
        self.rejected = Counter("flowcat_calls_rejected", "Calls refused", ["agent", "reason"], registry=reg)
        self.stage = Histogram(
            "flowcat_turn_stage_seconds",
            "Per-turn latency by stage (end of speech to first audio out)",
            ["agent", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.lag = Histogram(
            "flowcat_event_loop_lag_seconds",
            "Lateness of a periodic event-loop probe",
            buckets=_LAG_BUCKETS,
            registry=reg,
        )
        self.dropped = Counter(
            "flowcat_frames_dropped", "Frames dropped by call schedulers", ["agent", "reason"], registry=reg
        )
        self.errors = Counter(
            "flowcat_provider_errors", "ErrorFrames pushed, by processor", ["agent", "service"], registry=reg
        )
        self.stalls = Counter(
            "flowcat_event_loop_stalls", f"Event loop blocked for {STALL_SECS} s or more", registry=reg
        )

    # -- calls ---------------------------------------------------------------------------
    def call_started(self, agent: str, transport: str) -> None:
        if self.enabled:
            self.total.labels(agent, transport).inc()
            self.active.labels(agent, transport).inc()

    def call_ended(self, agent: str, transport: str, task: Any | None = None) -> None:
        if not self.enabled:
            return
        self.active.labels(agent, transport).dec()
        sched = getattr(task, "scheduler", None) if task is not None else None
        if sched is not None:
            st = sched.stats
            if st.input_audio_dropped:
                self.dropped.labels(agent, "input_audio").inc(st.input_audio_dropped)
            if st.interrupted_dropped:
                self.dropped.labels(agent, "interrupted").inc(st.interrupted_dropped)

    def call_rejected(self, agent: str, reason: str) -> None:
        if self.enabled:
            self.rejected.labels(agent, reason).inc()

    async def on_error(self, agent: str, frame: ErrorFrame) -> None:
        """Count an ErrorFrame of a call of ``agent`` by the processor that reported it."""
        if self.enabled:
            proc = frame.processor
            name = getattr(proc, "name", None) or (type(proc).__name__ if proc is not None else "unknown")
            self.errors.labels(agent, str(name)).inc()

    def observer(self, agent: str) -> CallObserver | None:
        """A call's latency and error observer (None when metrics are off)."""
        return CallObserver(self, agent) if self.enabled else None

    # -- event loop probe ----------------------------------------------------------------
    def start_probe(self) -> None:
        """Start the event-loop lag probe and the stall watchdog on the running loop (idempotent)."""
        self.watchdog.start()
        if self.enabled and self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._run_probe(), name="flowcat-loop-probe")

    async def stop_probe(self) -> None:
        self.watchdog.stop()
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe

    async def _run_probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PROBE_SECS
            await asyncio.sleep(PROBE_SECS)
            self.lag.observe(max(0.0, loop.time() - due))

    def _on_stall(self, _stall: LoopStall) -> None:
        if self.enabled:
            self.stalls.inc()

    # -- exposition ----------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class CallObserver(TurnLatencyObserver):
    """:class:`TurnLatencyObserver` of one call feeding the server's stage histograms."""

    def __init__(self, metrics: ServerMetrics, agent: str) -> None:
        super().__init__(push_metrics=False, name="server")
        self._metrics = metrics
        self._agent = agent
        self.add_event_handler("on_turn_latency", self._record)

    async def _record(self, _observer: Any, record: TurnLatencyMetricsData) -> None:
        hist = self._metrics.stage
        for stage in STAGES:
            value = getattr(record, f"{stage}_secs")
            if value is not None:
                hist.labels(self._agent, stage).observe(value)
