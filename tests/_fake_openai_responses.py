"""A protocol-accurate fake of the OpenAI Responses API streaming (SSE) for the provider tests.

Shapes from https://platform.openai.com/docs/api-reference/responses and
https://platform.openai.com/docs/api-reference/responses-streaming: every event is
``event: <type>`` plus ``data: {"type": <type>, "sequence_number", ...}``;
``response.created``, ``response.output_item.added``/``done`` (``message`` and
``function_call`` items), ``response.content_part.added``/``done``,
``response.output_text.delta``/``done``, ``response.function_call_arguments.delta``/
``done``, ``response.completed`` with ``usage``; no ``[DONE]``. Failures: ``error``
(``code``, ``message``, ``param``) and ``response.failed``.

Replies are scripted per request (``replies``: a text, or a list of ``(call_id,
name, arguments)`` tool calls); after the script, the canned text.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider

WORDS = ["Hello", " from", " the Responses", " fake — café", " ☕."]
USAGE = {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 6,
         "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}

Reply = str | list[tuple[str, str, str]]


def event(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


class FakeOpenAIResponses(FakeProvider):
    expected_text = "".join(WORDS)

    def __init__(self, *args: Any, replies: list[Reply] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.replies = list(replies or [])
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[bytes] | None = None  # raw payload instead of the reply
        self.error_event: dict[str, Any] = {"type": "error", "code": "server_error", "message": "boom", "param": None}
        self._seq = 0

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self.responses)

    # ---------------------------------------------------------------- events

    def ev(self, kind: str, **fields: Any) -> bytes:
        self._seq += 1
        return event({"type": kind, "sequence_number": self._seq, **fields})

    def _response(self, status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
        return {"id": "resp_1", "object": "response", "status": status, "model": "gpt-test", "output": output,
                "usage": usage, "error": None}

    def _text(self, words: list[str]) -> bytes:
        item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        out = self.ev("response.output_item.added", output_index=0, item=item)
        out += self.ev("response.content_part.added", item_id="msg_1", output_index=0, content_index=0,
                       part={"type": "output_text", "text": "", "annotations": []})
        for w in words:
            out += self.ev("response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta=w,
                           logprobs=[])
        text = "".join(words)
        out += self.ev("response.output_text.done", item_id="msg_1", output_index=0, content_index=0, text=text)
        done = {**item, "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}
        out += self.ev("response.output_item.done", output_index=0, item=done)
        return out

    def _calls(self, calls: list[tuple[str, str, str]]) -> bytes:
        out = b""
        for i, (call_id, name, args) in enumerate(calls):
            item = {"id": f"fc_{i}", "type": "function_call", "status": "in_progress", "call_id": call_id,
                    "name": name, "arguments": ""}
            out += self.ev("response.output_item.added", output_index=i, item=item)
            for j in range(0, len(args), 4):
                out += self.ev("response.function_call_arguments.delta", item_id=f"fc_{i}", output_index=i,
                               delta=args[j:j + 4])
            out += self.ev("response.function_call_arguments.done", item_id=f"fc_{i}", output_index=i, arguments=args)
            out += self.ev("response.output_item.done", output_index=i,
                           item={**item, "status": "completed", "arguments": args})
        return out

    def answer(self, reply: Reply) -> bytes:
        out = self.ev("response.created", response=self._response("in_progress", []))
        out += self._text(list(WORDS) if reply == "" else [reply]) if isinstance(reply, str) else self._calls(reply)
        return out + self.ev("response.completed", response=self._response("completed", [], USAGE))

    # --------------------------------------------------------------- handler

    async def responses(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response(self.error_body(), status=401)
        self.bodies.append(await request.json())
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        first = self.ev("response.created", response=self._response("in_progress", [])) + self._text([WORDS[0]])
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
            await resp.write(first + b"event: response.output_text.delta\ndata: {not json\n\n")
            return resp
        if b is Behaviour.STREAM_ERROR:
            fields = {k: v for k, v in self.error_event.items() if k != "type"}
            await resp.write(first + self.ev(self.error_event["type"], **fields))
            return resp
        if self.script is not None:
            payload = b"".join(self.script)
        else:
            payload = self.answer(self.replies.pop(0) if self.replies else "")
        for i in range(0, len(payload), 11):  # cut anywhere, inside UTF-8 sequences too
            await resp.write(payload[i : i + 11])
        return resp
