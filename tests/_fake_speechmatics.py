"""A protocol-accurate fake of the Speechmatics real-time API (``/v2``) for the provider tests.

Shapes from https://docs.speechmatics.com/rt-api-ref: ``Authorization: Bearer <key>`` or
``?jwt=`` (a wrong key refuses the upgrade with 401, as the page's handshake section says);
``StartRecognition`` -> ``RecognitionStarted``; every binary frame is an ``AddAudio``,
acknowledged with ``AudioAdded {seq_no}`` and answered with an ``AddPartialTranscript``;
``ForceEndOfUtterance`` gets the ``AddTranscript`` and ``EndOfUtterance``; ``EndOfStream``
``{last_seq_no}`` gets ``EndOfTranscript`` and a close. ``STATUS`` refuses the upgrade;
``error_after_audio`` sends an ``Error {type, reason}`` and closes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider


def transcript(text: str, *, partial: bool = False, start: float = 0.0) -> dict[str, Any]:
    results = []
    for i, w in enumerate(text.rstrip(".").split()):
        results.append({"type": "word", "start_time": start + 0.3 * i, "end_time": start + 0.3 * i + 0.2,
                        "alternatives": [{"content": w, "confidence": 0.97, "language": "en"}]})
    if text.endswith("."):
        results.append({"type": "punctuation", "start_time": start, "end_time": start, "is_eos": True,
                        "alternatives": [{"content": ".", "confidence": 1.0}]})
    return {"message": "AddPartialTranscript" if partial else "AddTranscript", "format": "2.9",
            "metadata": {"transcript": text, "start_time": start, "end_time": start + 1.0}, "results": results}


@dataclass
class Connection:
    query: dict[str, str]
    headers: dict[str, str]
    start: dict[str, Any] | None = None
    texts: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    frames: int = 0


class FakeSpeechmatics(FakeProvider):
    expected_text = "Hello from the fake."

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.connections: list[Connection] = []
        self.extra_messages: list[Any] = []  # sent (raw str, or JSON) before the final
        self.error_after_audio: tuple[str, str] | None = None
        self.sockets: list[web.WebSocketResponse] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2", self.stream)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        conn = Connection(dict(request.query), dict(request.headers))
        self.connections.append(conn)
        auth = request.headers.get("Authorization", "")
        presented = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else request.query.get("jwt")
        if not self.key_ok(presented):
            return web.json_response({"message": "Error", "type": "not_authorised",
                                      "reason": f"bad key {presented}"}, status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    if conn.start is None:
                        await ws.send_json({"message": "Error", "type": "protocol_error",
                                            "reason": "audio before StartRecognition"})
                        await ws.close()
                        break
                    conn.audio += msg.data
                    conn.frames += 1
                    await ws.send_json({"message": "AudioAdded", "seq_no": conn.frames})
                    if self.error_after_audio is not None:
                        kind, reason = self.error_after_audio
                        self.error_after_audio = None
                        await ws.send_json({"message": "Error", "type": kind, "reason": reason})
                        await ws.close()
                        break
                    if b is Behaviour.DISCONNECT:
                        assert request.transport is not None
                        request.transport.close()
                        return ws
                    if b is not Behaviour.SLOW or conn.frames == 1:
                        await ws.send_json(transcript("hel", partial=True))
                    continue
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                obj = json.loads(msg.data)
                conn.texts.append(obj)
                kind = obj.get("message")
                if kind == "StartRecognition":
                    conn.start = obj
                    await ws.send_json({"message": "RecognitionStarted", "id": f"rec-{len(self.connections)}",
                                        "orchestrator_version": "fake", "language_pack_info": {}})
                elif kind == "ForceEndOfUtterance":
                    if b is Behaviour.SLOW or b is Behaviour.HANG or not conn.audio:
                        continue
                    if b is Behaviour.MALFORMED:
                        await ws.send_str("{not json")
                        b = Behaviour.NORMAL
                    for extra in self.extra_messages:
                        await (ws.send_str(extra) if isinstance(extra, str) else ws.send_json(extra))
                    await ws.send_json(transcript(self.expected_text))
                    await ws.send_json({"message": "EndOfUtterance", "metadata": {"start_time": 1.0, "end_time": 1.0}})
                elif kind == "EndOfStream":
                    await ws.send_json({"message": "EndOfTranscript"})
                    await ws.close()
        finally:
            self.aborted.set()  # the client closed the socket
        return ws
