"""A protocol-accurate fake of Rime's JSON TTS WebSocket (``/ws3``, ``/ws2``) for the provider tests.

Shapes from https://docs.rime.ai/api-reference/endpoint/websockets-json and the websockets
and segmentation guides: ``Authorization: Bearer``, options in the query (``speaker``,
``modelId``, ``audioFormat``, ``samplingRate``, ``segment``); client messages ``{"text",
"contextId"}``, ``{"operation": "flush" | "clear" | "eos"}``; server messages ``chunk``
(base64 audio), ``timestamps`` (``word_timestamps`` from the start of the synthesis),
``done`` and ``error``, tagged with the ``contextId`` of the text. The audio is one tone
per character (``synthesize_tones``).

Faults: a connection takes one behaviour at the handshake (``STATUS`` refuses the upgrade)
for its first flush; while faults remain, later flushes take the next one (``STATUS`` then
answers with an ``error`` message). A ``SLOW`` or ``HANG`` synthesis waits for a
``clear`` (then ``aborted``); ``SLOW`` sends ``late`` chunks for it after the ``clear``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider
from flowcat.testing.fakes import synthesize_tones

CHAR_MS = 20


class FakeRime(FakeProvider):
    sample_rate = 16000
    piece = 901
    late = 3

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.expected_audio = synthesize_tones("Hello there.", self.sample_rate, CHAR_MS)
        self.paths: list[str] = []
        self.queries: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.clears = 0
        self.late_sent = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws3", self.handle)
        app.router.add_get("/ws2", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        self.queries.append(dict(request.query))
        self.headers.append(dict(request.headers))
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response({"message": f"Unauthorized key {self.api_key}"}, status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        rate = int(request.query.get("samplingRate", "24000"))
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        state: dict[str, Any] = {"pending": b, "buffer": "", "ctx": None, "clear": asyncio.Event(),
                                 "generating": False}
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        worker = asyncio.get_running_loop().create_task(self.work(ws, queue, state, rate))
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                self.messages.append(m)
                if m.get("operation") == "clear":
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
            op = m.get("operation")
            if "text" in m:
                state["buffer"] += m["text"]
                state["ctx"] = m.get("contextId")
            elif op == "clear":
                state["buffer"] = ""
                state["clear"].clear()
            elif op == "eos":
                await ws.close()
                return
            elif op == "flush":
                beh, state["pending"] = state["pending"], Behaviour.NORMAL
                if beh is Behaviour.NORMAL and self.failures != 0:
                    beh = self.next_behaviour()
                text, state["buffer"] = state["buffer"].strip(), ""
                state["generating"] = True
                try:
                    if not await self.synthesize(ws, beh, text, state["ctx"], state, rate):
                        return
                finally:
                    state["generating"] = False

    async def synthesize(self, ws: web.WebSocketResponse, beh: Behaviour, text: str, ctx: str | None,
                         state: dict[str, Any], rate: int) -> bool:
        """Speak ``text`` tagged ``ctx``; False when the socket was closed."""
        if beh is Behaviour.STATUS:
            await ws.send_json({"type": "error", "message": f"Injected failure (key {self.api_key})"})
            return True
        if beh is Behaviour.HANG:
            await state["clear"].wait()
            return True
        audio = synthesize_tones(text, rate, CHAR_MS)
        pieces = [audio[i : i + self.piece] for i in range(0, len(audio), self.piece)]
        words = text.split()
        starts, pos = [], 0
        for w in words:
            pos = text.index(w, pos)
            starts.append(pos * CHAR_MS / 1000)
            pos += len(w)
        if beh is Behaviour.MALFORMED:
            await ws.send_str('{"type": "chunk", "data": ')
        for n, piece in enumerate(pieces):
            await ws.send_json({"type": "chunk", "data": base64.b64encode(piece).decode(), "contextId": ctx})
            if n == 0:
                await ws.send_json({"type": "timestamps", "contextId": ctx,
                                    "word_timestamps": {"words": words, "start": starts,
                                                        "end": [s + 0.1 for s in starts]}})
            if n == 0 and beh is Behaviour.DISCONNECT:
                await ws.close()
                return False
            if n == 0 and beh is Behaviour.SLOW:
                await state["clear"].wait()
                for p in pieces[1 : 1 + self.late]:  # audio already in flight when the clear came
                    await asyncio.sleep(0.01)
                    self.late_sent += 1
                    await ws.send_json({"type": "chunk", "data": base64.b64encode(p).decode(), "contextId": ctx})
                return True
            await asyncio.sleep(0)
        await ws.send_json({"type": "done", "contextId": ctx})
        return True
