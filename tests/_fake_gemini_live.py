"""A protocol-accurate fake of the Gemini Live ``BidiGenerateContent`` WebSocket.

Shapes from https://ai.google.dev/api/live and
https://ai.google.dev/gemini-api/docs/live-api/get-started-websocket: ``GET /ws/google.ai.
generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=<key>`` (or the
``x-goog-api-key`` header) upgraded to a WebSocket; the client's first message is ``setup``,
answered by ``setupComplete``; JSON objects with one top-level field both ways; the server's
sent as binary frames (as Google's server does) unless ``binary=False``.

It records every connection (query, headers, client messages in order; ``types()`` names each
by its top-level field) and answers each user turn with tones encoding :attr:`expected_text`
(``serverContent.modelTurn`` audio at 24 kHz) interleaved with ``outputTranscription`` words,
then ``generationComplete`` and ``turnComplete`` with ``usageMetadata``. A turn ends with
automatic activity detection when loud audio is followed by quiet audio (the caller's
transcript comes as ``inputTranscription`` fragments), with ``activityEnd`` when detection is
disabled, with ``clientContent.turnComplete``, and after a ``toolResponse`` the model goes on.
:attr:`tool_calls` scripts ``toolCall`` messages. With :attr:`resumable` it sends a
``sessionResumptionUpdate`` after the setup and after each turn; :meth:`go_away` sends
``goAway`` on the newest connection.

Behaviours (per response): ``SLOW`` sends :attr:`slow_chunks` chunks, then ``interrupted``
(the server's own barge-in), a late chunk and ``turnComplete``; ``DISCONNECT`` drops the socket
after the first chunk; ``HANG`` stalls after the first chunk; ``MALFORMED`` sends a non-JSON message, a JSON array and audio that is not
base64 among the chunks; ``STREAM_ERROR`` closes with 1011 and a reason (how Gemini reports
errors). ``STATUS`` refuses the upgrade (per connection).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from _fake_openai_realtime import _rms
from flowcat.testing.conformance import Behaviour
from flowcat.testing.fakes._realtime_fake import RealtimeFake

RATE = 24000
CHUNK = RATE * 2 // 10  # 100 ms of PCM16
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@dataclass
class Connection:
    headers: dict[str, str]
    query: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    audio_mime: set[str] = field(default_factory=set)

    def types(self) -> list[str]:
        return [next(iter(e), "") for e in self.events]

    @property
    def setup(self) -> dict[str, Any]:
        return dict(self.events[0]["setup"]) if self.events and "setup" in self.events[0] else {}


class FakeGeminiLive(RealtimeFake):
    expected_text = "hello there how are you"
    user_text = "what is up"
    sample_rate = RATE
    session_event = "setup"
    truncation = False  # Gemini has no truncate message: the server cuts its own turn

    def __init__(self, *args: Any, auth: str = "query", binary: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.auth = auth
        self.binary = binary
        self.connections: list[Connection] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.truncates: list[dict[str, Any]] = []
        self.item_ids: list[str] = []
        self.slow_chunks = 2
        self.responses = 0
        self.audio_bytes_in = 0
        self.resumable = False
        self.interrupts = 0
        self._sockets: list[web.WebSocketResponse] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.socket)

    async def start(self) -> str:
        """As the base, without the server's access log: it would print the ``?key=`` query
        (the suite checks the client's logs; a real server's logs are not the client's)."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e[kind] for c in self.connections for e in c.events if kind in e]

    # ---------------------------------------------------- conformance views

    def tool_outputs(self) -> list[tuple[str, str]]:
        return [(r["id"], json.dumps(r["response"])) for e in self.events("toolResponse")
                for r in e["functionResponses"]]

    def continued_after_tool(self) -> bool:
        """The model goes on after a toolResponse: nothing may ask it to answer again."""
        types = self.connections[-1].types()
        i = types.index("toolResponse")
        return "clientContent" not in types[i:]

    def replayed_texts(self, conn: Connection) -> list[str]:
        return [p.get("text") for e in conn.events if "clientContent" in e
                for t in e["clientContent"].get("turns", []) for p in t.get("parts", [])]

    async def cancel_tool_calls(self, ids: list[str]) -> None:
        await self._send(self._sockets[-1], {"toolCallCancellation": {"ids": ids}})

    async def go_away(self, time_left: str = "5s") -> None:
        await self._send(self._sockets[-1], {"goAway": {"timeLeft": time_left}})

    # --------------------------------------------------------------- socket

    def _presented(self, request: web.Request) -> str:
        if self.auth == "header":
            return request.headers.get("x-goog-api-key", "")
        return request.query.get("key", "")

    async def socket(self, request: web.Request) -> web.StreamResponse:
        conn = Connection(dict(request.headers), dict(request.query))
        if not self.key_ok(self._presented(request)):
            return web.json_response({"error": {"code": 403, "message": "bad key", "status": "PERMISSION_DENIED"}},
                                     status=403)
        if self.behaviour is Behaviour.STATUS and self.failures != 0:
            self.next_behaviour()
            return web.json_response(self.error_body(), status=self.status)
        self.connections.append(conn)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        speaking = False
        vad = True
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                kind = next(iter(event), "")
                if kind == "realtimeInput" and "audio" in event[kind]:
                    audio = event[kind]["audio"]
                    conn.audio_mime.add(audio["mimeType"])
                    conn.events.append({kind: {"audio": {}}})
                else:
                    conn.events.append(event)
                if len(conn.events) == 1:
                    if kind != "setup":
                        await ws.close(code=WSCloseCode.INVALID_TEXT, message=b"setup must come first")
                        break
                    if event["setup"].get("model") == "models/no-such-model":
                        await ws.close(code=WSCloseCode.INVALID_TEXT, message=b"models/no-such-model is not found")
                        break
                    vad = not event["setup"].get("realtimeInputConfig", {}).get(
                        "automaticActivityDetection", {}).get("disabled", False)
                    await self._send(ws, {"setupComplete": {}})
                    await self._resumption(ws)
                    continue
                if kind == "realtimeInput" and "audio" in event[kind]:
                    pcm = base64.b64decode(event[kind]["audio"]["data"])
                    self.audio_bytes_in += len(pcm)
                    loud = _rms(pcm) > 500
                    if vad and loud and not speaking:
                        speaking = True
                    elif vad and speaking and not loud:
                        speaking = False
                        await self._user_turn(ws)
                        self._spawn(self._respond(ws))
                elif kind == "realtimeInput" and "activityEnd" in event[kind]:
                    await self._user_turn(ws)
                    self._spawn(self._respond(ws))
                elif kind == "clientContent" and event[kind].get("turnComplete"):
                    self._spawn(self._respond(ws))
                elif kind == "toolResponse":
                    self._spawn(self._respond(ws))
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted.set()
            raise
        self.aborted.set()
        return ws

    async def _send(self, ws: web.WebSocketResponse, event: Any) -> None:
        text = json.dumps(event)
        if self.binary:
            await ws.send_bytes(text.encode())
        else:
            await ws.send_str(text)

    async def _resumption(self, ws: web.WebSocketResponse) -> None:
        if self.resumable:
            await self._send(ws, {"sessionResumptionUpdate": {
                "newHandle": f"handle_{len(self.connections)}_{self.responses}", "resumable": True}})

    async def _user_turn(self, ws: web.WebSocketResponse) -> None:
        words = self.user_text.split(" ")
        for i, w in enumerate(words):
            await self._send(ws, {"serverContent": {"inputTranscription": {"text": w if i == 0 else " " + w}}})

    async def _respond(self, ws: web.WebSocketResponse) -> None:
        self.responses += 1
        n = self.responses
        b = self.next_behaviour()
        if self.tool_calls:
            name, args = self.tool_calls.pop(0)
            await self._send(ws, {"toolCall": {"functionCalls": [{"id": f"call_{n}", "name": name, "args": args}]}})
            return
        self.item_ids.append(f"turn_{n}")
        audio = self.expected_audio
        chunks = [audio[i:i + CHUNK] for i in range(0, len(audio), CHUNK)]
        words = self.expected_text.split(" ")
        for i, chunk in enumerate(chunks):
            if i < len(words):
                await self._send(ws, {"serverContent": {"outputTranscription": {
                    "text": words[i] if i == 0 else " " + words[i]}}})
            await self._send(ws, _audio(chunk))
            if b is Behaviour.MALFORMED and i == 0:
                await ws.send_str("{not json")
                await self._send(ws, ["not", "an", "object"])
                await self._send(ws, {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
                    "mimeType": "audio/pcm;rate=24000", "data": "!!not base64!!"}}]}}})
            if b is Behaviour.HANG and i == 0:
                await asyncio.sleep(30)  # a turn that does not end (until the client leaves)
                return
            if b is Behaviour.DISCONNECT and i == 0:
                await ws.close()
                return
            if b is Behaviour.STREAM_ERROR and i == 0:
                await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"The server had an error")
                return
            if b is Behaviour.SLOW and i + 1 == self.slow_chunks:
                self.interrupts += 1
                await self._send(ws, {"serverContent": {"interrupted": True}})
                self.aborted.set()
                await self._send(ws, _audio(chunks[-1]))  # late audio of the cut turn: to be dropped
                await self._send(ws, {"serverContent": {"turnComplete": True}})
                return
            await asyncio.sleep(0)
        await self._send(ws, {"serverContent": {"generationComplete": True}})
        await self._send(ws, {"serverContent": {"turnComplete": True}, "usageMetadata": _usage()})
        await self._resumption(ws)


def _audio(chunk: bytes) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(chunk).decode()}}]}}}


def _usage() -> dict[str, Any]:
    return {"promptTokenCount": 100, "responseTokenCount": 50, "totalTokenCount": 150,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 40}, {"modality": "AUDIO", "tokenCount": 60}],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 50}]}
