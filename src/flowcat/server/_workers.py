"""Running workers: one process per core on a shared SO_REUSEPORT port, supervised.

The parent starts ``N`` worker processes (``python -m flowcat.server.worker``),
each binding the same host:port with ``SO_REUSEPORT`` so the kernel spreads new
connections between them (shared nothing). The parent (:mod:`._supervisor`)
loads the app once before starting any worker (a bad ``--app`` is one error line
and exit status 2), restarts a worker that dies unexpectedly after a growing,
capped delay, and forwards SIGTERM/SIGINT so each worker drains gracefully: stop
accepting (503), let calls end for at most ``drain_timeout`` seconds, then cancel
what is left and exit. A worker that cannot load the app exits with
:data:`EXIT_CONFIG` and is not restarted.

With ``engine="picows"`` each worker serves the media WebSockets and health on
``port`` with picows (:mod:`flowcat.server._picows_engine`) and the aiohttp app
(answer webhooks and the rest) on ``http_port``, both on one loop and one
admission state.

With ``audiosocket_port`` each worker also accepts Asterisk AudioSocket calls
(raw TCP, :mod:`flowcat.server._audiosocket_server`) on that port, under the same
admission state and app factory.

With a config whose ``sip:`` section is set, or ``sip_port``, each worker also answers
SIP calls natively (:func:`~flowcat.server._sip_server.serve_sip_config`): worker
``i`` listens on the SIP port ``+ i`` with its slice of the RTP range, each call
routed by its dialled number to an agent, under the same admission state.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["EXIT_CONFIG", "ServeOptions", "run_worker"]

logger = logging.getLogger("flowcat.server")

EXIT_CONFIG = 78
"""Exit status of a worker that cannot start with its configuration (``EX_CONFIG``):
the supervisor stops instead of restarting it."""


@dataclass
class ServeOptions:
    """Options of ``flowcat serve`` (shared by the parent and its workers)."""

    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    capacity: int | None = None
    app: str | None = None
    app_dir: str | None = None
    """Directory put first on ``sys.path`` to import ``app`` from (default: the working directory)."""
    sample_rate: int | None = None
    public_url: str | None = None
    trusted_proxies: int = 0
    """Reverse proxies whose ``X-Forwarded-*`` headers are trusted (``--trust-proxy``); 0: none."""
    drain_timeout: float = 30.0
    verify_signatures: bool = True
    pin: bool = False
    log_level: int = logging.WARNING
    idle_timeout: float | None = 300.0
    engine: str = "aiohttp"
    """Media WebSocket engine: ``aiohttp`` (one app on ``port``) or ``picows`` (media on
    ``port``, the aiohttp app with the webhooks on ``http_port``)."""
    http_port: int | None = None
    """Port of the aiohttp app with ``engine="picows"`` (default ``port + 1``)."""
    audiosocket_port: int | None = None
    """Also accept Asterisk AudioSocket calls (TCP) on this port; None: off."""
    audiosocket_rate: int | None = None
    """Force the AudioSocket bot-audio rate (Hz); None: follow each caller's audio kind."""
    sip_port: int | None = None
    """SIP port (UDP) overriding the config's ``sip.port``; with no ``sip:`` section it serves
    SIP with the defaults (every call to the default agent, or the app). None: the config's."""
    config: str | None = None
    """Agents configuration file (``flowcat serve AGENTS.yaml``); None: ``app`` only."""
    agents: list[str] | None = None
    """Agents of ``config`` to serve (those the parent found without problems; None: all)."""
    token_env: str = "FLOWCAT_API_TOKEN"  # noqa: S105 - the name of an environment variable, not a secret
    """Environment variable holding the API token (the token itself never travels in options)."""
    cors_origins: list[str] = field(default_factory=list)
    call_rate: float = 5.0
    """New calls per second per client IP on /ws, the protobuf routes and /api/offer (0: off)."""
    call_burst: int = 20
    max_body: int = 1 << 20
    log_format: str = "text"
    audio_out_chunk_ms: int = 20
    """Bot audio chunk on the media WebSockets, in ms (``--audio-out-chunk-ms``)."""
    turn_metrics: bool = False
    """Per-stage turn-latency histograms for config agents' calls (an observer per call)."""
    goodbye: str | None = "Sorry, we have to end the call now. Goodbye."


def run_worker(opts: ServeOptions, worker_id: int = 0) -> int:
    """Serve in this process until SIGTERM/SIGINT, then drain. Returns the exit status."""
    import asyncio

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    try:
        return asyncio.run(_serve(opts, worker_id))
    except ConfigError as exc:
        logger.error("worker %d: %s", worker_id, exc)
        return EXIT_CONFIG


async def _serve(opts: ServeOptions, worker_id: int) -> int:
    import asyncio

    from aiohttp import web

    from ..runtime import CollectorPolicy
    from ._admission import default_capacity
    from ._app import ServerConfig, ServerState, create_app
    from ._apps import load_app
    from ._calls import drain_state
    from ._security import Security

    capacity = opts.capacity or default_capacity()
    cfg = ServerConfig(
        capacity=capacity,
        app=load_app(opts.app, app_dir=opts.app_dir),
        public_url=opts.public_url,
        trusted_proxies=opts.trusted_proxies,
        verify_signatures=opts.verify_signatures,
        worker_id=worker_id,
        idle_timeout_secs=opts.idle_timeout,
        security=Security(
            token=os.environ.get(opts.token_env) or None,
            cors_origins=tuple(opts.cors_origins),
            call_rate=opts.call_rate,
            call_burst=opts.call_burst,
            max_body=opts.max_body,
        ),
        goodbye=opts.goodbye,
        turn_metrics=opts.turn_metrics,
        audio_out_chunk_ms=opts.audio_out_chunk_ms,
        max_msg_size=opts.max_body,
    )
    sip_cfg: Any = None
    if opts.config:
        from ..config import load_config
        from ._agents import agents_from_config

        wanted = set(opts.agents) if opts.agents is not None else None
        loaded = load_config(opts.config)
        sip_cfg = loaded.config.sip
        cfg.agents = agents_from_config(
            loaded, capacity=capacity, only=None if wanted is None else wanted.__contains__
        )
        cfg.use_default_agent = not opts.app
    if opts.sample_rate:
        cfg.audio_in_sample_rate = cfg.audio_out_sample_rate = opts.sample_rate
    if opts.engine == "picows":
        cfg.media_port = opts.port
    state = ServerState(cfg)
    state.warming = bool(cfg.agents) or callable(getattr(cfg.app, "warm_up", None))
    app = create_app(cfg, state=state)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    media: asyncio.Server | None = None
    http_port = opts.port
    if opts.engine == "picows":
        from ._picows_engine import serve_picows

        media = await serve_picows(state, opts.host, opts.port, reuse_port=True, backlog=4096)
        http_port = opts.http_port or opts.port + 1
    elif opts.engine != "aiohttp":
        raise ConfigError(f"unknown engine {opts.engine!r} (aiohttp or picows)")
    site = web.TCPSite(runner, opts.host, http_port, reuse_port=True, backlog=4096)
    await site.start()
    audiosocket: asyncio.Server | None = None
    if opts.audiosocket_port:
        from ._audiosocket_server import serve_audiosocket

        audiosocket = await serve_audiosocket(
            opts.host,
            opts.audiosocket_port,
            state=state,
            out_rate=opts.audiosocket_rate,
            reuse_port=True,
            backlog=4096,
        )
        logger.info(
            "worker %d (pid %d) accepting AudioSocket calls on %s:%d",
            worker_id,
            os.getpid(),
            opts.host,
            opts.audiosocket_port,
        )
    sip: Any = None
    if sip_cfg is not None or opts.sip_port is not None:
        sip = await _start_sip(state, opts, sip_cfg, worker_id)
    if media is not None:
        logger.info(
            "worker %d (pid %d) serving media on %s:%d (picows), HTTP on %d (aiohttp)",
            worker_id,
            os.getpid(),
            opts.host,
            opts.port,
            http_port,
        )
    else:
        logger.info("worker %d (pid %d) serving on %s:%d", worker_id, os.getpid(), opts.host, opts.port)
    # Everything loaded so far (modules, classes, the app) lives as long as the
    # worker, and so do the objects of live calls: keep them out of the collector's
    # way (frozen), so that no collection walks every live call (see CollectorPolicy).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if state.warming:
        await _warm_up(state)
    state.collector = CollectorPolicy()
    state.collector.install()
    await stop.wait()
    # Graceful drain: refuse new calls (503; /readyz says "draining"), let the others end
    # (bounded), say goodbye to those left and end them, then stop listening.
    state.admission.draining = True
    logger.info("worker %d: draining %d calls (at most %.1f s)", worker_id, len(state.calls), opts.drain_timeout)
    if media is not None:
        media.close()  # stops accepting; calls in progress go on
    if audiosocket is not None:
        audiosocket.close()
    ended = await drain_state(state, opts.drain_timeout, goodbye=cfg.goodbye)
    if ended:
        logger.warning("worker %d: drain timeout, cancelled %d calls", worker_id, ended)
    if sip is not None:
        await sip.stop()
    await site.stop()
    await runner.cleanup()
    return 0


async def _start_sip(state: Any, opts: ServeOptions, sip_cfg: Any, worker_id: int) -> Any:
    """This worker's SIP listener (the config's ``sip:`` section, ``--sip-port`` over its port)."""
    from ..config import SIPConfig
    from ._sip_server import serve_sip_config

    if sip_cfg is None:
        default = state.config.agents.default if state.config.use_default_agent else None
        sip_cfg = SIPConfig(default_agent=default.name if default is not None else None)
        if default is None:  # the app answers every call
            from ._sip_server import serve_sip

            port = opts.sip_port + worker_id if opts.sip_port else 0
            server = await serve_sip(opts.host, port, state=state)
            logger.info(
                "worker %d (pid %d) answering SIP on %s:%d", worker_id, os.getpid(), opts.host, server.port
            )
            return server
    server = await serve_sip_config(
        state, sip_cfg, host=opts.host, port=opts.sip_port, worker=worker_id, workers=opts.workers
    )
    logger.info("worker %d (pid %d) answering SIP on %s:%d", worker_id, os.getpid(), server.host, server.port)
    return server


async def _warm_up(state: Any) -> None:
    """Run the ``--app`` factory's ``warm_up`` attribute, if it has one, and build one call's
    pipeline per agent, off the loop (loads VAD/turn models into their caches), with
    ``/readyz`` answering 503 "warming up" meanwhile."""
    import asyncio

    from ._apps import CallInfo

    try:
        hook = getattr(state.config.app, "warm_up", None)
        if callable(hook):  # an --app factory's own warm-up (e.g. loading its models)
            try:
                await asyncio.to_thread(hook)
            except Exception as exc:  # the first call will report it with its context
                logger.warning("--app warm-up failed: %s", exc)
        for agent in state.config.agents:
            try:
                await asyncio.to_thread(agent.app, CallInfo(carrier="warmup"))
            except Exception as exc:  # the first call will report it with its context
                logger.warning("agent %s: warm-up failed: %s", agent.name, exc)
    finally:
        state.warming = False
