"""A reference brain service for flowcat's WebSocket brain protocol (flowcat.brain v1).

Python standard library plus aiohttp. flowcat connects to it once per call
(``WebSocketBrain("ws://127.0.0.1:8765/brain")``) and sends the call's events; this
service answers with what to say and do. The spec is docs/brain-websocket-protocol.md.

    python examples/brains/ws_brain_reference.py [--port 8765] [--token SECRET]

The conversation is a tiny booking flow:

* greeting: "Hi, this is Acme Dental. Which day would you like to come in?";
* the caller names a weekday -> ``set_variable requested_day``, ``transition confirm``,
  "Booking you for Tuesday. Shall I confirm?";
* in ``confirm``, "yes" -> ``tool.call book_slot{day}`` (a tool flowcat runs); its
  ``tool.result`` -> "You're booked ..." and ``end_call`` (``appointment_booked``);
  "no" -> back to the greeting;
* "operator" or the key 0 -> ``transfer`` to the front desk; "bye" -> ``end_call``;
* silence -> "Are you still there?", the second time ``end_call`` (``no_response``);
* a tool the brain owns: ``opening_hours`` (flowcat may ``tool.invoke`` it).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import re
from typing import Any

from aiohttp import WSMsgType, web

PROTOCOL = 1
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FRONT_DESK = "+15550100"
TOOLS = [{"name": "opening_hours", "description": "The practice's opening hours on a day.",
          "parameters": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}}]


class Conversation:
    """One call's state and replies. ``answer`` turns an event into the messages to send."""

    def __init__(self) -> None:
        self.node = "greeting"
        self.variables: dict[str, Any] = {}
        self.silences = 0

    def answer(self, m: dict[str, Any]) -> list[dict[str, Any]]:
        kind, turn = m.get("type"), m.get("turn_id")

        def say(text: str, final: bool = True) -> dict[str, Any]:
            return {"type": "say", "turn_id": turn, "text": text, "final": final}

        if kind == "session.start":
            call = m.get("call") or {}
            self.variables.update(call.get("variables") or {})
            if m.get("resumed"):
                self.node = "confirm" if "requested_day" in self.variables else "greeting"
                return [{"type": "session.ready", "protocol": PROTOCOL, "tools": TOOLS}]
            return [{"type": "session.ready", "protocol": PROTOCOL, "tools": TOOLS},
                    say("Hi, this is Acme Dental.", final=False), say("Which day would you like to come in?")]
        if kind == "user.turn":
            self.silences = 0
            return self._user(str(m.get("text") or ""), turn, say)
        if kind == "dtmf":
            if m.get("digits") == "0":
                return [{"type": "transfer", "turn_id": turn, "target": FRONT_DESK,
                         "say": "Putting you through to the front desk."}]
            return [say(f"You pressed {m.get('digits')}. Which day would you like?")]
        if kind == "silence":
            self.silences += 1
            if self.silences >= 2:
                return [{"type": "end_call", "turn_id": turn, "say": "I'll let you go. Goodbye!",
                         "disposition": "no_response"}]
            return [say("Are you still there?")]
        if kind == "tool.result":
            if m.get("error") is not None:
                return [say("Sorry, I couldn't book that. Let's try another day."),
                        {"type": "transition", "turn_id": turn, "node": "greeting", "final": True}]
            day = self.variables.get("requested_day", "that day")
            return [{"type": "set_variable", "turn_id": turn, "name": "booking", "value": m.get("result")},
                    say(f"You're booked for {day}.", final=False),
                    {"type": "end_call", "turn_id": turn, "say": "Goodbye!", "disposition": "appointment_booked"}]
        if kind == "tool.invoke":
            if m.get("name") != "opening_hours":
                return [{"type": "tool.return", "id": m.get("id"), "error": f"no tool {m.get('name')!r}"}]
            day = str((m.get("arguments") or {}).get("day") or "").lower()
            hours = None if day in ("saturday", "sunday") else {"open": "09:00", "close": "17:00"}
            return [{"type": "tool.return", "id": m.get("id"), "result": {"day": day, "hours": hours}}]
        return []  # bot.interrupted, session.end: nothing to answer

    def _user(self, text: str, turn: Any, say: Any) -> list[dict[str, Any]]:
        words = set(re.findall(r"[a-z]+", text.lower()))
        if words & {"operator", "human", "person"}:
            return [{"type": "transfer", "turn_id": turn, "target": FRONT_DESK, "say": "Transferring you now."}]
        if words & {"bye", "goodbye"}:
            return [{"type": "end_call", "turn_id": turn, "say": "Goodbye!", "disposition": "caller_hung_up"}]
        if self.node == "confirm":
            if words & {"yes", "yeah", "sure", "confirm"}:
                return [{"type": "tool.call", "turn_id": turn, "id": f"book-{turn}", "name": "book_slot",
                         "arguments": {"day": self.variables.get("requested_day")}, "final": True}]
            if words & {"no", "nope"}:
                self.node = "greeting"
                return [{"type": "transition", "turn_id": turn, "node": "greeting"}, say("Which day then?")]
        day = next((d for d in DAYS if d in words), None)
        if day is None:
            return [say("Sorry, which day would you like?")]
        self.node = "confirm"
        self.variables["requested_day"] = day.capitalize()
        return [{"type": "set_variable", "turn_id": turn, "name": "requested_day", "value": day.capitalize()},
                {"type": "transition", "turn_id": turn, "node": "confirm"},
                say(f"Booking you for {day.capitalize()}.", final=False), say("Shall I confirm?")]


class ReferenceBrain:
    """The WebSocket server: one :class:`Conversation` per connection.

    ``received`` keeps every message that arrived (all connections), ``close_codes``
    the close code of each finished connection: handy in tests.
    """

    conversation_class = Conversation

    def __init__(self, token: str | None = None, path: str = "/brain") -> None:
        self.token = token
        self.path = path
        self.received: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.connections = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def on_message(self, ws: web.WebSocketResponse, conv: Conversation, m: dict[str, Any]) -> None:
        """Answer one message (override to misbehave in tests)."""
        for out in conv.answer(m):
            await ws.send_str(json.dumps(out))

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if self.token is not None:
            presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(presented.encode(), self.token.encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        self.connections += 1
        conv = self.conversation_class()
        async for raw in ws:
            if raw.type != WSMsgType.TEXT:
                continue
            try:
                m = json.loads(raw.data)
            except ValueError:
                await ws.send_str(json.dumps({"type": "error", "message": "not JSON"}))
                continue
            if not isinstance(m, dict):
                continue
            self.received.append(m)
            await self.on_message(ws, conv, m)
            if m.get("type") == "session.end":
                await ws.close()
        self.close_codes.append(ws.close_code)
        return ws

    async def start(self, host: str = "127.0.0.1", port: int = 8765) -> str:
        """Serve (port 0 picks a free one); returns the ``ws://`` URL."""
        app = web.Application()
        app.router.add_get(self.path, self.handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"ws://{host}:{self._runner.addresses[0][1]}{self.path}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=None, help="require this Bearer token")
    args = parser.parse_args()
    brain = ReferenceBrain(args.token)
    print("reference brain on", await brain.start(args.host, args.port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main())
