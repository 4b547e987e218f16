"""A protocol-accurate fake of Deepgram's streaming TTS WebSocket (``/v1/speak``) for the provider tests.

Shapes from https://developers.deepgram.com/reference/text-to-speech/speak-streaming and the
Flush / Clear / Close pages: ``Authorization: Token <key>``, query ``model``, ``encoding``,
``sample_rate``; text frames ``{"type": "Speak", "text"}``, ``Flush`` (-> binary audio of the
buffered text, then ``{"type": "Flushed", "sequence_id"}``), ``Clear`` (-> ``Cleared``),
``Close`` (closes 1000); a ``Metadata`` message on connect. The audio is one tone per
character (``synthesize_tones``) in odd-sized binary frames.

Faults: a connection takes one behaviour at the handshake (``STATUS`` refuses the upgrade)
for its first flush; while faults remain, later flushes take the next one (``STATUS`` then
closes the socket 1011, Deepgram's way of reporting an error). A ``SLOW`` or ``HANG``
flush waits for a ``Clear`` (then ``aborted``); ``SLOW`` sends ``late`` frames of audio
after the ``Clear`` and before ``Cleared``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider
from flowcat.testing.fakes import synthesize_tones

CHAR_MS = 20


class FakeDeepgramTTS(FakeProvider):
    sample_rate = 16000
    piece = 777
    late = 3

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.expected_audio = synthesize_tones("Hello there.", self.sample_rate, CHAR_MS)
        self.queries: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.clears = 0
        self.late_sent = 0
        self.sockets: list[web.WebSocketResponse] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/speak", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        self.headers.append(dict(request.headers))
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if not self.key_ok(key if scheme.lower() in ("token", "bearer") else None):
            return web.json_response({"err_code": "INVALID_AUTH", "err_msg": f"Invalid credentials {self.api_key}"},
                                     status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        rate = int(request.query.get("sample_rate", "24000"))
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "Metadata", "request_id": "req-1", "model_name": request.query.get("model"),
                            "model_version": "2025-01-01", "model_uuid": "uuid-1"})
        state: dict[str, Any] = {"pending": b, "buffer": "", "seq": 0, "clear": asyncio.Event(), "generating": False}
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        worker = asyncio.get_running_loop().create_task(self.work(ws, queue, state, rate))
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                self.messages.append(m)
                if m.get("type") == "Clear":
                    self.clears += 1
                    if state["generating"]:
                        self.aborted.set()
                    state["clear"].set()
                queue.put_nowait(m)
        finally:
            self.aborted.set()
            worker.cancel()
        return ws

    async def work(self, ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any]], state: dict[str, Any],
                   rate: int) -> None:
        while True:
            m = await queue.get()
            kind = m.get("type")
            if kind == "Speak":
                state["buffer"] += m["text"]
            elif kind == "Clear":
                state["buffer"] = ""
                state["clear"].clear()
                await ws.send_json({"type": "Cleared", "sequence_id": state["seq"]})
            elif kind == "Close":
                await ws.close()
                return
            elif kind == "Flush":
                beh, state["pending"] = state["pending"], Behaviour.NORMAL
                if beh is Behaviour.NORMAL and self.failures != 0:
                    beh = self.next_behaviour()
                text, state["buffer"] = state["buffer"].strip(), ""
                state["generating"] = True
                try:
                    if not await self.flush(ws, beh, text, state, rate):
                        return
                finally:
                    state["generating"] = False

    async def flush(self, ws: web.WebSocketResponse, beh: Behaviour, text: str, state: dict[str, Any],
                    rate: int) -> bool:
        """Speak ``text``; False when the socket was closed."""
        if beh is Behaviour.STATUS:
            await ws.close(code=1011, message=f"Injected failure {self.status}".encode())
            return False
        if beh is Behaviour.HANG:
            await state["clear"].wait()
            return True
        audio = synthesize_tones(text, rate, CHAR_MS)
        pieces = [audio[i : i + self.piece] for i in range(0, len(audio), self.piece)]
        if beh is Behaviour.MALFORMED:
            await ws.send_str('{"type": "Flushed", ')
        for n, piece in enumerate(pieces):
            await ws.send_bytes(piece)
            if n == 0 and beh is Behaviour.DISCONNECT:
                await ws.close()
                return False
            if n == 0 and beh is Behaviour.SLOW:
                await state["clear"].wait()
                for p in pieces[1 : 1 + self.late]:  # audio already in flight when the Clear came
                    await asyncio.sleep(0.01)
                    self.late_sent += 1
                    await ws.send_bytes(p)
                return True
            await asyncio.sleep(0)
        state["seq"] += 1
        await ws.send_json({"type": "Flushed", "sequence_id": state["seq"]})
        return True
