"""A minimal protocol-accurate fake of OpenAI Chat Completions streaming (SSE) for the provider tests.

Shapes from https://platform.openai.com/docs/api-reference/chat/create-chat-completion
(chunk objects, ``[DONE]``, the ``include_usage`` chunk with empty ``choices``, tool-call
pieces by ``index``). It records every request (headers and JSON body) and can be given a
script of events to send instead of the canned answer (``script``, for every answer, or
``scripts``, one raw payload per answer, in order: see :func:`reply`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider

WORDS = ["Hello", " from", " the fake", " — café", " ☕."]


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
            "usage": None, "obfuscation": "xyz"}


USAGE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": [],
         "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10,
                   "prompt_tokens_details": {"cached_tokens": 2},
                   "completion_tokens_details": {"reasoning_tokens": 0}}}


def sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return b"data: " + data.encode() + b"\n\n"


def reply(text: str = "", tool_calls: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> bytes:
    """A whole answer: text (a chunk per word), then tool calls (id, name, args; arguments in 6-char pieces)."""
    out = sse(chunk({"role": "assistant", "content": ""}))
    words = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))] if text else []
    out += b"".join(sse(chunk({"content": w})) for w in words)
    for index, (call_id, name, args) in enumerate(tool_calls):
        raw = json.dumps(args, ensure_ascii=False)
        out += sse(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        out += b"".join(sse(chunk({"tool_calls": [{"index": index, "function": {"arguments": raw[i : i + 6]}}]}))
                        for i in range(0, len(raw), 6))
    return out + sse(chunk({}, "tool_calls" if tool_calls else "stop")) + sse(USAGE) + b"data: [DONE]\n\n"


class FakeOpenAI(FakeProvider):
    expected_text = "".join(WORDS)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[bytes] | None = None  # raw payload to send instead of the canned answer
        self.scripts: list[bytes] = []  # raw payloads, one per answer (before script/canned)
        self.retry_after: str | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.completions)

    def canned(self) -> bytes:
        out = sse(chunk({"role": "assistant", "content": ""}))
        out += b"".join(sse(chunk({"content": w})) for w in WORDS)
        out += sse(chunk({}, "stop")) + sse(USAGE) + b"data: [DONE]\n\n"
        return out

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response(self.error_body(), status=401)
        self.bodies.append(await request.json())
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response(self.error_body(), status=self.status, headers=headers)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        first = sse(chunk({"content": WORDS[0]}))
        if b is Behaviour.SLOW:
            await resp.write(b": keep-alive\n\n" + first)
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            await resp.write(first)
            assert request.transport is not None
            request.transport.close()
            return resp
        if b is Behaviour.MALFORMED:
            await resp.write(first + b"data: {not json\n\n")
            return resp
        if self.scripts:
            payload = self.scripts.pop(0)
        else:
            payload = b"".join(self.script) if self.script is not None else self.canned()
        for i in range(0, len(payload), 7):  # cut anywhere, inside UTF-8 sequences too
            await resp.write(payload[i : i + 7])
        return resp
