"""A protocol-accurate fake of OpenAI's ``POST /v1/audio/transcriptions`` (and Groq's, the same shape).

Shapes from https://platform.openai.com/docs/api-reference/audio/createTranscription:
``Authorization: Bearer <key>``, a multipart form (``file`` plus text fields), a JSON answer
``{"text", "usage"}``, or with ``stream=true`` SSE ``transcript.text.delta`` /
``transcript.text.done`` events; errors in OpenAI's ``{"error": {...}}`` shape. It records
every form (the file's name, content type and bytes, and the fields).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider


@dataclass
class Upload:
    headers: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    filename: str | None = None
    content_type: str | None = None
    file: bytes = b""


class FakeOpenAISTT(FakeProvider):
    expected_text = "Hello from the fake."

    def __init__(self, *args: Any, path: str = "/v1/audio/transcriptions", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.path = path
        self.uploads: list[Upload] = []
        self.extra_events: list[str] = []  # raw SSE ``data:`` payloads sent before the deltas

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.transcribe)

    async def transcribe(self, request: web.Request) -> web.StreamResponse:
        up = Upload(dict(request.headers))
        self.uploads.append(up)
        reader = await request.multipart()
        async for part in reader:
            name = part.name or ""  # type: ignore[union-attr]
            up.order.append(name)
            if name == "file":
                up.filename = part.filename  # type: ignore[union-attr]
                up.content_type = part.headers.get("Content-Type")
                up.file = await part.read()  # type: ignore[union-attr]
            else:
                up.fields[name] = await part.text()  # type: ignore[union-attr]
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response({"error": {"message": "Incorrect API key provided", "type":
                                                "invalid_request_error", "param": None, "code": "invalid_api_key"}},
                                     status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        if up.fields.get("stream") == "true":
            return await self._sse(request, b)
        body = json.dumps({"text": self.expected_text, "usage": {"type": "duration", "seconds": 1}}).encode()
        if b is Behaviour.MALFORMED:
            return web.Response(body=b"{not json", content_type="application/json")
        if b in (Behaviour.SLOW, Behaviour.DISCONNECT):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(body[:7])
            if b is Behaviour.DISCONNECT:
                assert request.transport is not None
                request.transport.close()
                return resp
            await self.wait_client_gone(request)
            return resp
        return web.Response(body=body, content_type="application/json")

    async def _sse(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for raw in self.extra_events:
            await resp.write(f"data: {raw}\n\n".encode())
        text = self.expected_text
        pieces = [text[:3], text[3:8], text[8:]]
        for i, piece in enumerate(pieces):
            event = {"type": "transcript.text.delta", "delta": piece, "logprobs": None}
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
            if i == 0:
                if b is Behaviour.DISCONNECT:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if b is Behaviour.SLOW:
                    await self.wait_client_gone(request)
                    return resp
                if b is Behaviour.MALFORMED:
                    await resp.write(b"data: {not json\n\n")
            await asyncio.sleep(0)
        done = {"type": "transcript.text.done", "text": text, "usage": {"type": "tokens", "input_tokens": 10,
                                                                         "output_tokens": 5, "total_tokens": 15}}
        await resp.write(f"data: {json.dumps(done)}\n\n".encode())
        return resp
