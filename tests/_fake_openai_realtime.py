"""A protocol-accurate fake of the OpenAI Realtime WebSocket (GA event names; beta on request).

Shapes from https://developers.openai.com/api/reference/resources/realtime/client-events and
https://platform.openai.com/docs/api-reference/realtime-server-events: ``GET /v1/realtime?model=…``
upgraded to a WebSocket, ``Authorization: Bearer <key>`` (or ``api-key: <key>`` with
``auth="api-key"``, or ``Authorization: Basic <key>`` with ``auth="basic"``: Inworld, whose
path is given as ``path``), JSON text events both ways, audio as base64 PCM16 at 24 kHz.

It records every connection (headers, query, the client events in order) and answers each
user turn with scripted audio: tones encoding :attr:`expected_text` (see
``flowcat.testing.fakes._tones``) as ``response.output_audio.delta`` events, interleaved with
transcript deltas, then ``response.done`` with usage. A turn ends with server VAD when loud
audio is followed by quiet audio (``speech_started`` / ``speech_stopped`` / the user's
transcript), or with ``input_audio_buffer.commit`` + ``response.create`` when turn detection
is off; a bare ``response.create`` (after a tool result, a greeting) is answered too. The spoken
text is :meth:`answer` (``expected_text`` unless a subclass varies it); :attr:`pace_secs` paces
the audio chunks (100 ms each) as a real server streams them.
:attr:`tool_calls` scripts function calls: the next response asks for the first of them.

Behaviours (per response): ``SLOW`` sends the first :attr:`slow_chunks` audio chunks, then
``speech_started`` (a barge-in) and waits for ``response.cancel``; ``DISCONNECT`` drops the
socket after the first chunk; ``MALFORMED`` sends a non-JSON message and a typeless one among
the deltas; ``STREAM_ERROR`` sends the first chunk, an ``error`` event and a failed
``response.done``. ``STATUS`` refuses the upgrade (per connection).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from flowcat.testing.conformance import Behaviour
from flowcat.testing.fakes._realtime_fake import RealtimeFake
from flowcat.testing.fakes._tones import synthesize_tones

RATE = 24000
CHUNK = RATE * 2 // 10  # 100 ms of PCM16


@dataclass
class Connection:
    headers: dict[str, str]
    query: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)

    def types(self) -> list[str]:
        return [e.get("type", "") for e in self.events]


class FakeOpenAIRealtime(RealtimeFake):
    expected_text = "hello there how are you"
    user_text = "what is up"
    sample_rate = RATE
    session_event = "session.update"
    truncation = True

    def __init__(self, *args: Any, path: str = "/v1/realtime", auth: str = "bearer", beta: bool = False,
                 **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.path = path
        self.auth = auth
        self.beta = beta
        self.connections: list[Connection] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.truncates: list[dict[str, Any]] = []
        self.slow_chunks = 2
        self.barge_in_event = True  # SLOW: send speech_started (server VAD) or just stall (local turns)
        self.responses = 0
        self.item_ids: list[str] = []
        self.audio_bytes_in = 0
        self.pace_secs = 0.0  # between audio chunks of 100 ms (0: as fast as the socket goes)
        self._cancelled = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        app.router.add_get(self.path, self.socket)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for c in self.connections for e in c.events if e.get("type") == kind]

    # ---------------------------------------------------- conformance views

    def tool_outputs(self) -> list[tuple[str, str]]:
        return [(e["item"]["call_id"], e["item"]["output"]) for e in self.events("conversation.item.create")
                if e["item"].get("type") == "function_call_output"]

    def continued_after_tool(self) -> bool:
        """A ``response.create`` followed the tool result."""
        types = self.connections[-1].types()
        return "response.create" in types[types.index("conversation.item.create"):]

    def replayed_texts(self, conn: Connection) -> list[str]:
        return [c.get("text") for e in conn.events if e.get("type") == "conversation.item.create"
                for c in e["item"].get("content", [])]

    # --------------------------------------------------------------- socket

    def _presented(self, request: web.Request) -> str:
        if self.auth == "api-key":
            return request.headers.get("api-key", "")
        if self.auth == "basic":
            return request.headers.get("Authorization", "").removeprefix("Basic ")
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def socket(self, request: web.Request) -> web.StreamResponse:
        conn = Connection(dict(request.headers), dict(request.query))
        if not self.key_ok(self._presented(request)):
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}},
                                     status=401)
        if self.behaviour is Behaviour.STATUS and self.failures != 0:
            self.next_behaviour()
            return web.json_response(self.error_body(), status=self.status)
        self.connections.append(conn)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await self._send(ws, {"type": "session.created", "session": {"id": f"sess_{len(self.connections)}"}})
        speaking = False
        vad = True
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                kind = event.get("type")
                conn.events.append(event if kind != "input_audio_buffer.append" else {"type": kind})
                if kind == "session.update":
                    session = event["session"]
                    td = session.get("turn_detection") if self.beta else (
                        session.get("audio", {}).get("input", {}).get("turn_detection", "absent"))
                    if td != "absent":
                        vad = td is not None
                    await self._send(ws, {"type": "session.updated", "session": session})
                elif kind == "input_audio_buffer.append":
                    pcm = base64.b64decode(event["audio"])
                    self.audio_bytes_in += len(pcm)
                    loud = _rms(pcm) > 500
                    if vad and loud and not speaking:
                        speaking = True
                        await self._send(ws, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                                              "item_id": "msg_user"})
                    elif vad and speaking and not loud:
                        speaking = False
                        await self._send(ws, {"type": "input_audio_buffer.speech_stopped", "item_id": "msg_user"})
                        await self._user_turn(ws)
                        self._spawn(self._respond(ws, conn))
                elif kind == "input_audio_buffer.commit":
                    await self._send(ws, {"type": "input_audio_buffer.committed", "item_id": "msg_user"})
                    await self._user_turn(ws)
                elif kind == "response.create":
                    self._spawn(self._respond(ws, conn))
                elif kind == "conversation.item.truncate":
                    self.truncates.append(event)
                elif kind == "response.cancel":
                    self._cancelled.set()
                    self.aborted.set()
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted.set()
            raise
        self.aborted.set()  # the client went away
        return ws

    async def _send(self, ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(event))

    def _name(self, ga: str, beta: str) -> str:
        return beta if self.beta else ga

    async def _user_turn(self, ws: web.WebSocketResponse) -> None:
        await self._send(ws, {"type": "conversation.item.input_audio_transcription.completed",
                              "item_id": "msg_user", "content_index": 0, "transcript": self.user_text})

    def answer(self, conn: Connection) -> str:
        """The text the next response speaks (as tones) and transcribes; a subclass may vary it."""
        return self.expected_text

    async def _respond(self, ws: web.WebSocketResponse, conn: Connection) -> None:
        self.responses += 1
        rid = f"resp_{self.responses}"
        b = self.next_behaviour()
        await self._send(ws, {"type": "response.created", "response": {"id": rid, "status": "in_progress"}})
        if self.tool_calls:
            name, args = self.tool_calls.pop(0)
            await self._send(ws, {"type": "response.function_call_arguments.done", "response_id": rid,
                                  "item_id": f"fc_{self.responses}", "output_index": 0,
                                  "call_id": f"call_{self.responses}", "name": name, "arguments": json.dumps(args)})
            await self._send(ws, {"type": "response.done", "response": {"id": rid, "status": "completed",
                                                                         "usage": _usage()}})
            return
        item = f"item_{self.responses}"
        self.item_ids.append(item)
        text = self.answer(conn)
        audio = synthesize_tones(text, RATE)
        chunks = [audio[i:i + CHUNK] for i in range(0, len(audio), CHUNK)]
        words = text.split(" ")
        for i, chunk in enumerate(chunks):
            if i < len(words):
                await self._send(ws, {"type": self._name("response.output_audio_transcript.delta",
                                                         "response.audio_transcript.delta"),
                                      "response_id": rid, "item_id": item,
                                      "delta": words[i] if i == 0 else " " + words[i]})
            await self._send(ws, {"type": self._name("response.output_audio.delta", "response.audio.delta"),
                                  "response_id": rid, "item_id": item, "output_index": 0, "content_index": 0,
                                  "delta": base64.b64encode(chunk).decode()})
            if b is Behaviour.MALFORMED and i == 0:
                await ws.send_str("{not json")
                await self._send(ws, {"no_type": True})
            if b is Behaviour.DISCONNECT and i == 0:
                await ws.close()
                return
            if b is Behaviour.STREAM_ERROR and i == 0:
                await self._send(ws, {"type": "error", "error": {
                    "type": "server_error", "code": "server_error", "message": "The server had an error",
                    "param": None, "event_id": None}})
                await self._send(ws, {"type": "response.done", "response": {"id": rid, "status": "failed"}})
                return
            if b is Behaviour.SLOW and i + 1 == self.slow_chunks:
                self._cancelled.clear()
                if self.barge_in_event:
                    await self._send(ws, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                                          "item_id": "msg_user2"})
                await asyncio.wait_for(self._cancelled.wait(), 5.0)
                # late audio of the cancelled response (must be dropped by the client)
                await self._send(ws, {"type": "response.output_audio.delta", "response_id": rid, "item_id": item,
                                      "delta": base64.b64encode(chunks[-1]).decode()})
                await self._send(ws, {"type": "response.done", "response": {"id": rid, "status": "cancelled",
                                                                             "usage": _usage()}})
                return
            await asyncio.sleep(self.pace_secs)
        await self._send(ws, {"type": self._name("response.output_audio.done", "response.audio.done"),
                              "response_id": rid, "item_id": item})
        await self._send(ws, {"type": self._name("response.output_audio_transcript.done",
                                                 "response.audio_transcript.done"),
                              "response_id": rid, "item_id": item, "transcript": text})
        await self._send(ws, {"type": "response.done", "response": {"id": rid, "status": "completed",
                                                                     "usage": _usage()}})


def _rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def _usage() -> dict[str, Any]:
    return {"total_tokens": 150, "input_tokens": 100, "output_tokens": 50,
            "input_token_details": {"text_tokens": 40, "audio_tokens": 60, "cached_tokens": 0},
            "output_token_details": {"text_tokens": 10, "audio_tokens": 40}}
