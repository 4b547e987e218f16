"""The worker's settings (:class:`ServerConfig`) and state (:class:`ServerState`: admission, the
running calls, metrics), and the key under which the aiohttp application holds the state."""

from __future__ import annotations

import asyncio
import gc
import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..runtime import CollectorPolicy
from ._admission import Admission, default_capacity
from ._agents import Agents
from ._apps import AppFactory, default_app
from ._metrics import ServerMetrics
from ._security import Security
from ._session import CallRecord

__all__ = ["STATE_KEY", "ServerConfig", "ServerState"]


STATE_KEY: web.AppKey[ServerState] = web.AppKey("flowcat_state")


@dataclass
class ServerConfig:
    """Settings of one worker."""

    capacity: int = field(default_factory=default_capacity)
    app: AppFactory = default_app
    audio_in_sample_rate: int = 16000
    audio_out_sample_rate: int = 24000
    public_url: str | None = None
    """Public base URL (``FLOWCAT_PUBLIC_URL``) from which stream URLs are built, and
    against which carrier signatures over a URL are checked (:mod:`._public_url`)."""
    trusted_proxies: int = 0
    """How many reverse proxies in front of the server set ``X-Forwarded-Proto``/
    ``-Host``/``-Port`` (``--trust-proxy [N]``). 0 (default): those headers are ignored.
    Without a public URL, the trusted headers give the URL carriers signed."""
    verify_signatures: bool = True
    """Check carrier signatures where the carrier signs and a secret is configured."""
    worker_id: int = 0
    idle_timeout_secs: float | None = 300.0
    ws_heartbeat: float | None = None
    max_msg_size: int = 1 << 20
    media_port: int | None = None
    """Port of the media WebSockets when another engine serves them (``--engine picows``):
    stream URLs built from the webhook request's host use it instead of the request's port."""
    agents: Agents = field(default_factory=Agents)
    """Agents served by name (``flowcat serve AGENTS.yaml``): ``/telephony/{carrier}/{agent}/…``
    and ``/protobuf/{agent}/ws``. Without ``app``, the default (first) agent also answers the
    unprefixed routes."""
    security: Security = field(default_factory=Security)
    """API token, call-rate limit, body size limit, CORS (:mod:`._security`)."""
    goodbye: str | None = "Sorry, we have to end the call now. Goodbye."
    """What a call still running at the end of a drain is told before it is ended (None: cut)."""
    use_default_agent: bool = False
    """The unprefixed routes serve ``agents.default`` instead of ``app``."""
    audio_out_chunk_ms: int = 20
    """Bot audio goes to WebSocket callers in chunks of this many ms (``--audio-out-chunk-ms``):
    one carrier message per chunk. pipecat's default is 40 (``audio_out_10ms_chunks=4``)."""
    turn_metrics: bool = False
    """Attach the per-stage turn-latency observer to config agents' calls (``--turn-metrics``;
    it costs the call its inline hops: about 12 µs more per hop per frame)."""


class ServerState:
    """Per-worker state: admission counters and the running calls."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.admission = Admission(capacity=config.capacity)
        self.calls: set[asyncio.Task[Any]] = set()
        self.records: dict[asyncio.Task[Any], CallRecord] = {}
        self.finished_calls = 0
        self.warming = False
        """Set while the worker loads models (``/readyz`` answers 503 "warming up")."""
        self.metrics = ServerMetrics()
        self.collector: CollectorPolicy | None = None
        """The worker's collector policy (set by the worker): told when no call is live."""

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "draining" if self.admission.draining else "ok"}
        out["worker"] = self.config.worker_id
        out["pid"] = os.getpid()
        out.update(self.admission.snapshot())
        dog = self.metrics.watchdog
        out["loop_stalls"] = {"count": dog.stalls, "worst_ms": round(dog.worst_secs * 1e3, 1)}
        collector = self.collector
        if collector is not None:
            st = collector.stats
            out["gc"] = {
                "worst_pause_ms": [round(ms, 2) for ms in st.worst_pause_ms],
                "collections": list(st.collections),
                "frozen": gc.get_freeze_count(),
                "deep_collections": st.deep_collections,
                "leaked": st.leaked,
            }
        return out
