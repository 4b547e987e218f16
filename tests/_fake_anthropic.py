"""A protocol-accurate fake of Anthropic Messages streaming (SSE) for the provider tests.

Shapes from https://docs.anthropic.com/en/api/messages-streaming (named events
``message_start``, ``content_block_start``/``_delta``/``_stop``, ``message_delta``,
``message_stop``, ``ping``, ``error``) and https://docs.anthropic.com/en/api/errors (the
``{"type": "error", "error": {"type", "message"}}`` body). It checks ``x-api-key`` and
``anthropic-version``, records every request (headers and JSON body) and can be given the
raw payload of each answer (``scripts``, one per request, or one ``script`` for all).
Payloads are written in 5-byte pieces, so events and UTF-8 sequences are cut anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider

WORDS = ["Hello", " from", " Claude", " — café", " ☕."]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                503: "overloaded_error", 529: "overloaded_error"}


def event(name: str, data: dict[str, Any] | str) -> bytes:
    body = data if isinstance(data, str) else json.dumps({"type": name, **data}, ensure_ascii=False)
    return f"event: {name}\ndata: {body}\n\n".encode()


def message_start(input_tokens: int = 12, cache_creation: int | None = None, cache_read: int | None = None) -> bytes:
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": 1}
    if cache_creation is not None:
        usage["cache_creation_input_tokens"] = cache_creation
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    return event("message_start", {"message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-test",
        "stop_reason": None, "stop_sequence": None, "usage": usage}})


def text_block(index: int, pieces: list[str]) -> bytes:
    out = event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
    for p in pieces:
        out += event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": p}})
    return out + event("content_block_stop", {"index": index})


def tool_block(index: int, call_id: str, name: str, json_pieces: list[str]) -> bytes:
    out = event("content_block_start", {"index": index, "content_block": {
        "type": "tool_use", "id": call_id, "name": name, "input": {}}})
    for p in ["", *json_pieces]:  # the first partial_json may be empty
        out += event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": p}})
    return out + event("content_block_stop", {"index": index})


def message_end(stop_reason: str = "end_turn", output_tokens: int = 7) -> bytes:
    return (event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                    "usage": {"output_tokens": output_tokens}})
            + event("message_stop", {}))


def reply(text: str = "", tool_calls: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> bytes:
    """A whole answer: text (in word pieces), then tool calls (id, name, input; input JSON in 6-char pieces)."""
    out = message_start()
    index = 0
    if text:
        out += text_block(index, [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))])
        index += 1
    for call_id, name, args in tool_calls:
        raw = json.dumps(args, ensure_ascii=False)
        out += tool_block(index, call_id, name, [raw[i : i + 6] for i in range(0, len(raw), 6)])
        index += 1
    return out + message_end("tool_use" if tool_calls else "end_turn")


class FakeAnthropic(FakeProvider):
    expected_text = "".join(WORDS)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[bytes] | None = None  # raw payload for every answer instead of the canned one
        self.scripts: list[bytes] = []  # raw payloads, one per answer (before script/canned)
        self.retry_after: str | None = None

    @property
    def base_url(self) -> str:
        return self.url

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)

    def error_body(self, status: int | None = None) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status or self.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": f"{kind}: key {self.api_key}"},
                "request_id": "req_011"}

    def canned(self) -> bytes:
        return (message_start(25) + text_block(0, WORDS[:2]) + event("ping", {}) + text_block(1, WORDS[2:])
                + message_end())

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if not self.key_ok(request.headers.get("x-api-key")):
            return web.json_response(self.error_body(401), status=401)
        if request.headers.get("anthropic-version") != "2023-06-01":
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error",
                                                                 "message": "anthropic-version: header is required"}},
                                     status=400)
        self.bodies.append(await request.json())
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            headers = {"retry-after": self.retry_after} if self.retry_after else None
            return web.json_response(self.error_body(), status=self.status, headers=headers)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "request-id": "req_011"})
        await resp.prepare(request)
        first = message_start() + text_block(0, WORDS[:1])
        if b is Behaviour.SLOW:
            await resp.write(first + event("ping", {}))
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            await resp.write(first)
            assert request.transport is not None
            request.transport.close()
            return resp
        if b is Behaviour.MALFORMED:
            await resp.write(first + b"event: content_block_delta\ndata: {not json\n\n")
            return resp
        if b is Behaviour.STREAM_ERROR:
            await resp.write(first + event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}))
            return resp
        if self.scripts:
            payload = self.scripts.pop(0)
        elif self.script is not None:
            payload = b"".join(self.script)
        else:
            payload = self.canned()
        for i in range(0, len(payload), 5):  # cut anywhere, inside UTF-8 sequences too
            await resp.write(payload[i : i + 5])
        return resp
