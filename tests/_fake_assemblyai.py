"""A protocol-accurate fake of AssemblyAI Universal Streaming v3 (``/v3/ws``) for the provider tests.

Shapes from https://www.assemblyai.com/docs/api-reference/streaming-api/streaming-api and
https://www.assemblyai.com/docs/streaming/universal-streaming/message-sequence: the key in
``Authorization: <key>`` or a ``?token=``; a wrong key is refused in-band (``Error`` 1008,
then a 1008 close), as the closures page describes. ``Begin`` first; every binary frame
(checked to be 50..1000 ms, else ``Error`` 3007 and a 3007 close) gets an interim ``Turn``;
``ForceEndpoint`` gets the end of turn (unformatted, then the formatted copy with
``format_turns=true``); ``Terminate`` gets ``Termination`` and a 1000 close.
``STATUS`` refuses the upgrade with that HTTP status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider


def turn(text: str, *, order: int = 0, end: bool = False, formatted: bool = False,
         words: list[str] | None = None) -> dict[str, Any]:
    ws = text.split() if words is None else words
    return {"type": "Turn", "turn_order": order, "turn_is_formatted": formatted, "end_of_turn": end,
            "transcript": text, "end_of_turn_confidence": 0.9 if end else 0.01, "utterance": text if end else "",
            "words": [{"start": 100 * i, "end": 100 * i + 80, "text": w, "confidence": 0.9, "word_is_final": end}
                      for i, w in enumerate(ws)]}


@dataclass
class Connection:
    query: dict[str, str]
    headers: dict[str, str]
    texts: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    frame_ms: list[float] = field(default_factory=list)
    close_code: int | None = None


class FakeAssemblyAI(FakeProvider):
    expected_text = "Hello from the fake."

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.connections: list[Connection] = []
        self.extra_messages: list[Any] = []  # sent (raw str, or JSON) before the end of turn
        self.error_after_audio: tuple[int, str] | None = None  # an in-band Error + close on the next audio
        self.sockets: list[web.WebSocketResponse] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/ws", self.stream)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        conn = Connection(dict(request.query), dict(request.headers))
        self.connections.append(conn)
        presented = request.headers.get("Authorization") or request.query.get("token")
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        if not self.key_ok(presented):
            await ws.send_json({"type": "Error", "error_code": 1008,
                                "error": f"Unauthorized Connection: Invalid API key {presented}"})
            await ws.close(code=1008, message=b"Unauthorized Connection")
            return ws
        rate = int(request.query.get("sample_rate", "16000"))
        formatted = request.query.get("format_turns") == "true"
        await ws.send_json({"type": "Begin", "id": f"sess-{len(self.connections)}", "expires_at": 1759796682})
        order = 0
        received = 0
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    ms = len(msg.data) / 2 / rate * 1000
                    conn.frame_ms.append(ms)
                    if not 50 <= ms <= 1000:
                        await ws.send_json({"type": "Error", "error_code": 3007,
                                            "error": f"Input duration violation: {ms:.0f} ms."})
                        await ws.close(code=3007, message=b"See Error message for details")
                        conn.close_code = 3007
                        break
                    conn.audio += msg.data
                    received += 1
                    if self.error_after_audio is not None:
                        code, text = self.error_after_audio
                        self.error_after_audio = None
                        await ws.send_json({"type": "Error", "error_code": code, "error": text})
                        await ws.close(code=code, message=b"See Error message for details")
                        conn.close_code = code
                        break
                    if b is Behaviour.DISCONNECT:
                        assert request.transport is not None
                        request.transport.close()
                        return ws
                    if b is not Behaviour.SLOW or received == 1:
                        await ws.send_json(turn("", order=order, words=["hel"]))
                    continue
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                obj = json.loads(msg.data)
                conn.texts.append(obj)
                kind = obj.get("type")
                if kind == "ForceEndpoint":
                    if b is Behaviour.SLOW or b is Behaviour.HANG or not received:
                        continue
                    if b is Behaviour.MALFORMED:
                        await ws.send_str("{not json")
                        b = Behaviour.NORMAL
                    for extra in self.extra_messages:
                        await (ws.send_str(extra) if isinstance(extra, str) else ws.send_json(extra))
                    received = 0
                    raw = self.expected_text.lower().rstrip(".")
                    await ws.send_json(turn(raw, order=order, end=True))
                    if formatted:
                        await ws.send_json(turn(self.expected_text, order=order, end=True, formatted=True))
                    order += 1
                elif kind == "Terminate":
                    await ws.send_json({"type": "Termination", "audio_duration_seconds": 1,
                                        "session_duration_seconds": 2})
                    await ws.close()
                    conn.close_code = 1000
        finally:
            self.aborted.set()  # the client closed the socket
        return ws
