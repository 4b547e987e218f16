"""A minimal protocol-accurate fake of Cartesia's TTS WebSocket for the provider tests.

Shapes from https://docs.cartesia.ai/api-reference/tts/websocket and the contexts and
flushing guides: generation requests per ``context_id`` (``continue``, manual
``flush`` with an empty transcript -> ``flush_done`` and a new ``flush_id``,
``continue: false`` -> ``done``), ``cancel``, and ``chunk`` / ``timestamps`` /
``flush_done`` / ``done`` / ``error`` messages. The key is taken from ``?api_key=`` or
``Authorization: Bearer``. Word timestamps count from the start of the context
(``relative=True``: from the start of each transcript). It records the handshake
and every message received.

Faults: a connection takes one behaviour at the handshake (``STATUS`` refuses the
upgrade), which its first context gets; while faults remain, later contexts take the
next one (``STATUS`` then answers the context with an ``error`` message).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider


class FakeCartesia(FakeProvider):
    expected_audio = bytes(range(256)) * 8  # 2048 bytes: 64 ms at 16 kHz
    sample_rate = 16000
    piece = 333  # odd sizes: the base re-frames on samples

    def __init__(self, *args: Any, relative: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.relative = relative
        self.queries: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.late_sent = 0
        self.sockets: list[web.WebSocketResponse] = []
        self.connected = asyncio.Event()
        self.context_closed = asyncio.Event()  # a context was ended by the client (continue: false)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/tts/websocket", self.handle)

    async def start(self) -> str:
        """As the base, without the server's access log: it would print the ``?api_key=`` query
        (the suite checks the client's logs; a real server's logs are not the client's)."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    def audio_for(self, text: str) -> bytes:
        return self.expected_audio if text else b""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        self.headers.append(dict(request.headers))
        auth = request.headers.get("Authorization", "")
        presented = request.query.get("api_key") or (auth[7:] if auth.startswith("Bearer ") else None)
        if not self.key_ok(presented):
            return web.json_response(self.error_body(), status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        self.connected.set()
        pending = b
        contexts: dict[str, dict[str, Any]] = {}
        tasks: list[asyncio.Task[None]] = []
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                self.messages.append(m)
                cid = m["context_id"]
                if m.get("cancel"):
                    self.cancelled.append(cid)
                    ctx = contexts.get(cid)
                    if ctx is not None and not ctx["done"]:
                        ctx["cancelled"] = ctx["done"] = True
                        self.aborted.set()
                    continue
                ctx = contexts.get(cid)
                if ctx is None:
                    beh, pending = pending, Behaviour.NORMAL
                    if beh is Behaviour.NORMAL and self.failures != 0:
                        beh = self.next_behaviour()
                    ctx = contexts[cid] = {"behaviour": beh, "done": False, "cancelled": False, "offset": 0.0,
                                           "flush_id": 1, "queue": asyncio.Queue()}
                    tasks.append(asyncio.get_running_loop().create_task(self.context(ws, cid, ctx)))
                ctx["queue"].put_nowait(m)
                if not m.get("continue", False):
                    self.context_closed.set()
        finally:
            self.aborted.set()
            for t in tasks:
                t.cancel()
        return ws

    async def context(self, ws: web.WebSocketResponse, cid: str, ctx: dict[str, Any]) -> None:
        beh = ctx["behaviour"]
        if beh is Behaviour.STATUS:
            ctx["done"] = True
            await ws.send_json({"type": "error", "done": True, "title": "Injected",
                                "message": f"Injected failure (key {self.api_key})", "error_code": "injected",
                                "status_code": self.status, "context_id": cid})
            return
        if beh is Behaviour.HANG:
            return
        while not ctx["done"]:
            m = await ctx["queue"].get()
            text = m["transcript"]
            audio = self.audio_for(text)
            pieces = [audio[i : i + self.piece] for i in range(0, len(audio), self.piece)]
            if beh is Behaviour.MALFORMED and text:
                beh = Behaviour.NORMAL
                await ws.send_str('{"type": "chunk", "data": ')
            for n, piece in enumerate(pieces):
                await self.send_chunk(ws, cid, ctx, piece)
                if n == 0 and m.get("add_timestamps"):
                    base = 0.0 if self.relative else ctx["offset"]
                    await ws.send_json({"type": "timestamps", "done": False, "status_code": 206, "context_id": cid,
                                        "word_timestamps": {"words": text.split(),
                                                            "start": [base + 0.01 * i for i in range(len(text.split()))],
                                                            "end": [base + 0.01 * i + 0.01
                                                                    for i in range(len(text.split()))]}})
                if beh is Behaviour.DISCONNECT:
                    await ws.close()
                    return
                if beh is Behaviour.SLOW:
                    # audio keeps coming slowly, also for a while after the client cancelled
                    for _ in range(40):
                        await asyncio.sleep(0.02)
                        if ctx["cancelled"]:
                            self.late_sent += 1
                        await self.send_chunk(ws, cid, ctx, pieces[0])
                    return
                await asyncio.sleep(0)
            ctx["offset"] += len(audio) / 2 / m["output_format"]["sample_rate"]
            if m.get("flush"):
                await ws.send_json({"type": "flush_done", "done": False, "flush_done": True,
                                    "flush_id": ctx["flush_id"], "status_code": 206, "context_id": cid})
                ctx["flush_id"] += 1
            if not m.get("continue", False):
                ctx["done"] = True
                await ws.send_json({"type": "done", "done": True, "status_code": 206, "context_id": cid})

    async def send_chunk(self, ws: web.WebSocketResponse, cid: str, ctx: dict[str, Any], piece: bytes) -> None:
        await ws.send_json({"type": "chunk", "data": base64.b64encode(piece).decode(), "done": False,
                            "status_code": 206, "step_time": 1.0, "context_id": cid, "flush_id": ctx["flush_id"]})
