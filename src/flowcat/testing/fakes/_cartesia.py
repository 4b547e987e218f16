"""A fake Cartesia text-to-speech WebSocket: ``/tts/websocket``.

Wire shapes, from Cartesia's documentation:

* https://docs.cartesia.ai/api-reference/tts/websocket (generation requests with
  ``model_id``, ``transcript``, ``voice``, ``output_format``, ``context_id``,
  ``continue``, ``add_timestamps``; ``{"context_id", "cancel": true}``; server messages
  ``chunk`` with base64 audio in ``data``, ``timestamps`` with
  ``word_timestamps.{words,start,end}``, ``flush_done``, ``done``, ``error``, each with
  ``context_id`` and ``status_code``);
* https://docs.cartesia.ai/use-the-api/tts-websocket/contexts (many contexts on one
  socket; a context ends at ``continue: false``, an empty last transcript allowed; no
  input after that);
* https://docs.cartesia.ai/use-the-api/tts-websocket/context-flushing-and-flush-i-ds
  (a ``flush: true`` input answers ``flush_done`` and bumps the ``flush_id`` that tags
  chunks);
* https://docs.cartesia.ai/use-the-api/api-conventions (a ``Cartesia-Version`` date on
  every request, on WebSockets also ``?cartesia_version=``, which wins over the header;
  WebSocket auth by ``?api_key=`` from servers or ``?access_token=`` from client apps,
  ``Authorization: Bearer`` in current docs, ``X-API-Key`` in older versions of the page,
  all accepted here) and https://docs.cartesia.ai/reference/web-socket/stream-speech/stream-speech
  (``api_key`` and ``cartesia_version`` handshake parameters);
* output formats as listed in the API reference: ``raw`` container, ``pcm_s16le``,
  ``pcm_f32le``, ``pcm_mulaw``, ``pcm_alaw``, 8000/16000/22050/24000/44100/48000 Hz.

Unconfirmed (not on a docs page): the body of a refused upgrade (the in-socket ``error``
shape is used); chunks of a cancelled context that were already in flight (this fake
sends none after it reads the cancel); the reply to input on an ended context (an
``error`` here).

The audio is :func:`~flowcat.testing.fakes.synthesize_tones` of each transcript: one
tone per character, so :func:`~flowcat.testing.fakes.decode_tones` recovers the text
from what a client played. Word timestamps are exact for that audio, counted from the
start of the context. ``ttfa`` delays the first chunk of every transcript.

Faults (:meth:`~FakeServer.set`) apply per context: a connection takes one behaviour at the
handshake (``STATUS`` refuses the upgrade), which its first context gets; while faults
remain, each later context takes the next one (``STATUS`` then answers that context with
an ``error`` message of that status). ``MALFORMED`` sends one message that does not parse
before the context's audio, which then goes on; after the first chunk ``STREAM_ERROR``
sends an ``error`` for the context, ``DISCONNECT`` drops the connection and ``SLOW`` stalls
until the client cancels the context (then ``late_chunks`` chunks still come); ``HANG``
never answers the context.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from ...audio import pcm16_to_alaw, pcm16_to_float, pcm16_to_ulaw
from ._base import Behaviour, FakeServer, Received, logger
from ._tones import synthesize_tones

__all__ = ["FakeCartesia"]

_ENCODINGS = ("pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw")
_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


@dataclass
class _Context:
    id: str
    inputs: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    offset_s: float = 0.0
    flush_id: int = 1
    closing: bool = False
    done: bool = False
    cancelled: bool = False
    behaviour: Behaviour = Behaviour.NORMAL
    stalled: bool = False  # SLOW: first chunk sent, then nothing until the cancel
    audio: list[str] = field(default_factory=list)  # base64 chunks of the current transcript


class FakeCartesia(FakeServer):
    """Fake Cartesia TTS socket (serve it, then use ``ws://127.0.0.1:PORT/tts/websocket``).

    Args:
        ttfa: Seconds from a transcript to its first audio chunk.
        chunk_ms: Audio per ``chunk`` message.
        chunk_interval: Seconds between chunks (0: as fast as the socket takes them).
        char_ms: Audio per character of transcript.
        require_version: Refuse an upgrade without a Cartesia version (header or query).
        late_chunks: Chunks a ``SLOW`` context still sends after the client cancels it
            (audio in flight), which the client must drop.
        **kw: See :class:`FakeServer`.

    Attributes:
        transcripts: Text received per context id (transcripts concatenated).
        cancelled: Context ids the client cancelled, in order.
        aborted: Set when a context still generating is cancelled, or the client leaves
            while one is.
    """

    name = "cartesia"
    #: What the conformance suite speaks, and the rate it asks for (see :attr:`expected_audio`).
    expected_text = "Hello there."
    sample_rate = 16000

    def __init__(
        self,
        *,
        ttfa: float = 0.0,
        chunk_ms: int = 40,
        chunk_interval: float = 0.0,
        char_ms: int = 20,
        require_version: bool = True,
        late_chunks: int = 2,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.ttfa = ttfa
        self.chunk_ms = chunk_ms
        self.chunk_interval = chunk_interval
        self.char_ms = char_ms
        self.require_version = require_version
        self.late_chunks = late_chunks
        self._expected_audio: bytes | None = None
        self.transcripts: dict[str, str] = {}
        self.cancelled: list[str] = []

    def audio_for(self, text: str, sample_rate: int) -> bytes:
        """The PCM16 this fake sends for ``text``."""
        return synthesize_tones(text, sample_rate, self.char_ms)

    @property
    def expected_audio(self) -> bytes:
        """The PCM16 for :attr:`expected_text` at :attr:`sample_rate` (unless set)."""
        if self._expected_audio is not None:
            return self._expected_audio
        return self.audio_for(self.expected_text, self.sample_rate)

    @expected_audio.setter
    def expected_audio(self, audio: bytes) -> None:
        self._expected_audio = audio

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/tts/websocket", self._handle)

    def _refusal(self, status: int, message: str) -> web.Response:
        return web.json_response(
            {"type": "error", "done": True, "title": "Connection refused", "message": message,
             "error_code": "unauthorized" if status == 401 else "request_error", "status_code": status},
            status=status,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        h, q = request.headers, request.query
        auth = h.get("Authorization", "")
        presented = (
            q.get("api_key") or q.get("access_token") or h.get("X-API-Key")
            or (auth[7:] if auth.startswith("Bearer ") else None)
        )
        version = q.get("cartesia_version") or h.get("Cartesia-Version")
        behaviour = self.next_behaviour()
        rec = self.record(request)
        if not self.key_ok(presented):
            rec.authorized = False
            logger.debug("cartesia fake: refused a connection without a valid key")
            return self._refusal(401, f"Invalid API key: {self.key_hint(presented)}")
        if self.require_version and not version:
            return self._refusal(400, "A Cartesia-Version header (or cartesia_version parameter) is required.")
        if behaviour is Behaviour.STATUS:
            return self._refusal(self.status, f"Injected error {self.status} (key {self.key_hint(presented)}).")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        session = _Session(self, ws, rec, request, behaviour, presented)
        try:
            await session.run()
        finally:
            await session.stop()
        return ws


class _Session:
    def __init__(
        self, fake: FakeCartesia, ws: web.WebSocketResponse, rec: Received, request: web.Request,
        behaviour: Behaviour, presented: str | None,
    ) -> None:
        self.fake = fake
        self.presented = presented
        self.ws = ws
        self.rec = rec
        self.request = request
        self.pending = behaviour  # the handshake's behaviour, for the first context
        self.contexts: dict[str, _Context] = {}
        self.faulted = False  # the connection was dropped or garbled: send nothing more
        self.auto_ids = 0

    def _take_behaviour(self) -> Behaviour:
        """The first context takes the handshake's behaviour; later ones take the next
        fault while faults remain (without counting a request otherwise)."""
        b = self.pending
        self.pending = Behaviour.NORMAL
        if b is Behaviour.NORMAL and self.fake.failures != 0:
            b = self.fake.next_behaviour()
        return b

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type is not WSMsgType.TEXT:
                if msg.type is WSMsgType.BINARY:
                    self.rec.binary_frames += 1
                continue
            try:
                m = json.loads(msg.data)
            except ValueError:
                m = None
            if not isinstance(m, dict):
                self.rec.messages.append({"_raw": msg.data})
                await self._send({"type": "error", "done": True, "title": "Invalid message",
                                  "message": "Messages must be JSON objects.", "error_code": "invalid_json",
                                  "status_code": 400})
                continue
            self.rec.messages.append(m)
            self.fake.changed()
            await self._on_message(m)
        self.rec.closed_by = self.rec.closed_by or "client"
        if self.faulted or any(not c.done for c in self.contexts.values()):
            self.fake.aborted.set()

    async def _on_message(self, m: dict[str, Any]) -> None:
        cid = m.get("context_id")
        if m.get("cancel"):
            ctx = self.contexts.get(str(cid))
            self.fake.cancelled.append(str(cid))
            if ctx is not None and not ctx.done:
                ctx.cancelled = ctx.done = True
                if ctx.task is not None:
                    ctx.task.cancel()
                self.fake.aborted.set()  # an answer in progress was called off
                if ctx.stalled:
                    # Audio already in flight still arrives after a cancel: the client must drop it.
                    for data in ctx.audio[1 : 1 + self.fake.late_chunks]:
                        await self._send(self._chunk(ctx, data))
            return
        if cid is None:
            self.auto_ids += 1
            cid = f"auto-{self.auto_ids}"
        cid = str(cid)
        problem = self._invalid(m)
        ctx = self.contexts.get(cid)
        if problem is None and ctx is not None and (ctx.done or ctx.closing):
            problem = "This context has ended; use a new context_id."
        if problem is not None:
            await self._send({"type": "error", "done": True, "title": "Invalid request", "message": problem,
                              "error_code": "invalid_request", "status_code": 400, "context_id": cid})
            return
        if ctx is None:
            ctx = self.contexts[cid] = _Context(cid, behaviour=self._take_behaviour())
            if ctx.behaviour is Behaviour.STATUS:
                ctx.done = True
                await self._send({"type": "error", "done": True, "title": "Injected error",
                                  "message": f"Injected error {self.fake.status} (key "
                                             f"{self.fake.key_hint(self.presented)}).",
                                  "error_code": "injected", "status_code": self.fake.status, "context_id": cid})
                return
            ctx.task = asyncio.ensure_future(self._generate(ctx))
        self.fake.transcripts[cid] = self.fake.transcripts.get(cid, "") + str(m.get("transcript", ""))
        if not m.get("continue", False):
            ctx.closing = True
        ctx.inputs.put_nowait(m)

    @staticmethod
    def _invalid(m: dict[str, Any]) -> str | None:
        if not isinstance(m.get("transcript"), str):
            return "transcript must be a string."
        if not m.get("model_id"):
            return "model_id is required."
        voice = m.get("voice")
        if not isinstance(voice, dict) or voice.get("mode") not in ("id", "embedding"):
            return "voice must be an object with mode 'id' or 'embedding'."
        fmt = m.get("output_format")
        if not isinstance(fmt, dict) or fmt.get("container") != "raw" or fmt.get("encoding") not in _ENCODINGS:
            return "output_format must be raw with a pcm_s16le, pcm_f32le, pcm_mulaw or pcm_alaw encoding."
        if fmt.get("sample_rate") not in _RATES:
            return "output_format.sample_rate must be one of 8000, 16000, 22050, 24000, 44100 or 48000."
        return None

    def _encode(self, pcm: bytes, encoding: str) -> bytes:
        if encoding == "pcm_mulaw":
            return pcm16_to_ulaw(pcm)
        if encoding == "pcm_alaw":
            return pcm16_to_alaw(pcm)
        if encoding == "pcm_f32le":
            return pcm16_to_float(pcm).astype("<f4").tobytes()
        return pcm

    def _chunk(self, ctx: _Context, data: str) -> dict[str, Any]:
        return {"type": "chunk", "data": data, "done": False, "status_code": 206, "step_time": 1.0,
                "context_id": ctx.id, "flush_id": ctx.flush_id}

    async def _generate(self, ctx: _Context) -> None:
        fake = self.fake
        if ctx.behaviour is Behaviour.HANG:
            return  # never answers this context
        while not ctx.done:
            m = await ctx.inputs.get()
            text = m["transcript"]
            fmt = m["output_format"]
            rate = fmt["sample_rate"]
            if text:
                await asyncio.sleep(fake.ttfa)
                pcm = synthesize_tones(text, rate, fake.char_ms)
                step = rate * fake.chunk_ms // 1000 * 2
                ctx.audio = [base64.b64encode(self._encode(pcm[i : i + step], fmt["encoding"])).decode()
                             for i in range(0, len(pcm), step)]
                if ctx.behaviour is Behaviour.MALFORMED:
                    ctx.behaviour = Behaviour.NORMAL  # one message that does not parse, then the answer
                    await self._send_raw('{"type": "chunk", "data": "AAAA", "context_id": ')
                for n, data in enumerate(ctx.audio):
                    if n and fake.chunk_interval:
                        await asyncio.sleep(fake.chunk_interval)
                    await self._send(self._chunk(ctx, data))
                    if n == 0 and m.get("add_timestamps"):
                        await self._send(self._timestamps(ctx, text))
                    if ctx.behaviour is not Behaviour.NORMAL:
                        await self._fault(ctx)
                        return
                ctx.offset_s += len(text) * fake.char_ms / 1000
            if m.get("flush"):
                await self._send({"type": "flush_done", "done": False, "flush_done": True,
                                  "flush_id": ctx.flush_id, "status_code": 206, "context_id": ctx.id})
                ctx.flush_id += 1
            if not m.get("continue", False):
                ctx.done = True
                await self._send({"type": "done", "done": True, "status_code": 206, "context_id": ctx.id})

    def _timestamps(self, ctx: _Context, text: str) -> dict[str, Any]:
        per = self.fake.char_ms / 1000
        words, starts, ends = [], [], []
        pos = 0
        for word in text.split():
            at = text.index(word, pos)
            pos = at + len(word)
            words.append(word)
            starts.append(round(ctx.offset_s + at * per, 3))
            ends.append(round(ctx.offset_s + pos * per, 3))
        return {"type": "timestamps", "done": False, "status_code": 206, "context_id": ctx.id,
                "word_timestamps": {"words": words, "start": starts, "end": ends}}

    async def _send(self, msg: dict[str, Any]) -> None:
        if self.ws.closed or self.faulted:
            return
        if self.fake.record_payloads:
            self.rec.sent.append(msg)
        await self._send_raw(json.dumps(msg))

    async def _send_raw(self, text: str) -> None:
        if self.ws.closed or self.faulted:
            return
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
            await self.ws.send_str(text)
        self.fake.changed()

    async def _fault(self, ctx: _Context) -> None:
        """After a context's first chunk: what its behaviour asks for."""
        b = ctx.behaviour
        if b is Behaviour.STREAM_ERROR:
            ctx.done = True
            await self._send({"type": "error", "done": True, "title": "Internal error",
                              "message": "Injected generation failure.", "error_code": "internal_error",
                              "status_code": 500, "context_id": ctx.id})
        elif b is Behaviour.DISCONNECT:
            self.faulted = True
            if self.request.transport is not None:
                self.request.transport.abort()
        elif b is Behaviour.SLOW:
            ctx.stalled = True
        self.fake.changed()

    async def stop(self) -> None:
        for ctx in self.contexts.values():
            if ctx.task is not None and not ctx.task.done():
                ctx.task.cancel()
        tasks = [c.task for c in self.contexts.values() if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.fake.changed()
