"""Raw-socket floor for ``flowcat bench capacity``: a WebSocket echo, no pipeline.

Binary messages are echoed as they are; text messages are echoed when they are
Twilio ``media`` events (the handshake is ignored). ``--engine`` picks the
library, the same one flowcat serves with in that run: ``aiohttp`` (default) or
``picows`` (its ``/healthz`` is a plain non-101 response). ``python -m
flowcat.bench._floor_sut --port P [--engine picows]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from aiohttp import WSMsgType, web


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.TEXT:
            if msg.data.startswith('{"event":"media"'):
                await ws.send_str(msg.data)
        else:
            break
    return ws


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int) -> None:
    """The aiohttp floor (until SIGTERM/SIGINT)."""
    app = web.Application()
    app.router.add_get("/healthz", _health)
    app.router.add_get("/ws", _ws)
    app.router.add_get("/{carrier}/ws", _ws)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    await _until_signal()
    await runner.cleanup()


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_picows(host: str, port: int) -> None:
    """The picows floor (until SIGTERM/SIGINT)."""
    import picows

    binary, text, close = picows.WSMsgType.BINARY, picows.WSMsgType.TEXT, picows.WSMsgType.CLOSE
    media = b'{"event":"media"'

    class Echo(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            mt = frame.msg_type
            if mt is binary:
                transport.send(binary, frame.get_payload_as_bytes())
            elif mt is text:
                data = frame.get_payload_as_bytes()
                if data.startswith(media):
                    transport.send(text, data)
            elif mt is close:
                transport.send_close(picows.WSCloseCode.OK)
                transport.disconnect()

    health = b'{"status": "ok"}'

    def route(request: picows.WSUpgradeRequest) -> Any:
        path = request.path.split(b"?", 1)[0]
        if path == b"/healthz":
            resp = picows.WSUpgradeResponse.create_ok_response(health, {"Content-Type": "application/json"})
            return picows.WSUpgradeResponseWithListener(resp, None)
        if path == b"/ws" or path.endswith(b"/ws"):
            return Echo()
        return None

    server = await picows.ws_create_server(route, host, port, max_frame_size=1 << 20, backlog=4096)
    await _until_signal()
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--engine", choices=("aiohttp", "picows"), default="aiohttp")
    args = p.parse_args(argv)
    import uvloop

    uvloop.install()
    asyncio.run((serve_picows if args.engine == "picows" else serve)(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
