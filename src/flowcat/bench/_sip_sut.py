"""The server of ``flowcat bench sip``: one flowcat worker answering SIP calls with the echo app.

``python -m flowcat.bench._sip_sut --port P --rtp-ports A-B`` runs
:func:`flowcat.server.serve_sip` (the worker's admission, app and pipeline rates,
as ``flowcat serve`` with a ``sip:`` section) under uvloop, with the default app
(two pass-through processors and an echo) at 8 kHz, no idle timeout, and prints
``READY <port>`` once it listens. It runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys


async def _main(args: argparse.Namespace) -> None:
    from ..server import ServerConfig, ServerState, serve_sip
    from ..server._apps import default_app

    start, _, end = args.rtp_ports.partition("-")
    cfg = ServerConfig(app=default_app, capacity=args.capacity, idle_timeout_secs=None)
    cfg.audio_in_sample_rate = cfg.audio_out_sample_rate = 8000
    srv = await serve_sip(args.host, args.port, state=ServerState(cfg), rtp_ports=(int(start), int(end)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {srv.port}", flush=True)
    await stop.wait()
    await srv.stop(timeout=2.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="flowcat.bench._sip_sut")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rtp-ports", default="20000-30000")
    p.add_argument("--capacity", type=int, default=100_000)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(_main(args))
        else:
            uvloop.run(_main(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
