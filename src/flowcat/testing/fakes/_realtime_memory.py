"""A fake OpenAI Realtime server (GA wire, local turns) that bills its context and remembers
only what is in it: the bench of ContextRelay (``flowcat eval context-relay``).

It keeps, per session, the instructions and the conversation items, each with its tokens:
the caller's audio at :attr:`Rates.user_audio_per_sec`, the model's audio at
:attr:`Rates.bot_audio_per_sec`, text at one token per four characters. Every response bills
the whole context as input plus its own output, at the rates of
:class:`Rates`. With a ``truncation`` of type ``retention_ratio`` in the session (OpenAI's
setting: once the items after the instructions exceed ``token_limits.post_instructions``,
the oldest are dropped until ``retention_ratio`` of the limit is used) it drops items the
same way.

The caller is scripted: :meth:`FakeRealtimeMemory.expect` names what the next committed
audio "says" (its transcript and length) and what the model answers. A question registered
in :attr:`FakeRealtimeMemory.facts` is answered from the current context only: the first
match of its pattern in the instructions and items still held, or "I don't have that".

Rates (https://developers.openai.com/api/docs/models/gpt-realtime-1.5 , per 1M tokens: text
in $4, audio in $32, text out $16, audio out $64, cached input $0.40). The audio tokens per second are
UNCONFIRMED: 10/s for the caller (1 token per 100 ms) and 20/s for the model (1 per 50 ms)
are the figures commonly quoted for OpenAI's realtime models (the page we could read did not
state them); so is the cache model (a prefix unchanged since the session's previous
response). The costs guide
(https://developers.openai.com/api/docs/guides/realtime-costs) says the whole conversation is
billed as input for each response.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["BilledResponse", "FakeRealtimeMemory", "Rates", "ScriptedTurn"]


@dataclass(frozen=True, slots=True)
class Rates:
    """Token rates and prices (USD per 1M tokens)."""

    user_audio_per_sec: float = 10.0
    bot_audio_per_sec: float = 20.0
    chars_per_text_token: float = 4.0
    text_in: float = 4.0
    audio_in: float = 32.0
    text_out: float = 16.0
    audio_out: float = 64.0
    cached_in: float = 0.4
    cache_min_tokens: int = 1024

    def text_tokens(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_text_token) if text else 0


@dataclass(slots=True)
class ScriptedTurn:
    """What the next committed audio says and what the model answers."""

    user_text: str
    user_secs: float
    bot_text: str
    bot_secs: float


@dataclass(slots=True)
class _Item:
    role: str
    text: str
    audio: bool
    tokens: int


@dataclass(slots=True)
class BilledResponse:
    """One response as billed."""

    input_text_tokens: int
    input_audio_tokens: int
    output_text_tokens: int
    output_audio_tokens: int
    cost_usd: float
    answer: str
    cached_tokens: int = 0
    cost_cached_usd: float = 0.0
    """The cost with the prompt cache: the context's prefix billed before in this session (at least
    ``cache_min_tokens``) at ``cached_in``."""

    @property
    def input_tokens(self) -> int:
        return self.input_text_tokens + self.input_audio_tokens


@dataclass
class _Session:
    instructions: str = ""
    items: list[_Item] = field(default_factory=list)
    truncation: Any = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    created_items: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    billed_items: int = 0  # items in the previous response's context (its prefix may be cached)


class FakeRealtimeMemory:
    """The server (see the module docstring). ``await start()`` returns the socket base URL."""

    def __init__(self, rates: Rates | None = None, api_key: str = "sk-fake-realtime") -> None:
        self.rates = rates or Rates()
        self.api_key = api_key
        self.facts: dict[str, str] = {}
        """Question substring (lower case) -> regex of the answer in the context."""
        self.sessions: list[_Session] = []
        self.billed: list[BilledResponse] = []
        self._next: ScriptedTurn | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def expect(self, turn: ScriptedTurn) -> None:
        """The next committed audio is ``turn``."""
        self._next = turn

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- context

    def context_text(self, s: _Session) -> str:
        return "\n".join([s.instructions, *(i.text for i in s.items)])

    def _truncate(self, s: _Session) -> None:
        t = s.truncation
        if not isinstance(t, dict) or t.get("type") != "retention_ratio":
            return
        limit = (t.get("token_limits") or {}).get("post_instructions")
        if not limit:
            return
        if sum(i.tokens for i in s.items) <= limit:
            return
        keep = float(t.get("retention_ratio", 0.8)) * limit
        while s.items and sum(i.tokens for i in s.items) > keep:
            s.items.pop(0)
            s.dropped += 1

    def _answer(self, s: _Session, question: str) -> str | None:
        q = question.lower()
        for key, pattern in self.facts.items():
            if key in q:
                found = re.search(pattern, self.context_text(s))
                return f"That is {found.group(0)}." if found else "I'm sorry, I don't have that."
        return None

    # ----------------------------------------------------------------- socket

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        s = _Session()
        self.sessions.append(s)
        await ws.send_json({"type": "session.created", "session": {"id": f"sess_{len(self.sessions)}"}})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            kind = event.get("type")
            if kind == "session.update":
                session = event.get("session") or {}
                s.updates.append(session)
                if "instructions" in session:
                    s.instructions = str(session["instructions"] or "")
                if "truncation" in session:
                    s.truncation = session["truncation"]
            elif kind == "conversation.item.create":
                item = event.get("item") or {}
                s.created_items.append(item)
                text = " ".join(str(c.get("text", "")) for c in item.get("content") or () if isinstance(c, dict))
                if text:
                    s.items.append(_Item(str(item.get("role")), text, False, self.rates.text_tokens(text)))
            elif kind == "input_audio_buffer.commit":
                await self._user_turn(ws, s)
            elif kind == "response.create":
                await self._respond(ws, s)
        return ws

    async def _user_turn(self, ws: web.WebSocketResponse, s: _Session) -> None:
        turn = self._next
        if turn is None:
            return
        tokens = round(turn.user_secs * self.rates.user_audio_per_sec)
        s.items.append(_Item("user", turn.user_text, True, tokens))
        await ws.send_json({"type": "input_audio_buffer.committed", "item_id": f"u{len(s.items)}"})
        await ws.send_json({"type": "conversation.item.input_audio_transcription.completed",
                            "item_id": f"u{len(s.items)}", "content_index": 0, "transcript": turn.user_text})

    async def _respond(self, ws: web.WebSocketResponse, s: _Session) -> None:
        turn, self._next = self._next, None
        r = self.rates
        before = s.dropped
        self._truncate(s)
        prefix = 0 if s.dropped != before else (
            r.text_tokens(s.instructions) + sum(i.tokens for i in s.items[:s.billed_items]))
        cached = prefix if s.billed_items and prefix >= r.cache_min_tokens else 0
        s.billed_items = len(s.items)
        text_in = r.text_tokens(s.instructions) + sum(i.tokens for i in s.items if not i.audio)
        audio_in = sum(i.tokens for i in s.items if i.audio)
        question = turn.user_text if turn is not None else ""
        answer = self._answer(s, question) or (turn.bot_text if turn is not None else "Hello.")
        secs = turn.bot_secs if turn is not None else 1.0
        audio_out = round(secs * r.bot_audio_per_sec)
        text_out = r.text_tokens(answer)
        cost = (text_in * r.text_in + audio_in * r.audio_in + text_out * r.text_out + audio_out * r.audio_out) / 1e6
        audio_share = audio_in / (text_in + audio_in) if text_in + audio_in else 0.0
        cached_cost = cost - cached * (audio_share * r.audio_in + (1 - audio_share) * r.text_in - r.cached_in) / 1e6
        self.billed.append(BilledResponse(text_in, audio_in, text_out, audio_out, cost, answer, cached,
                                          cached_cost))
        rid = f"resp_{len(self.billed)}"
        item = f"item_{len(self.billed)}"
        await ws.send_json({"type": "response.created", "response": {"id": rid, "status": "in_progress"}})
        await ws.send_json({"type": "response.output_audio_transcript.delta", "response_id": rid,
                            "item_id": item, "delta": answer})
        pcm = bytes(4800)  # 100 ms of silence stands for the whole answer (the bill counts ``bot_secs``)
        await ws.send_json({"type": "response.output_audio.delta", "response_id": rid, "item_id": item,
                            "output_index": 0, "content_index": 0, "delta": base64.b64encode(pcm).decode()})
        await ws.send_json({"type": "response.output_audio.done", "response_id": rid, "item_id": item})
        await ws.send_json({"type": "response.output_audio_transcript.done", "response_id": rid,
                            "item_id": item, "transcript": answer})
        s.items.append(_Item("assistant", answer, True, audio_out))
        usage = {"total_tokens": text_in + audio_in + text_out + audio_out, "input_tokens": text_in + audio_in,
                 "output_tokens": text_out + audio_out,
                 "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "cached_tokens": 0},
                 "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out}}
        await ws.send_json({"type": "response.done", "response": {"id": rid, "status": "completed",
                                                                   "usage": usage}})
