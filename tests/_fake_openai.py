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


def usage_of(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeOpenAI(FakeProvider):
    """The Chat Completions fake, with knobs for the compatible hosts' quirks.

    Args:
        path: The route (``/openai/deployments/d/chat/completions`` for Azure's dated form).
        auth_header, auth_scheme: Where the key is expected (Azure: ``api-key``, ``""``);
            ``auth_header=None``: any request is accepted (a local server without a key).
        usage: Where usage goes: ``"chunk"`` (a chunk of its own, OpenAI's), ``"last_chunk"``
            (on the ``finish_reason`` chunk), ``"every_chunk"`` (cumulative on each chunk),
            ``"x_groq"`` (``x_groq.usage`` on the last chunk) or ``"none"``.
        tool_calls: ``(id, name, arguments)`` to answer with instead of text.
        whole_tool_calls: Send each tool call whole in one delta, without ``index``
            (``"index0"``: whole, every call at index 0).
        reject_stream_options, reject_developer, reject_tools: Answer 400 when the body has
            ``stream_options``, a ``developer`` message, or ``tools`` (hosts without them).
        comments: Interleave SSE comment lines (OpenRouter, DeepSeek).
    """

    expected_text = "".join(WORDS)

    def __init__(self, *args: Any, path: str = "/v1/chat/completions", auth_header: str | None = "Authorization",
                 auth_scheme: str = "Bearer ", usage: str = "chunk",
                 tool_calls: list[tuple[str, str, str]] | None = None, whole_tool_calls: bool | str = False,
                 reject_stream_options: bool = False, reject_developer: bool = False, reject_tools: bool = False,
                 comments: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.path, self.auth_header, self.auth_scheme, self.usage = path, auth_header, auth_scheme, usage
        self.tool_calls, self.whole_tool_calls = tool_calls, whole_tool_calls
        self.reject_stream_options, self.reject_developer = reject_stream_options, reject_developer
        self.reject_tools, self.comments = reject_tools, comments
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[tuple[str, dict[str, str]]] = []  # (path, query) per request
        self.script: list[bytes] | None = None  # raw payload to send instead of the canned answer
        self.scripts: list[bytes] = []  # raw payloads, one per answer (before script/canned)
        self.retry_after: str | None = None

    @property
    def base_url(self) -> str:
        return self.url + self.path.removesuffix("/chat/completions")

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.completions)

    def _deltas(self) -> list[dict[str, Any]]:
        if not self.tool_calls:
            return [{"content": w} for w in WORDS]
        out: list[dict[str, Any]] = []
        for i, (call_id, name, args) in enumerate(self.tool_calls):
            if self.whole_tool_calls:
                tc: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                if self.whole_tool_calls == "index0":
                    tc["index"] = 0
                out.append({"tool_calls": [tc]})
            else:
                out.append({"tool_calls": [{"index": i, "id": call_id, "type": "function",
                                            "function": {"name": name, "arguments": ""}}]})
                out += [{"tool_calls": [{"index": i, "function": {"arguments": args[j:j + 5]}}]}
                        for j in range(0, len(args), 5)]
        return out

    def canned(self) -> bytes:
        deltas = self._deltas()
        chunks = [chunk({"role": "assistant", "content": ""})] + [chunk(d) for d in deltas]
        chunks.append(chunk({}, "tool_calls" if self.tool_calls else "stop"))
        if self.usage == "every_chunk":
            for n, c in enumerate(chunks):  # cumulative: the last one holds the totals
                c["usage"] = usage_of(5, n * 5 // (len(chunks) - 1))
        elif self.usage == "last_chunk":
            chunks[-1]["usage"] = usage_of(5, 5)
        elif self.usage == "x_groq":
            chunks[-1]["x_groq"] = {"id": "req_1", "usage": usage_of(5, 5)}
        out = b"".join((b": keep-alive\n\n" if self.comments else b"") + sse(c) for c in chunks)
        if self.usage == "chunk":
            out += sse(USAGE)
        return out + b"data: [DONE]\n\n"

    def _presented(self, request: web.Request) -> str | None:
        raw = request.headers.get(self.auth_header or "", "")
        if not raw.startswith(self.auth_scheme):
            return None
        return raw[len(self.auth_scheme):]

    def _rejection(self, body: dict[str, Any]) -> str | None:
        if self.reject_stream_options and "stream_options" in body:
            return "stream_options is not supported"
        if self.reject_tools and "tools" in body:
            return "tools are not supported"
        if self.reject_developer and any(m.get("role") == "developer" for m in body.get("messages", [])):
            return "developer role is not supported"
        return None

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        self.paths.append((request.path, dict(request.query)))
        if self.auth_header is not None and not self.key_ok(self._presented(request)):
            return web.json_response(self.error_body(), status=401)
        self.bodies.append(await request.json())
        if (why := self._rejection(self.bodies[-1])) is not None:
            return web.json_response({"error": {"message": why, "type": "invalid_request_error", "param": None,
                                                "code": None}}, status=400)
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
