"""A minimal protocol-accurate fake of Deepgram live STT (``/v1/listen``) for the provider tests.

Shapes from https://developers.deepgram.com/reference/speech-to-text/listen-streaming and
the asyncapi spec: ``Authorization: Token <key>``, binary audio, text control messages
(KeepAlive, Finalize, CloseStream), ``Results`` with ``is_final``/``speech_final``/
``from_finalize``, ``Metadata`` on CloseStream, then a 1000 close. Every audio frame gets
an interim result; a Finalize gets the final one. It records the query, the headers, the
text messages and the audio of every connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider


def results(text: str, *, final: bool, speech_final: bool = False, from_finalize: bool = False,
            start: float = 0.0, languages: list[str] | None = None) -> dict[str, Any]:
    alt: dict[str, Any] = {"transcript": text, "confidence": 0.98,
                           "words": [{"word": w, "start": start, "end": start + 0.1, "confidence": 0.98,
                                      "punctuated_word": w} for w in text.split()]}
    if languages is not None:
        alt["languages"] = languages
    return {"type": "Results", "channel_index": [0, 1], "duration": 0.2, "start": start, "is_final": final,
            "speech_final": speech_final, "from_finalize": from_finalize, "channel": {"alternatives": [alt]},
            "metadata": {"request_id": "req-1", "model_info": {"name": "nova-3"}, "model_uuid": "uuid-1"}}


@dataclass
class Connection:
    query: dict[str, str]
    headers: dict[str, str]
    texts: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    empty_frames: int = 0


class FakeDeepgram(FakeProvider):
    expected_text = "hello from the fake"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.connections: list[Connection] = []
        self.extra_messages: list[Any] = []  # sent (raw str, or JSON) before the final result
        self.message = asyncio.Event()
        self.sockets: list[web.WebSocketResponse] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self.listen)

    async def listen(self, request: web.Request) -> web.StreamResponse:
        conn = Connection(dict(request.query), dict(request.headers))
        self.connections.append(conn)
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Token ")):
            return web.json_response(self.error_body(), status=401, headers={"dg-error": "INVALID_AUTH"})
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status, headers={"dg-error": "injected"})
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        received = 0
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    if not msg.data:
                        conn.empty_frames += 1
                        continue
                    conn.audio += msg.data
                    received += len(msg.data)
                    if b is Behaviour.DISCONNECT:
                        assert request.transport is not None
                        request.transport.close()
                        return ws
                    await ws.send_json(results("hel", final=False))
                    continue
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                obj = json.loads(msg.data)
                conn.texts.append(obj)
                self.message.set()
                kind = obj.get("type")
                if kind == "Finalize":
                    if b is Behaviour.SLOW or not received:
                        continue
                    if b is Behaviour.MALFORMED:
                        await ws.send_str("{not json")
                        b = Behaviour.NORMAL
                    for extra in self.extra_messages:
                        await (ws.send_str(extra) if isinstance(extra, str) else ws.send_json(extra))
                    received = 0
                    await ws.send_json(results(self.expected_text, final=True, speech_final=True,
                                               from_finalize=True))
                elif kind == "CloseStream":
                    await ws.send_json({"type": "Metadata", "transaction_key": "deprecated", "request_id": "req-1",
                                        "sha256": "0" * 64, "created": "2026-01-01T00:00:00.000Z",
                                        "duration": 0.2, "channels": 1})
                    await ws.close()
        finally:
            self.aborted.set()  # the client closed the socket
        return ws
