"""A fake OpenAI Chat Completions server: ``POST /v1/chat/completions``, streamed as SSE.

Wire shapes, from OpenAI's API reference and the ``openai/openai-openapi`` spec it is
built from:

* https://platform.openai.com/docs/api-reference/chat/create-chat-completion (request,
  ``chat.completion`` object, ``Authorization: Bearer`` auth);
* https://platform.openai.com/docs/api-reference/chat-streaming/streaming and
  https://platform.openai.com/docs/guides/streaming-responses (the
  ``chat.completion.chunk`` stream: ``data: {...}`` events, a first delta with
  ``role``, ``content`` deltas, ``tool_calls`` deltas keyed by ``index`` whose first
  piece carries ``id``, ``type`` and ``function.name`` and later ones only
  ``function.arguments`` fragments, a last choice chunk with an empty delta and
  ``finish_reason``, with ``stream_options.include_usage`` one more chunk with
  ``choices: []`` and ``usage`` (every earlier chunk then has ``"usage": null``), and
  the ``data: [DONE]`` sentinel);
* https://platform.openai.com/docs/guides/error-codes (error statuses) and the spec's
  ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``.

Not on a docs page: an error inside a stream that already answered 200 comes as a
``data:`` event holding an ``error`` object, after which the stream ends (OpenAI's own
Python client, ``openai/_streaming.py``, raises ``APIError`` on such an event, and
compatible servers such as vLLM and OpenRouter document it). The ``x-ratelimit-*``
headers on a 429 follow OpenAI's rate-limit guide as mirrored by third parties.

Replies are scripted (:class:`Reply`, plain strings are text replies) and served in
order (cycled), or chosen by a ``responder(request_body)`` callable. Time to first
token and the gap between tokens are set per fake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ._base import Behaviour, FakeServer, Received, logger

__all__ = ["FakeOpenAI", "Reply", "ToolCall"]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class ToolCall:
    """A tool call the fake LLM makes. ``arguments`` is sent as JSON text, in fragments."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_text(self) -> str:
        """The arguments as the JSON text the stream carries."""
        a = self.arguments
        return a if isinstance(a, str) else json.dumps(a, separators=(",", ":"))


@dataclass
class Reply:
    """One scripted assistant reply: text, tool calls, or both (text first)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int | None = None


def tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens that keep their leading space (as LLM tokens do)."""
    out: list[str] = []
    cur = ""
    for ch in text:
        if ch == " " and cur.strip():
            out.append(cur)
            cur = ""
        cur += ch
    if cur:
        out.append(cur)
    return out


class FakeOpenAI(FakeServer):
    """Fake OpenAI-compatible Chat Completions (serve it, then use ``f"{fake.url}/v1"`` as base URL).

    Args:
        replies: The script (cycled). Strings are text replies.
        responder: Chooses the reply from the request body instead of the script.
        by_conversation: Pick the script entry by the number of assistant messages already
            in the request (so concurrent conversations each walk the script from the
            start, a tool call's follow-up request getting the next entry) instead of by
            request order.
        ttft: Seconds from the request to the first token (headers go out at once).
        inter_token: Seconds between tokens (and between argument fragments).
        arg_chunk: Characters per tool-call argument fragment.
        interleave_tool_calls: Send parallel tool calls' fragments interleaved by index.
        sse_comments: Send a ``: keep-alive`` comment line before the first chunk.
        split_writes: Write every event in two pieces split mid-way (inside UTF-8 too).
        model: ``model`` reported in chunks (default: the requested one).
        retry_after: Seconds sent as ``retry-after`` on a 429 (None: no such header).
        **kw: See :class:`FakeServer`.

    Attributes:
        bodies: The JSON bodies received, in order.
        completed: Streams that reached ``[DONE]``.
    """

    name = "openai"

    def __init__(
        self,
        replies: Sequence[Reply | str] = ("Hello! How can I help?",),
        *,
        responder: Callable[[dict[str, Any]], Reply | str] | None = None,
        by_conversation: bool = False,
        ttft: float = 0.0,
        inter_token: float = 0.0,
        arg_chunk: int = 8,
        interleave_tool_calls: bool = False,
        sse_comments: bool = False,
        split_writes: bool = False,
        model: str | None = None,
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.replies = [Reply(r) if isinstance(r, str) else r for r in replies]
        self.responder = responder
        self.by_conversation = by_conversation
        self.ttft = ttft
        self.inter_token = inter_token
        self.arg_chunk = max(1, arg_chunk)
        self.interleave_tool_calls = interleave_tool_calls
        self.sse_comments = sse_comments
        self.split_writes = split_writes
        self.model = model
        self.retry_after = retry_after
        self.completed = 0
        #: The text of the first scripted reply (what a one-turn test, or the suite, expects).
        self.expected_text = self.replies[0].text if self.replies else ""
        self._next = 0
        self._calls = 0

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.received]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._handle)

    # ------------------------------------------------------------ helpers

    def _pick(self, body: dict[str, Any]) -> Reply:
        if self.responder is not None:
            r = self.responder(body)
            return Reply(r) if isinstance(r, str) else r
        if not self.replies:
            return Reply("")
        if self.by_conversation:
            n = sum(1 for m in body["messages"] if isinstance(m, dict) and m.get("role") == "assistant")
        else:
            n = self._next
            self._next += 1
        return self.replies[n % len(self.replies)]

    def error_response(self, status: int, message: str, presented: str | None = None) -> web.Response:
        """An HTTP error with OpenAI's error body (and rate-limit headers on 429)."""
        etype, code = _ERROR_TYPES.get(status, ("server_error", None))
        if status == 401:
            message = f"Incorrect API key provided: {self.key_hint(presented)}."
        headers = {"x-request-id": "req_" + self.new_id().replace("-", "")}
        if status == 429:
            headers.update(
                {
                    "x-ratelimit-limit-requests": "60",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "1s",
                }
            )
            if self.retry_after is not None:
                headers["retry-after"] = f"{self.retry_after:g}"
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _chunk(self, cid: str, model: str, created: int, choices: list[Any], usage: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if usage:
            out["usage"] = None
        return out

    @staticmethod
    def _usage(body: dict[str, Any], reply: Reply, completion: int) -> dict[str, int]:
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(len(str(m.get("content") or "").split()) + 4 for m in body.get("messages") or [])
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # ------------------------------------------------------------ handler

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        presented = auth[7:] if auth.startswith("Bearer ") else None
        behaviour = self.next_behaviour()
        try:
            body = await request.json()
        except ValueError:
            body = None
        rec = self.record(request, body=body if self.record_payloads else None)
        if not self.key_ok(presented):
            rec.authorized = False
            logger.debug("openai fake: refused a request without a valid key")
            return self.error_response(401, "", presented)
        if behaviour is Behaviour.STATUS:
            return self.error_response(
                self.status, f"Injected error {self.status} (key {self.key_hint(presented)})."
            )
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return self.error_response(400, "The request needs 'model' and a list of 'messages'.")
        if behaviour is Behaviour.HANG:
            await self.hold_until_gone()
        reply = self._pick(body)
        model = self.model or str(body["model"])
        if not body.get("stream"):
            await asyncio.sleep(self.ttft)
            return web.json_response(self._whole(body, reply, model))
        return await self._stream(request, rec, body, reply, model, behaviour)

    def _whole(self, body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": tc.id or f"call_{i}", "type": "function",
                 "function": {"name": tc.name, "arguments": tc.arguments_text()}}
                for i, tc in enumerate(reply.tool_calls)
            ]
        finish = "tool_calls" if reply.tool_calls else "stop"
        return {
            "id": "chatcmpl-" + self.new_id().replace("-", "")[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": self._usage(body, reply, len(tokens(reply.text)) + len(reply.tool_calls) * 8),
        }

    def _deltas(self, reply: Reply) -> list[dict[str, Any]]:
        """The content and tool-call deltas of ``reply``, one per token or fragment."""
        out: list[dict[str, Any]] = [{"content": t} for t in tokens(reply.text)]
        per_call: list[list[dict[str, Any]]] = []
        for i, tc in enumerate(reply.tool_calls):
            self._calls += 1
            args = tc.arguments_text()
            first = {"index": i, "id": tc.id or f"call_fake{self._calls}", "type": "function",
                     "function": {"name": tc.name, "arguments": ""}}
            pieces = [{"index": i, "function": {"arguments": args[j : j + self.arg_chunk]}}
                      for j in range(0, len(args), self.arg_chunk)]
            per_call.append([first, *pieces])
        if self.interleave_tool_calls:
            longest = max((len(p) for p in per_call), default=0)
            flat = [p[k] for k in range(longest) for p in per_call if k < len(p)]
        else:
            flat = [d for p in per_call for d in p]
        out.extend({"tool_calls": [d]} for d in flat)
        return out

    async def _write(self, resp: web.StreamResponse, event: bytes) -> None:
        if self.split_writes and len(event) > 2:
            cut = len(event) // 2
            await resp.write(event[:cut])
            await resp.write(event[cut:])
        else:
            await resp.write(event)

    async def _send(self, resp: web.StreamResponse, rec_sent: list[dict[str, Any]], chunk: dict[str, Any]) -> None:
        if self.record_payloads:
            rec_sent.append(chunk)
        await self._write(resp, b"data: " + json.dumps(chunk).encode() + b"\n\n")

    async def _stream(
        self, request: web.Request, rec: Received, body: dict[str, Any], reply: Reply, model: str,
        behaviour: Behaviour,
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                     "x-request-id": "req_" + self.new_id().replace("-", "")}
        )
        await resp.prepare(request)
        sent = rec.sent
        cid = "chatcmpl-" + self.new_id().replace("-", "")[:24]
        created = int(time.time())
        deltas = self._deltas(reply)
        completion = 0
        try:
            if self.sse_comments:
                await self._write(resp, b": keep-alive\n\n")
            await asyncio.sleep(self.ttft)  # a client that goes away meanwhile aborted the answer too
            for n, delta in enumerate(deltas):
                if n == 0:
                    delta = {"role": "assistant", **({"content": None} if "content" not in delta else {}), **delta}
                elif self.inter_token:
                    await asyncio.sleep(self.inter_token)
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
                await self._send(resp, sent, self._chunk(cid, model, created, [choice], include_usage))
                completion += 1
                if n == 0 and behaviour is not Behaviour.NORMAL:
                    return await self._fault(request, resp, behaviour)
            if not deltas:
                choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None}
                await self._send(resp, sent, self._chunk(cid, model, created, [choice], include_usage))
            finish = "tool_calls" if reply.tool_calls else "stop"
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
            await self._send(resp, sent, self._chunk(cid, model, created, [choice], include_usage))
            if include_usage:
                last = self._chunk(cid, model, created, [], False)
                last["usage"] = self._usage(body, reply, completion)
                await self._send(resp, sent, last)
            await self._write(resp, b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted.set()
            self.changed()
            raise
        self.completed += 1
        self.changed()
        return resp

    async def _fault(self, request: web.Request, resp: web.StreamResponse, behaviour: Behaviour) -> web.StreamResponse:
        if behaviour is Behaviour.DISCONNECT:
            if request.transport is not None:
                request.transport.abort()
            return resp
        if behaviour is Behaviour.MALFORMED:
            await resp.write(b'data: {"id": "chatcmpl-broken", "choices": [\n\n')
        elif behaviour is Behaviour.STREAM_ERROR:
            err = {"error": {"message": "The server had an error while processing your request.",
                             "type": "server_error", "param": None, "code": None}}
            await resp.write(b"data: " + json.dumps(err).encode() + b"\n\n")
        elif behaviour is Behaviour.SLOW:
            await self.hold_until_gone()
        await resp.write_eof()
        return resp
