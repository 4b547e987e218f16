"""A protocol-accurate fake of Ultravox's call API with the ``serverWebSocket`` medium.

Shapes from https://docs.ultravox.ai/apps/websockets and
https://docs.ultravox.ai/apps/datamessages: ``POST /api/calls`` with ``X-API-Key`` and a
JSON body whose ``medium.serverWebSocket.inputSampleRate`` is required, answered with the
call (``callId``, ``joinUrl``); the ``joinUrl`` is a WebSocket on which audio goes both ways
as binary s16le PCM (at the body's input and output rates) and data messages as JSON text.

Each created call is a :class:`UltravoxCall` in :attr:`FakeUltravox.calls`, and in
:attr:`FakeUltravox.connections` once its socket is joined: its first event is the creation (``{"type": "create_call", "body": …}``), then the client's data
messages in order (binary audio is counted in :attr:`FakeUltravox.audio_bytes_in`). A user
turn ends when loud audio is followed by quiet audio: the fake sends ``state: thinking``, the
caller's final ``transcript`` (:attr:`user_text`), then answers: ``state: speaking``, tones
encoding :attr:`expected_text` as binary audio interleaved with agent ``transcript`` deltas,
a final agent transcript and ``state: listening`` (with :attr:`FakeUltravox.cumulative`, each
agent transcript carries the full ``text`` so far instead of a ``delta``). :attr:`tool_calls` scripts
``client_tool_invocation`` messages (``invocationId`` ``call_<n>``); a ``client_tool_result``
lets the model go on (``agentReaction`` ``speaks``, the default). With
``firstSpeakerSettings.agent`` the model greets when the socket is joined.

Behaviours (per response): ``SLOW`` sends :attr:`slow_chunks` chunks, then
``playback_clear_buffer`` and ``state: listening`` (the server's own barge-in), then a late
chunk the client must drop; ``DISCONNECT`` drops the socket after the first chunk;
``MALFORMED`` sends a non-JSON message, a typeless one and 3 bytes of "audio" among the chunks;
``STREAM_ERROR`` closes the socket with 1011 and a reason. ``STATUS`` refuses the call's
creation (per call).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ..conformance import Behaviour
from ._realtime_fake import RealtimeFake
from ._tones import synthesize_tones

__all__ = ["FakeUltravox", "UltravoxCall"]

CHUNK_MS = 100


@dataclass
class UltravoxCall:
    """One created call: its id, the creation's headers and body, the client's data messages."""

    call_id: str
    headers: dict[str, str]
    body: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    joined: bool = False

    def types(self) -> list[str]:
        return [str(e.get("type", "")) for e in self.events]

    @property
    def rates(self) -> tuple[int, int]:
        ws = self.body["medium"]["serverWebSocket"]
        return int(ws["inputSampleRate"]), int(ws.get("outputSampleRate") or ws["inputSampleRate"])


class FakeUltravox(RealtimeFake):
    """The fake (see the module docstring); conformance views as the suite documents them."""

    expected_text = "hello there how are you"
    user_text = "what is up"
    sample_rate = 24000
    session_event = "create_call"
    truncation = False  # no truncate message: the server cuts its own turn
    reports_usage = False  # Ultravox bills by the minute: no token counts on the wire

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.calls: list[UltravoxCall] = []
        self.connections: list[UltravoxCall] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.truncates: list[dict[str, Any]] = []
        self.item_ids: list[str] = []
        self.slow_chunks = 2
        self.cumulative = False  # agent transcripts as the full ``text`` so far instead of ``delta``s
        self.responses = 0
        self.audio_bytes_in = 0
        self._ordinal = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/calls", self.create_call)
        app.router.add_get("/calls/{call_id}/join", self.join)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for c in self.calls for e in c.events if e.get("type") == kind]

    # ---------------------------------------------------- conformance views

    def tool_outputs(self) -> list[tuple[str, str]]:
        return [(str(e["invocationId"]), str(e["result"])) for e in self.events("client_tool_result")]

    def continued_after_tool(self) -> bool:
        """The tool result let the model speak on (no request exists: the reaction decides)."""
        results = self.events("client_tool_result")
        return bool(results) and results[-1].get("agentReaction", "speaks") == "speaks"

    def replayed_texts(self, conn: UltravoxCall) -> list[str]:
        return [str(m.get("text")) for m in conn.body.get("initialMessages", [])]

    # ------------------------------------------------------------------ REST

    async def create_call(self, request: web.Request) -> web.StreamResponse:
        if not self.key_ok(request.headers.get("X-API-Key")):
            return web.json_response({"detail": "Invalid API key."}, status=403)
        if self.behaviour is Behaviour.STATUS and self.failures != 0:
            self.next_behaviour()
            return web.json_response(self.error_body(), status=self.status)
        try:
            body = await request.json()
            call = UltravoxCall(f"call-{len(self.calls) + 1}", dict(request.headers), body)
            call.rates  # noqa: B018 - inputSampleRate is required
        except (ValueError, KeyError, TypeError):
            return web.json_response({"medium": ["serverWebSocket.inputSampleRate is required"]}, status=400)
        call.events.append({"type": "create_call", "body": body})
        self.calls.append(call)
        join = self.url.replace("http://", "ws://") + f"/calls/{call.call_id}/join"
        return web.json_response({"callId": call.call_id, "joinUrl": join, "created": "2026-01-01T00:00:00Z"},
                                 status=201)

    # ---------------------------------------------------------------- socket

    async def join(self, request: web.Request) -> web.StreamResponse:
        call = next((c for c in self.calls if c.call_id == request.match_info["call_id"]), None)
        if call is None or call.joined:
            return web.json_response({"detail": "Not found."}, status=404)
        call.joined = True
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections.append(call)
        await ws.send_str(json.dumps({"type": "call_started", "callId": call.call_id}))
        await self._state(ws, "listening")
        if "agent" in (call.body.get("firstSpeakerSettings") or {}):
            self._spawn(self._respond(ws, call))
        speaking = False
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    self.audio_bytes_in += len(msg.data)
                    loud = _rms(msg.data) > 500
                    if loud and not speaking:
                        speaking = True
                    elif speaking and not loud:
                        speaking = False
                        await self._state(ws, "thinking")
                        await self._transcript(ws, "user", text=self.user_text, final=True)
                        self._spawn(self._respond(ws, call))
                    continue
                if msg.type is not WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                call.events.append(event)
                kind = event.get("type")
                if kind == "ping":
                    await ws.send_str(json.dumps({"type": "pong", "timestamp": event.get("timestamp")}))
                elif kind == "client_tool_result" and event.get("agentReaction", "speaks") != "listens":
                    self._spawn(self._respond(ws, call))
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted.set()
            raise
        self.aborted.set()  # the client went away
        return ws

    async def _state(self, ws: web.WebSocketResponse, state: str) -> None:
        await ws.send_str(json.dumps({"type": "state", "state": state}))

    async def _transcript(self, ws: web.WebSocketResponse, role: str, *, text: str | None = None,
                          delta: str | None = None, final: bool = False, ordinal: int | None = None) -> int:
        if ordinal is None:
            self._ordinal += 1
            ordinal = self._ordinal
        msg: dict[str, Any] = {"type": "transcript", "role": role, "medium": "voice", "final": final,
                               "ordinal": ordinal}
        msg["text" if text is not None else "delta"] = text if text is not None else delta
        await ws.send_str(json.dumps(msg))
        return ordinal

    async def _respond(self, ws: web.WebSocketResponse, call: UltravoxCall) -> None:
        self.responses += 1
        b = self.next_behaviour()
        if self.tool_calls:
            name, args = self.tool_calls.pop(0)
            await ws.send_str(json.dumps({"type": "client_tool_invocation", "toolName": name,
                                          "invocationId": f"call_{self.responses}", "parameters": args}))
            return
        _, out_rate = call.rates
        chunk = out_rate * 2 * CHUNK_MS // 1000
        audio = synthesize_tones(self.expected_text, out_rate)
        chunks = [audio[i:i + chunk] for i in range(0, len(audio), chunk)]
        words = self.expected_text.split(" ")
        self.item_ids.append(f"{call.call_id}-{self.responses}")
        await self._state(ws, "speaking")
        ordinal: int | None = None
        for i, piece in enumerate(chunks):
            if i < len(words) and self.cumulative:
                ordinal = await self._transcript(ws, "agent", text=" ".join(words[:i + 1]), ordinal=ordinal)
            elif i < len(words):
                ordinal = await self._transcript(ws, "agent", delta=words[i] if i == 0 else " " + words[i],
                                                 ordinal=ordinal)
            await ws.send_bytes(piece)
            if b is Behaviour.MALFORMED and i == 0:
                await ws.send_str("{not json")
                await ws.send_str(json.dumps({"no_type": True}))
                await ws.send_bytes(b"\x01\x02\x03")  # not whole PCM16 samples
            if b is Behaviour.DISCONNECT and i == 0:
                await ws.close()
                return
            if b is Behaviour.STREAM_ERROR and i == 0:
                await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"The server had an error")
                return
            if b is Behaviour.SLOW and i + 1 == self.slow_chunks:
                await ws.send_str(json.dumps({"type": "playback_clear_buffer"}))
                await self._state(ws, "listening")
                self.aborted.set()
                await ws.send_bytes(chunks[-1])  # late audio of the cleared turn: to be dropped
                return
            await asyncio.sleep(0)
        await self._transcript(ws, "agent", text=self.expected_text, final=True, ordinal=ordinal)
        await self._state(ws, "listening")


def _rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
