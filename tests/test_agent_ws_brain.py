"""WebSocketBrain against the reference brain service (examples/brains/ws_brain_reference.py, a real
aiohttp server on 127.0.0.1): every message type both ways, stale replies after a barge-in dropped,
a lost brain reconnected once then replaced by the spoken fallback, bad and oversize messages."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from flowcat.agent import (
    BotInterrupted,
    BrainAction,
    BrainCall,
    CallEnded,
    CallStarted,
    CallTool,
    Dtmf,
    EndCall,
    Say,
    SetVariable,
    Silence,
    ToolResult,
    Transfer,
    Transition,
    UserTurn,
    WebSocketBrain,
)
from flowcat.agent._brain import BrainEvent
from flowcat.errors import ServiceError
from flowcat.services import close_http_sessions

pytestmark = pytest.mark.usefixtures("no_outside_connections")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ws-brain-token-0123456789-SECRET"
FALLBACK = "Sorry, one moment."
_spec = importlib.util.spec_from_file_location("ws_brain_reference", ROOT / "examples/brains/ws_brain_reference.py")
assert _spec is not None and _spec.loader is not None
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


async def collect(brain: WebSocketBrain, event: BrainEvent) -> list[BrainAction]:
    return [a async for a in brain.handle(event)]


class Scripted(ref.ReferenceBrain):  # type: ignore[misc, name-defined]
    """The reference brain, misbehaving on cue words of the user's turn."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.crashes = 0  # how many more connections to drop on "crash"
        self.interrupted = asyncio.Event()

    async def on_message(self, ws: web.WebSocketResponse, conv: Any, m: dict[str, Any]) -> None:
        text, turn = str(m.get("text") or ""), m.get("turn_id")
        if m.get("type") == "user.turn" and text == "crash" and self.crashes > 0:
            self.crashes -= 1
            await ws.close()
            return
        if m.get("type") == "user.turn" and text == "long story":
            await ws.send_str(json.dumps({"type": "say", "turn_id": turn, "text": "Once upon a time."}))
            self.long_turn = turn
            return  # the rest comes after bot.interrupted (stale by then)
        if m.get("type") == "bot.interrupted":
            await ws.send_str(json.dumps({"type": "say", "turn_id": m["turn_id"], "text": "The end.",
                                          "final": True}))
            self.interrupted.set()
        if m.get("type") == "user.turn" and text == "garble":
            for raw in ["{not json", json.dumps(["a list"]), json.dumps({"no": "type"}),
                        json.dumps({"type": "bogus", "turn_id": turn}), json.dumps({"type": "say", "turn_id": turn}),
                        json.dumps({"type": "say", "text": "no turn id"})]:
                await ws.send_str(raw)
            await ws.send_bytes(b"\x00\x01")
            await ws.send_str(json.dumps({"type": "say", "turn_id": turn, "text": "Still here.", "final": True}))
            return
        if m.get("type") == "user.turn" and text == "huge" and self.crashes > 0:
            self.crashes -= 1
            await ws.send_str(json.dumps({"type": "say", "turn_id": turn, "text": "x" * 100_000, "final": True}))
            return
        if m.get("type") == "session.start" and (m.get("call") or {}).get("id") == "v2":
            await ws.send_str(json.dumps({"type": "session.ready", "protocol": 2}))
            return
        if m.get("type") == "user.turn" and text == "hang":
            return
        if m.get("type") == "user.turn" and text == "late":
            await ws.send_str(json.dumps({"type": "say", "turn_id": self.hung, "text": "Too late.",
                                          "final": True}))
        if m.get("type") == "user.turn" and text == "oops":
            await ws.send_str(json.dumps({"type": "error", "turn_id": turn, "message": "brain bug"}))
            return
        await super().on_message(ws, conv, m)


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    s = Scripted()
    await s.start("127.0.0.1", 0)
    try:
        yield s
    finally:
        await close_http_sessions()
        await s.close()


def make_brain(server: Scripted, **kw: Any) -> WebSocketBrain:
    kw.setdefault("reply_timeout", 2.0)
    return WebSocketBrain(server.url, allow_private=True, token=TOKEN, fallback_text=FALLBACK, max_message_bytes=64 * 1024, **kw)


async def test_booking_call_every_message_type(server: Scripted) -> None:
    call = BrainCall("call-1", caller="+15550001", callee="+15550002", transport="twilio",
                     variables={"brand": "Acme"})
    brain = make_brain(server)
    try:
        assert await collect(brain, CallStarted(call)) == [
            Say("Hi, this is Acme Dental."), Say("Which day would you like to come in?")]
        start = server.received[0]
        assert start == {"type": "session.start", "protocol": 1, "resumed": False, "turn_id": "t1",
                         "call": {"id": "call-1", "caller": "+15550001", "callee": "+15550002",
                                  "transport": "twilio", "variables": {"brand": "Acme"}}}
        assert [t.name for t in brain.tools] == ["opening_hours"] and brain.tools[0].required == ["day"]

        assert await collect(brain, Dtmf("5")) == [Say("You pressed 5. Which day would you like?")]
        assert await collect(brain, Silence(5.0, 1)) == [Say("Are you still there?")]
        assert await collect(brain, UserTurn("Tuesday please", language="en", interrupted_bot=True)) == [
            SetVariable("requested_day", "Tuesday"), Transition("confirm"),
            Say("Booking you for Tuesday."), Say("Shall I confirm?")]
        assert call.variables == {"brand": "Acme", "requested_day": "Tuesday"}
        assert server.received[-1] == {"type": "user.turn", "turn_id": "t4", "text": "Tuesday please",
                                       "language": "en", "interrupted_bot": True}
        assert await collect(brain, BotInterrupted("Booking you")) == []
        # A tool flowcat owns: the brain asks, the runner answers with ToolResult.
        assert await collect(brain, UserTurn("yes")) == [CallTool("book-t5", "book_slot", {"day": "Tuesday"})]
        # A tool the brain owns: flowcat asks.
        assert await brain.invoke_tool("opening_hours", {"day": "Tuesday"}) == {
            "day": "tuesday", "hours": {"open": "09:00", "close": "17:00"}}
        with pytest.raises(ServiceError, match="no tool 'nope'"):
            await brain.invoke_tool("nope")
        assert await collect(brain, ToolResult("book-t5", "book_slot", {"slot": "10:00"})) == [
            SetVariable("booking", {"slot": "10:00"}), Say("You're booked for Tuesday."),
            EndCall("Goodbye!", "appointment_booked")]
        assert await collect(brain, CallEnded("ended_by_agent")) == []
        types = [m["type"] for m in server.received]
        assert types == ["session.start", "dtmf", "silence", "user.turn", "bot.interrupted", "user.turn",
                         "tool.invoke", "tool.invoke", "tool.result", "session.end"]
        assert server.received[1] == {"type": "dtmf", "turn_id": "t2", "digits": "5"}
        assert server.received[2] == {"type": "silence", "turn_id": "t3", "seconds": 5.0, "count": 1}
        assert server.received[4] == {"type": "bot.interrupted", "turn_id": "t4", "spoken": "Booking you"}
        assert server.received[8] == {"type": "tool.result", "turn_id": "t6", "id": "book-t5",
                                      "name": "book_slot", "result": {"slot": "10:00"}}
        assert server.received[9] == {"type": "session.end", "reason": "ended_by_agent"}
        assert brain.bad_messages == 0 and brain.reconnects == 0
    finally:
        await brain.close()


async def test_transfer_end_and_silence_give_up(server: Scripted) -> None:
    brain = make_brain(server)
    try:
        await collect(brain, CallStarted(BrainCall("c")))
        assert await collect(brain, UserTurn("get me an operator")) == [
            Transfer(ref.FRONT_DESK, "Transferring you now.")]
        assert await collect(brain, Dtmf("0")) == [Transfer(ref.FRONT_DESK, "Putting you through to the front desk.")]
        await collect(brain, Silence(5.0, 1))
        assert await collect(brain, Silence(10.0, 2)) == [EndCall("I'll let you go. Goodbye!", "no_response")]
        assert await collect(brain, UserTurn("bye")) == [EndCall("Goodbye!", "caller_hung_up")]
    finally:
        await brain.close()


async def test_stale_say_after_barge_in_is_dropped(server: Scripted) -> None:
    brain = make_brain(server)
    try:
        await collect(brain, CallStarted(BrainCall("c")))
        reply = brain.handle(UserTurn("long story"))
        assert await reply.__anext__() == Say("Once upon a time.")
        await reply.aclose()  # the user barged in
        assert await collect(brain, BotInterrupted("Once upon")) == []
        await asyncio.wait_for(server.interrupted.wait(), 5)
        # The brain's "The end." for the interrupted turn arrives now: never spoken.
        assert await collect(brain, UserTurn("Friday")) == [
            SetVariable("requested_day", "Friday"), Transition("confirm"),
            Say("Booking you for Friday."), Say("Shall I confirm?")]
        assert brain.stale_dropped == 1 and brain.bad_messages == 0
    finally:
        await brain.close()


async def test_timeout_speaks_fallback_and_the_late_reply_is_stale(server: Scripted) -> None:
    brain = make_brain(server, reply_timeout=0.3)
    try:
        await collect(brain, CallStarted(BrainCall("c")))
        assert await collect(brain, UserTurn("hang")) == [Say(FALLBACK)]
        server.hung = "t2"
        assert await collect(brain, UserTurn("late")) == [Say("Sorry, which day would you like?")]
        assert brain.stale_dropped == 1
        # A brain error for the turn: the fallback, and the call goes on.
        assert await collect(brain, UserTurn("oops")) == [Say(FALLBACK)]
        assert await collect(brain, UserTurn("Monday")) != []
    finally:
        await brain.close()


async def test_disconnect_reconnects_once_then_fallback(
    server: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "flowcat.agent.ws_brain")
    call = BrainCall("call-r", variables={"brand": "Acme"})
    brain = make_brain(server)
    try:
        await collect(brain, CallStarted(call))
        await collect(brain, UserTurn("Wednesday"))
        server.crashes = 1
        # The brain drops the socket mid-turn: flowcat reconnects, resumes, re-sends the turn.
        assert await collect(brain, UserTurn("crash")) == [Say("Sorry, which day would you like?")]
        assert brain.reconnects == 1 and server.connections == 2
        resumed = [m for m in server.received if m["type"] == "session.start"][1]
        assert resumed["resumed"] is True and "turn_id" not in resumed
        assert resumed["call"]["variables"] == {"brand": "Acme", "requested_day": "Wednesday"}
        crash_turns = [m["turn_id"] for m in server.received if m.get("text") == "crash"]
        assert crash_turns == ["t3", "t3"]  # the same turn, sent again
        # Dropped again: the one reconnect is spent, so the caller hears the fallback and the call ends.
        server.crashes = 1
        assert await collect(brain, UserTurn("crash")) == [EndCall(FALLBACK, "brain_unavailable")]
        assert await collect(brain, UserTurn("Monday")) == [EndCall(FALLBACK, "brain_unavailable")]
        assert server.connections == 2
        assert "call-r" in caplog.text and TOKEN not in caplog.text
    finally:
        await brain.close()


async def test_malformed_messages_are_survived(server: Scripted, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "flowcat.agent.ws_brain")
    brain = make_brain(server)
    try:
        await collect(brain, CallStarted(BrainCall("call-m")))
        assert await collect(brain, UserTurn("garble")) == [Say("Still here.")]
        assert brain.bad_messages == 7
        assert "not JSON" in caplog.text and "unknown message type 'bogus'" in caplog.text
        assert "call-m" in caplog.text
        assert await collect(brain, UserTurn("Monday")) != []  # the connection is still good
        assert brain.reconnects == 0
    finally:
        await brain.close()


async def test_oversize_message_refused(server: Scripted) -> None:
    brain = make_brain(server)
    try:
        await collect(brain, CallStarted(BrainCall("c")))
        server.crashes = 1
        # 100 kB over the 64 KiB limit: the socket fails with 1009 and nothing of it is spoken;
        # the reconnect re-sends the turn and the (normal) answer comes on the new connection.
        assert await collect(brain, UserTurn("huge")) == [Say("Sorry, which day would you like?")]
        await asyncio.sleep(0)
        assert server.close_codes[0] == 1009
        assert brain.reconnects == 1
    finally:
        await brain.close()


async def test_refused_connection_speaks_fallback(server: Scripted) -> None:
    brain = WebSocketBrain(server.url, allow_private=True, token="wrong-token", fallback_text=FALLBACK)
    try:
        assert await collect(brain, CallStarted(BrainCall("c"))) == [EndCall(FALLBACK, "brain_unavailable")]
        assert server.connections == 0 and brain.reconnects == 1
    finally:
        await brain.close()


async def test_other_protocol_version_is_refused(server: Scripted) -> None:
    brain = make_brain(server)
    try:
        assert await collect(brain, CallStarted(BrainCall("v2"))) == [EndCall(FALLBACK, "brain_unavailable")]
        assert server.connections == 1  # a version mismatch is not retried
    finally:
        await brain.close()
