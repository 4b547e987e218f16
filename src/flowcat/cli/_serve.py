"""``flowcat serve``: run the server (N SO_REUSEPORT workers under a supervisor).

``flowcat serve [CONFIG]`` serves the agents of a configuration file by name
(docs/server.md); ``--app module:function`` keeps serving one app. ``--engine picows`` serves the media WebSockets (and health) with picows on
``--port`` and the aiohttp app (answer webhooks, everything else) on
``--http-port`` in each worker; see docs/transports.md. ``--audiosocket-port``
also accepts Asterisk AudioSocket calls (raw TCP) in every worker; see docs/carriers.md.
A config's ``sip:`` section (or ``--sip-port``) answers SIP calls natively; see docs/sip.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

__all__ = ["register"]


def _workers_default() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _proxy_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of proxies (0 or more), got {text!r}")
    return n


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser("serve", help="serve calls: health, raw and carrier media WebSockets, answer webhooks")
    p.add_argument(
        "config_file",
        nargs="?",
        default=None,
        metavar="CONFIG",
        help="agents configuration file (YAML/JSON; also --config or env FLOWCAT_CONFIG): every agent "
        "is checked at start-up and served by name",
    )
    p.add_argument("--config", dest="config_opt", default=None, help="agents configuration file")
    p.add_argument(
        "--host", default=None, help="bind address (default: the config's server.host, else 127.0.0.1)"
    )
    p.add_argument(
        "--port", type=int, default=None, help="port shared by all workers (default: the config's, else 8765)"
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--capacity", type=int, default=None, help="calls per worker before 503 (default 1500)")
    p.add_argument("--app", default=None, help="pipeline factory 'module:function' (default: echo)")
    p.add_argument("--sample-rate", type=int, default=None, help="pipeline sample rate in and out")
    p.add_argument(
        "--public-url",
        default=None,
        help="public base URL (env FLOWCAT_PUBLIC_URL; default: the config's server.public_url): stream "
        "URLs are built on it and carrier signatures over a URL are checked against it",
    )
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON objects"
    )
    p.add_argument(
        "--call-rate",
        type=float,
        default=5.0,
        help="new calls per second per client IP on /ws, the protobuf routes and /api/offer (0: no limit)",
    )
    p.add_argument(
        "--turn-metrics",
        action="store_true",
        help="per-stage turn-latency histograms on /metrics for the config's agents (an observer on "
        "every call: about 12 us more per processor hop per audio frame)",
    )
    p.add_argument("--call-burst", type=int, default=20, help="calls one client IP may open at once")
    p.add_argument(
        "--audio-out-chunk-ms",
        type=int,
        default=20,
        help="bot audio to WebSocket callers in chunks of this many ms, one message each (10-200; pipecat's "
        "default is 40)",
    )
    p.add_argument(
        "--max-body", type=int, default=1 << 20, help="largest request body / WebSocket message (bytes)"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow this browser origin (repeatable); default: no CORS header at all",
    )
    p.add_argument(
        "--trust-proxy",
        type=_proxy_count,
        nargs="?",
        const=1,
        default=0,
        metavar="N",
        help="trust X-Forwarded-Proto/-Host/-Port set by N reverse proxies (default N: 1) to find "
        "the URL carriers called; only when every request comes through them (default: off)",
    )
    p.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds calls may take to end on SIGTERM"
    )
    p.add_argument(
        "--idle-timeout", type=float, default=300.0, help="cancel a call idle this long (0: never)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip carrier signature checks")
    p.add_argument("--pin", action="store_true", help="pin worker i to core i")
    p.add_argument(
        "--engine",
        choices=("aiohttp", "picows"),
        default="aiohttp",
        help="media WebSocket engine (picows: faster, needs flowcat[picows]; webhooks move to --http-port)",
    )
    p.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="with --engine picows: port of the HTTP app with the answer webhooks (default: --port + 1)",
    )
    p.add_argument(
        "--audiosocket-port",
        type=int,
        default=None,
        help="also accept Asterisk AudioSocket calls (TCP) on this port (default: off)",
    )
    p.add_argument(
        "--audiosocket-rate",
        type=int,
        default=None,
        help="AudioSocket bot audio at this rate (Hz) whatever the caller sends "
        "(default: the rate of each caller's audio)",
    )
    p.add_argument(
        "--sip-port",
        type=int,
        default=None,
        help="answer SIP calls (UDP) on this port: overrides the config's sip.port, or serves SIP with "
        "the defaults when the config has no sip: section (worker i listens on the port + i; docs/sip.md)",
    )
    p.set_defaults(func=main)


def _config_path(args: argparse.Namespace) -> str | None:
    return args.config_file or args.config_opt or os.environ.get("FLOWCAT_CONFIG") or None


def _check_config(path: str) -> tuple[Any, list[str]] | None:
    """Load the config and check every agent: problems printed (``file:line``), the served
    names returned with the loaded file (None: nothing can be served)."""
    from ..config import check_agent, load_config
    from ..errors import ConfigError

    try:
        loaded = load_config(path)
    except ConfigError as exc:
        print(f"flowcat serve: {exc}", file=sys.stderr)
        return None
    served: list[str] = []
    for name in loaded.config.agents:
        problems = check_agent(loaded, name)
        if problems:
            print(f"flowcat serve: agent {name!r} is not served:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            served.append(name)
    if not served:
        print(f"flowcat serve: {loaded.file}: no agent can be served", file=sys.stderr)
        return None
    return loaded, served


def main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..server import ServeOptions, supervise
    from ..server._logging import configure_logging
    from ..server._security import bind_problem

    configure_logging(logging.getLogger().getEffectiveLevel(), args.log_format)
    if args.engine == "picows":
        from ..errors import MissingExtraError, require_extra

        try:
            require_extra("picows", "--engine picows", "picows")
        except MissingExtraError as exc:
            print(f"flowcat serve: {exc}", file=sys.stderr)
            return 2
    host, port, public_url, token_env = args.host, args.port, args.public_url, "FLOWCAT_API_TOKEN"
    config_path = _config_path(args)
    served: list[str] | None = None
    if config_path:
        checked = _check_config(config_path)
        if checked is None:
            return 2
        loaded, served = checked
        server = loaded.config.server
        host = host or server.host
        port = port or server.port
        public_url = public_url or server.public_url
        token_env = server.token_env
        config_path = os.path.abspath(config_path)
        print(f"flowcat serve: serving agents {', '.join(served)} from {loaded.file}", file=sys.stderr)
    host = host or "127.0.0.1"
    problem = bind_problem(host, os.environ.get(token_env), token_env)
    if problem:
        print(f"flowcat serve: {problem}", file=sys.stderr)
        return 2
    if not 10 <= args.audio_out_chunk_ms <= 200 or args.audio_out_chunk_ms % 10:
        print(f"flowcat serve: --audio-out-chunk-ms must be a multiple of 10 from 10 to 200, not "
              f"{args.audio_out_chunk_ms}", file=sys.stderr)
        return 2
    opts = ServeOptions(
        host=host,
        port=port or 8765,
        workers=args.workers or _workers_default(),
        capacity=args.capacity,
        app=args.app,
        sample_rate=args.sample_rate,
        public_url=public_url,
        trusted_proxies=args.trust_proxy,
        drain_timeout=args.drain_timeout,
        verify_signatures=not args.no_verify,
        pin=args.pin,
        log_level=logging.getLogger().getEffectiveLevel(),
        idle_timeout=args.idle_timeout or None,
        engine=args.engine,
        http_port=args.http_port,
        audiosocket_port=args.audiosocket_port,
        audiosocket_rate=args.audiosocket_rate,
        sip_port=args.sip_port,
        config=config_path,
        agents=served,
        token_env=token_env,
        cors_origins=list(args.cors_origin),
        call_rate=args.call_rate,
        call_burst=args.call_burst,
        max_body=args.max_body,
        log_format=args.log_format,
        turn_metrics=args.turn_metrics,
        audio_out_chunk_ms=args.audio_out_chunk_ms,
    )
    if config_path is not None:
        shown = "127.0.0.1" if opts.host in ("0.0.0.0", "::", "") else opts.host  # noqa: S104 - a comparison that picks the address to print, not a bind
        print(f"flowcat serve: open http://{shown}:{opts.port}/ to talk to an agent in the browser playground "
              "(models load on the first call of each worker; /readyz says when every agent is ready)",
              file=sys.stderr)
    if opts.log_level > logging.INFO:
        # The start-up lines of the server (where it listens, restarts) are info: shown
        # by default for ``serve``, while per-call info stays behind ``-v``.
        logging.getLogger("flowcat.server").setLevel(logging.INFO)
    try:
        return supervise(opts)
    except ConfigError as exc:
        print(f"flowcat serve: {exc}", file=sys.stderr)
        return 2
