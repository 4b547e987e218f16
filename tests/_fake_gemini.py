"""A protocol-accurate fake of Gemini ``streamGenerateContent?alt=sse`` for the provider tests.

Shapes from https://ai.google.dev/api/generate-content (``GenerateContentResponse`` chunks:
``candidates[0].content.parts[]`` with ``text`` or a whole ``functionCall``, ``finishReason``
on the last, cumulative ``usageMetadata``; the body just closes) and the Google RPC error
body ``{"error": {"code", "message", "status"}}``. The key is taken from ``x-goog-api-key``
or ``?key=``. It records every request (model, query, headers, JSON body) and can be given
the raw payload of each answer (``scripts``, one per request, or one ``script`` for all).
Payloads are written in 9-byte pieces, so events and UTF-8 sequences are cut anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider

WORDS = ["Hello", " from", " Gemini", " — café", " ☕."]

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 6, "totalTokenCount": 17, "thoughtsTokenCount": 2,
         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}]}


def sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return b"data: " + data.encode() + b"\r\n\r\n"  # Google's SSE lines end in CRLF


def chunk(parts: list[dict[str, Any]], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    obj: dict[str, Any] = {"candidates": [cand], "modelVersion": "gemini-test", "responseId": "resp-1"}
    obj["usageMetadata"] = usage or {"promptTokenCount": 9, "totalTokenCount": 9}
    return sse(obj)


def reply(text: str = "", calls: Sequence[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str]] = ()) -> bytes:
    """A whole answer: text (a chunk per word), then the function calls (name, args[, id]) in the last chunk."""
    words = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))] if text else []
    out = b"".join(chunk([{"text": w}]) for w in words)
    parts = []
    for call in calls:
        fc: dict[str, Any] = {"name": call[0], "args": call[1]}
        if len(call) > 2:
            fc["id"] = call[2]  # type: ignore[misc]
        parts.append({"functionCall": fc})
    return out + chunk(parts, "STOP", USAGE)


class FakeGemini(FakeProvider):
    expected_text = "".join(WORDS)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.models: list[str] = []
        self.queries: list[dict[str, str]] = []
        self.script: list[bytes] | None = None  # raw payload for every answer instead of the canned one
        self.scripts: list[bytes] = []  # raw payloads, one per answer (before script/canned)

    @property
    def base_url(self) -> str:
        return self.url

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self.generate)

    def error_body(self, status: int | None = None) -> dict[str, Any]:
        code = status or self.status
        return {"error": {"code": code, "message": f"API key not valid or quota: {self.api_key}",
                          "status": _STATUS.get(code, "UNKNOWN"),
                          "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TEST"}]}}

    def canned(self) -> bytes:
        return (chunk([{"text": WORDS[0]}]) + chunk([{"text": WORDS[1] + WORDS[2]}])
                + chunk([{"text": WORDS[3]}, {"text": WORDS[4]}], "STOP", USAGE))

    async def generate(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        self.queries.append(dict(request.query))
        model, _, method = request.match_info["target"].partition(":")
        if method != "streamGenerateContent":
            return web.json_response(self.error_body(404), status=404)
        if not self.key_ok(request.headers.get("x-goog-api-key") or request.query.get("key")):
            return web.json_response(self.error_body(400), status=400)  # Gemini answers a bad key with 400
        self.models.append(model)
        self.bodies.append(await request.json())
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        if request.query.get("alt") != "sse":
            return web.json_response(self.error_body(400), status=400)  # this fake only speaks SSE
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        first = chunk([{"text": WORDS[0]}])
        if b is Behaviour.SLOW:
            await resp.write(first)
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            await resp.write(first)
            assert request.transport is not None
            request.transport.close()
            return resp
        if b is Behaviour.MALFORMED:
            await resp.write(first + b"data: {not json\r\n\r\n")
            return resp
        if b is Behaviour.STREAM_ERROR:
            await resp.write(first + sse({"error": {"code": 503, "message": "The model is overloaded.",
                                                    "status": "UNAVAILABLE"}}))
            return resp
        if self.scripts:
            payload = self.scripts.pop(0)
        elif self.script is not None:
            payload = b"".join(self.script)
        else:
            payload = self.canned()
        for i in range(0, len(payload), 9):  # cut anywhere, inside UTF-8 sequences too
            await resp.write(payload[i : i + 9])
        return resp
