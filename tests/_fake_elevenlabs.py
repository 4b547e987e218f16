"""A protocol-accurate fake of ElevenLabs' multi-context TTS WebSocket for the provider tests.

Shapes from https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-multi-stream-input
and the multi-context guide: ``GET /v1/text-to-speech/{voice_id}/multi-stream-input`` with
``xi-api-key``; client messages ``{"text", "context_id", "voice_settings"?, "flush"?}``,
``{"context_id", "close_context": true}``, ``{"close_socket": true}``, ``{"text": ""}``
(keepalive); server messages ``{"audio", "alignment", "normalizedAlignment", "contextId"}``
then ``{"isFinal": true, "contextId"}`` once a closed context has sent all its audio.

The audio is one tone per character (``synthesize_tones``), sent in chunks of whole
characters (``chunk_chars``, cycled) with their alignment: times from the chunk's start
(``cumulative=True``: from the context's). A context closed a second time while it still
generates counts as a barge-in (``cancelled``, ``aborted``); a ``SLOW`` context keeps
sending late chunks after it.

Faults: a connection takes one behaviour at the handshake (``STATUS`` refuses the
upgrade), which its first context gets; while faults remain, later contexts take the next
one (``STATUS`` then answers with an error message).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider
from flowcat.testing.fakes import synthesize_tones

CHAR_MS = 20


class FakeElevenLabs(FakeProvider):
    sample_rate = 16000

    def __init__(self, *args: Any, cumulative: bool = False, chunk_chars: tuple[int, ...] = (5, 3, 7),
                 **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.expected_audio = synthesize_tones("Hello there.", self.sample_rate, CHAR_MS)
        self.cumulative = cumulative
        self.chunk_chars = chunk_chars
        self.voices: list[str] = []
        self.queries: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.keepalives = 0
        self.late_sent = 0
        self.sockets: list[web.WebSocketResponse] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/text-to-speech/{voice}/multi-stream-input", self.handle)

    async def start(self) -> str:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    def rate(self, request: web.Request) -> int:
        fmt = request.query.get("output_format", "pcm_16000")
        return int(fmt.partition("_")[2] or 16000)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.voices.append(request.match_info["voice"])
        self.queries.append(dict(request.query))
        self.headers.append(dict(request.headers))
        if not self.key_ok(request.headers.get("xi-api-key")):
            return web.json_response({"detail": {"status": "invalid_api_key",
                                                 "message": f"Invalid API key {self.api_key}"}}, status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        rate = self.rate(request)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        pending = b
        contexts: dict[str, dict[str, Any]] = {}
        tasks: list[asyncio.Task[None]] = []
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                self.messages.append(m)
                if m.get("close_socket"):
                    await ws.close()
                    break
                cid = m.get("context_id")
                if cid is None:
                    self.keepalives += 1
                    continue
                ctx = contexts.get(cid)
                if m.get("close_context"):
                    if ctx is None:
                        continue
                    if ctx["closing"] and not ctx["done"]:  # closed again while generating: barge-in
                        ctx["cancelled"] = ctx["done"] = True
                        self.cancelled.append(cid)
                        self.aborted.set()
                    ctx["closing"] = True
                    ctx["closed"].set()
                    continue
                if ctx is None:
                    beh, pending = pending, Behaviour.NORMAL
                    if beh is Behaviour.NORMAL and self.failures != 0:
                        beh = self.next_behaviour()
                    ctx = contexts[cid] = {"behaviour": beh, "text": "", "closing": False, "done": False,
                                           "cancelled": False, "flushed": asyncio.Event(), "closed": asyncio.Event()}
                    tasks.append(asyncio.get_running_loop().create_task(self.context(ws, cid, ctx, rate)))
                ctx["text"] += m.get("text", "")
                if m.get("flush"):
                    ctx["flushed"].set()
        finally:
            self.aborted.set()
            for t in tasks:
                t.cancel()
        return ws

    def chunk(self, cid: str, text: str, a: int, b: int, rate: int, pcm: bytes) -> dict[str, Any]:
        n = rate * CHAR_MS // 1000 * 2
        base = a * CHAR_MS if self.cumulative else 0
        chars = list(text[a:b])
        alignment = {"chars": chars, "charStartTimesMs": [base + i * CHAR_MS for i in range(len(chars))],
                     "charDurationsMs": [CHAR_MS] * len(chars)}
        return {"audio": base64.b64encode(pcm[a * n : b * n]).decode(), "isFinal": None,
                "normalizedAlignment": alignment, "alignment": alignment, "contextId": cid}

    async def context(self, ws: web.WebSocketResponse, cid: str, ctx: dict[str, Any], rate: int) -> None:
        beh = ctx["behaviour"]
        if beh is Behaviour.STATUS:
            ctx["done"] = True
            await ws.send_json({"message": f"Injected failure (key {self.api_key})", "error": "injected",
                                "code": self.status, "contextId": cid})
            return
        if beh is Behaviour.HANG:
            return
        await ctx["flushed"].wait()
        text = ctx["text"].strip()
        pcm = synthesize_tones(text, rate, CHAR_MS)
        spans, a = [], 0
        for size in itertools.cycle(self.chunk_chars):
            if a >= len(text):
                break
            spans.append((a, min(len(text), a + size)))
            a += size
        if beh is Behaviour.MALFORMED:
            await ws.send_str('{"audio": ')
        for k, (a, b) in enumerate(spans):
            await ws.send_json(self.chunk(cid, text, a, b, rate, pcm))
            if k == 0 and beh is Behaviour.DISCONNECT:
                await ws.close()
                return
            if k == 0 and beh is Behaviour.SLOW:
                for _ in range(40):  # audio keeps coming slowly, also after the client's barge-in close
                    await asyncio.sleep(0.02)
                    if ctx["cancelled"]:
                        self.late_sent += 1
                    await ws.send_json(self.chunk(cid, text, a, b, rate, pcm))
                return
            await asyncio.sleep(0)
        await ctx["closed"].wait()
        if not ctx["done"]:
            ctx["done"] = True
            await ws.send_json({"isFinal": True, "contextId": cid})
