"""WebSocketBrain: the AgentBrain seam over a turn-level WebSocket protocol.

A brain service in any language decides what the agent says; flowcat keeps VAD,
turns, STT, TTS and barge-in. flowcat connects out to the brain's URL once per call
and speaks ``flowcat.brain`` protocol version 1 (JSON text messages; the spec is
``docs/brain-websocket-protocol.md``):

* flowcat -> brain: ``session.start``, ``user.turn``, ``dtmf``, ``silence``,
  ``tool.result`` (each with a fresh ``turn_id``, answered by a reply),
  ``bot.interrupted``, ``session.end`` (no reply), ``tool.invoke`` (run a tool the
  brain declared);
* brain -> flowcat: ``session.ready``; the reply's ``say`` / ``set_variable`` /
  ``transition`` / ``tool.call`` / ``transfer`` / ``end_call`` / ``done`` / ``error``,
  each with the ``turn_id`` it answers; ``tool.return`` for a ``tool.invoke``.

A reply ends with ``final: true`` on any of its messages, ``done``, ``transfer``,
``end_call`` or ``error``. Messages for a turn that is not the current one (a reply
the user barged in on, one that came too late) are dropped. Bad messages are logged
(rate-limited) and survived; a message over ``max_message_bytes`` makes the socket
fail (close code 1009). A lost connection is reconnected once per call (the session
is started again with ``resumed: true`` and the pending event re-sent); after that,
or when the brain does not answer in time, the caller hears ``fallback_text``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp

from .._ratelimit import RateLimitedLog
from ..errors import ServiceConnectionError, ServiceError, ServiceTimeout
from ..services import Secret, http_session, outbound_guard, redact
from ..services._ssrf import AllowPrivate
from ..services.adapters import FunctionSchema
from ._brain import (
    AgentBrain,
    BotInterrupted,
    BrainAction,
    BrainCall,
    BrainEvent,
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
)

__all__ = ["PROTOCOL_VERSION", "WebSocketBrain"]

logger = logging.getLogger("flowcat.agent.ws_brain")
_BAD = RateLimitedLog(logger)

PROTOCOL_VERSION = 1
"""The ``flowcat.brain`` protocol version this module speaks."""

DEFAULT_FALLBACK = "Sorry, I'm having trouble right now. Please call again later."
_LOST = object()  # queued for the current reply when the connection drops
_TERMINAL = ("transfer", "end_call", "done", "error")


def _tools_of(raw: Any) -> list[FunctionSchema]:
    tools = []
    for t in raw if isinstance(raw, list) else ():
        if isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"]:
            params: dict[str, Any] = t["parameters"] if isinstance(t.get("parameters"), dict) else {}
            properties, required = params.get("properties"), params.get("required")
            tools.append(FunctionSchema(t["name"], str(t.get("description") or ""),
                                        dict(properties) if isinstance(properties, dict) else {},
                                        list(required) if isinstance(required, list) else []))
    return tools


class WebSocketBrain(AgentBrain):
    """An :class:`AgentBrain` driven by a remote service over one WebSocket per call.

    Args:
        url: The brain's ``ws://`` or ``wss://`` URL.
        token: Sent as ``Authorization: Bearer <token>`` (never logged).
        headers: More headers for the upgrade request.
        connect_timeout: Bound on connecting and on the ``session.ready`` answer.
        reply_timeout: Bound on the wait for a reply's first message.
        idle_timeout: Bound on the wait between the messages of a reply.
        max_message_bytes: Largest message accepted from the brain.
        fallback_text: Spoken when the brain fails to answer or is lost.
        allow_private: The SSRF guard (:class:`~flowcat.services.OutboundGuard`): by default
            the URL must resolve to public addresses only; ``True`` allows any address, a
            list of networks allows those.

    Raises:
        ConfigError: ``url`` is not a ws(s) or http(s) URL.
        OutboundAddressError: ``url``'s host is an address the guard refuses.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        connect_timeout: float = 5.0,
        reply_timeout: float = 10.0,
        idle_timeout: float = 10.0,
        max_message_bytes: int = 1 << 20,
        fallback_text: str = DEFAULT_FALLBACK,
        allow_private: AllowPrivate = False,
    ) -> None:
        self.url = url
        self._guard = outbound_guard(allow_private)
        self._guard.check_url(url)
        self._token = Secret(token) if token else None
        self.headers = dict(headers or {})
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.idle_timeout = idle_timeout
        self.max_message_bytes = max_message_bytes
        self.fallback_text = fallback_text
        self.call = BrainCall("")
        self.tools: list[FunctionSchema] = []  # tools the brain declared (run them with invoke_tool)
        self.bad_messages = 0
        self.stale_dropped = 0
        self.reconnects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnect_left = 1
        self._connects = 0
        self._dead = False
        self._ids = itertools.count(1)  # turn ids t1, t2 ...
        self._invoke_ids = itertools.count(1)  # tool.invoke ids f1, f2 ...
        self._turn: str | None = None  # the turn whose reply is being read
        self._last_turn: str | None = None  # the last turn answered (for bot.interrupted)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._invocations: dict[str, asyncio.Future[Any]] = {}
        self._send_lock = asyncio.Lock()

    # ------------------------------------------------------------ the seam

    async def handle(self, event: BrainEvent) -> AsyncIterator[BrainAction]:
        msg: dict[str, Any]
        if isinstance(event, CallStarted):
            self.call = event.call
            msg = {"type": "session.start"}
        elif isinstance(event, UserTurn):
            msg = {"type": "user.turn", "text": event.text, "language": event.language,
                   "interrupted_bot": event.interrupted_bot}
        elif isinstance(event, Dtmf):
            msg = {"type": "dtmf", "digits": event.digits}
        elif isinstance(event, Silence):
            msg = {"type": "silence", "seconds": event.seconds, "count": event.count}
        elif isinstance(event, ToolResult):
            msg = {"type": "tool.result", "id": event.tool_call_id, "name": event.name}
            msg.update({"error": event.error} if event.error is not None else {"result": event.result})
        elif isinstance(event, BotInterrupted):
            if self._ws is not None:
                await self._send({"type": "bot.interrupted", "turn_id": self._last_turn, "spoken": event.spoken})
            return
        else:  # CallEnded
            if self._ws is not None:
                await self._send({"type": "session.end", "reason": event.reason})
            await self.close()
            return
        async with aclosing(self._exchange(msg)) as actions:
            async for action in actions:
                yield action

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        reader, self._reader = self._reader, None
        if ws is not None and not ws.closed:
            await ws.close()
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        for fut in self._invocations.values():
            if not fut.done():
                fut.set_exception(ServiceError("WebSocketBrain: the call ended"))
        self._invocations.clear()

    # ------------------------------------------------------------ a reply

    async def _exchange(self, msg: dict[str, Any]) -> AsyncGenerator[BrainAction, None]:
        turn = msg["turn_id"] = f"t{next(self._ids)}"
        self._turn = self._last_turn = turn
        self._queue = asyncio.Queue()
        said = False
        try:
            try:
                await self._deliver(msg)
            except ServiceConnectionError:  # the brain is lost for this call
                yield EndCall(self.fallback_text, "brain_unavailable")
                return
            first = True
            while True:
                try:
                    async with asyncio.timeout(self.reply_timeout if first else self.idle_timeout):
                        item = await self._queue.get()
                except TimeoutError:
                    self._bad("no reply to %s %s within the timeout", msg["type"], turn)
                    if not said:
                        yield Say(self.fallback_text)
                    return
                first = False
                if item is _LOST:
                    try:
                        await self._deliver(msg)  # reconnect (once per call) and send the event again
                    except ServiceConnectionError:  # the brain is lost for this call
                        yield EndCall(self.fallback_text, "brain_unavailable")
                        return
                    first = True
                    continue
                action, final = self._action(item)
                if action is not None:
                    said = said or isinstance(action, Say)
                    yield action
                elif item["type"] == "error" and not said:
                    yield Say(self.fallback_text)
                if final:
                    return
        finally:
            if self._turn == turn:
                self._turn = None  # what still comes for this turn is stale

    def _action(self, m: dict[str, Any]) -> tuple[BrainAction | None, bool]:
        """The action a reply message stands for, and whether it ends the reply."""
        kind = m["type"]
        final = m.get("final") is True or kind in _TERMINAL
        if kind == "say":
            return Say(m["text"], m.get("allow_interruptions", True) is not False), final
        if kind == "set_variable":
            self.call.variables[m["name"]] = m.get("value")
            return SetVariable(m["name"], m.get("value")), final
        if kind == "transition":
            return Transition(m["node"]), final
        if kind == "tool.call":
            args = m.get("arguments") or {}
            if not isinstance(args, dict):
                self._bad("tool.call %r: arguments is not an object: called without", m["name"])
                args = {}
            return CallTool(m["id"], m["name"], args), final
        if kind == "transfer":
            return Transfer(m["target"], self._opt_str(m, "say")), True
        if kind == "end_call":
            return EndCall(self._opt_str(m, "say"), self._opt_str(m, "disposition")), True
        if kind == "error":
            self._bad("the brain reports an error for %s: %.300s", m.get("turn_id"), m.get("message"))
        return None, final

    def _opt_str(self, m: dict[str, Any], name: str) -> str | None:
        value = m.get(name)
        if value is None or isinstance(value, str):
            return value
        self._bad("%s: %r is not a string: ignored", m["type"], name)
        return None

    # ------------------------------------------------------------ brain-owned tools

    async def invoke_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                          timeout: float = 10.0) -> Any:
        """Run a tool the brain declared in ``session.ready`` and return its result.

        Raises:
            ServiceError: the brain answered with an error, or is not connected.
            ServiceTimeout: no ``tool.return`` within ``timeout``.
        """
        if self._ws is None:
            raise ServiceError(f"WebSocketBrain: not connected (tool {name!r})")
        call_id = f"f{next(self._invoke_ids)}"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._invocations[call_id] = fut
        try:
            await self._send({"type": "tool.invoke", "id": call_id, "name": name, "arguments": arguments or {}})
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise ServiceTimeout(f"WebSocketBrain: tool {name!r}: no answer within {timeout:g} s") from None
        finally:
            self._invocations.pop(call_id, None)

    # ------------------------------------------------------------ the connection

    async def _deliver(self, msg: dict[str, Any]) -> None:
        """Send an event, connecting first if needed; every connection after the call's
        first one uses the call's one reconnect (:class:`~flowcat.errors.ServiceConnectionError` when it is spent)."""
        while True:
            if self._dead:
                raise ServiceConnectionError("WebSocketBrain: the brain is lost for this call", retryable=False)
            if self._ws is None:
                if self._connects:
                    self._use_reconnect()
                self._connects += 1
                try:
                    await self._connect(resumed=msg["type"] != "session.start")
                except ServiceConnectionError:  # the brain is lost for this call
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure to connect
                    self._bad("cannot connect: %s: %s", type(exc).__name__, exc)
                    await self._drop()
                    continue
                if msg["type"] == "session.start":
                    return  # the connection's session.start was the event
            if await self._send(msg):
                return
            await self._drop()

    def _use_reconnect(self) -> None:
        if self._reconnect_left <= 0:
            self._dead = True
            logger.warning("WebSocketBrain %s: call %s: the brain is lost; speaking the fallback",
                           self.url, self.call.call_id)
            raise ServiceConnectionError("WebSocketBrain: the brain is lost for this call", retryable=False)
        self._reconnect_left -= 1
        self.reconnects += 1

    async def _connect(self, *, resumed: bool) -> None:
        headers = dict(self.headers)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        session = await http_session(self._guard)
        async with asyncio.timeout(self.connect_timeout):
            ws = await session.ws_connect(self.url, headers=headers, max_msg_size=self.max_message_bytes,
                                          autoclose=True, autoping=True)
            self._ws = ws
            start: dict[str, Any] = {"type": "session.start", "protocol": PROTOCOL_VERSION, "resumed": resumed,
                                     "call": {"id": self.call.call_id, "caller": self.call.caller,
                                              "callee": self.call.callee, "transport": self.call.transport,
                                              "variables": self.call.variables}}
            if not resumed:
                start["turn_id"] = self._turn
            await ws.send_str(json.dumps(start, default=str))
            m: dict[str, Any] | None = None
            while m is None or m["type"] != "session.ready":
                raw = await ws.receive()
                if raw.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"closed before session.ready ({raw.type.name}, {ws.close_code})")
                m = self._parse(raw.data)
                if m is not None and m["type"] != "session.ready":
                    self._bad("%s before session.ready: dropped", m["type"])
        if m.get("protocol") != PROTOCOL_VERSION:
            self._dead = True
            logger.warning("WebSocketBrain %s: call %s: the brain speaks protocol %r, not %d",
                           self.url, self.call.call_id, m.get("protocol"), PROTOCOL_VERSION)
            await ws.close()
            raise ServiceConnectionError("WebSocketBrain: the brain is lost for this call", retryable=False)
        self.tools = _tools_of(m.get("tools"))
        self._reader = asyncio.get_running_loop().create_task(self._read(ws), name="ws_brain_reader")

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()

    async def _send(self, msg: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            async with self._send_lock:
                await ws.send_str(json.dumps(msg, default=str))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            logger.info("WebSocketBrain %s: call %s: send failed: %s", self.url, self.call.call_id, exc)
            return False
        return True

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                raw = await ws.receive()
                if raw.type == aiohttp.WSMsgType.TEXT:
                    m = self._parse(raw.data)
                    if m is not None:
                        self._route(m)
                    continue
                if raw.type == aiohttp.WSMsgType.BINARY:
                    self._bad("a binary message (%d bytes): dropped", len(raw.data))
                    continue
                if raw.type == aiohttp.WSMsgType.ERROR:
                    self._bad("the socket failed: %s (close code %s)", raw.data, ws.close_code)
                break
        finally:
            if self._ws is ws:
                self._ws = None
                logger.info("WebSocketBrain %s: call %s: the brain closed the socket (%s)",
                            self.url, self.call.call_id, ws.close_code)
                if self._turn is not None:
                    self._queue.put_nowait(_LOST)
            for fut in self._invocations.values():
                if not fut.done():
                    fut.set_exception(ServiceError("WebSocketBrain: the connection was lost"))

    _FIELDS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
        "say": (("text", str),), "set_variable": (("name", str),), "transition": (("node", str),),
        "tool.call": (("id", str), ("name", str)), "transfer": (("target", str),),
        "end_call": (), "done": (), "error": (), "session.ready": (), "tool.return": (("id", str),),
    }

    def _parse(self, data: str) -> dict[str, Any] | None:
        try:
            m = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json can read
            self._bad("a message that is not JSON: %.200r", data)
            return None
        if not isinstance(m, dict) or not isinstance(m.get("type"), str):
            self._bad("a message without a type: %.200r", data)
            return None
        fields = self._FIELDS.get(m["type"])
        if fields is None:
            self._bad("unknown message type %r: dropped", m["type"])
            return None
        for name, typ in fields:
            if not isinstance(m.get(name), typ):
                self._bad("%s without a valid %r: dropped", m["type"], name)
                return None
        return m

    def _route(self, m: dict[str, Any]) -> None:
        kind = m["type"]
        if kind == "tool.return":
            fut = self._invocations.get(m["id"])
            if fut is None or fut.done():
                self._bad("tool.return for unknown id %r: dropped", m["id"])
            elif m.get("error") is not None:
                fut.set_exception(ServiceError(f"WebSocketBrain: tool failed: {m['error']}"))
            else:
                fut.set_result(m.get("result"))
            return
        if kind == "session.ready":
            self._bad("a second session.ready: dropped")
            return
        turn = m.get("turn_id")
        if turn is None:
            if kind == "error":
                self._bad("the brain reports an error: %.300s", m.get("message"))
            else:
                self._bad("%s without a turn_id: dropped", kind)
            return
        if turn != self._turn:
            self.stale_dropped += 1
            logger.debug("WebSocketBrain: %s for turn %s (current %s): stale, dropped", kind, turn, self._turn)
        else:
            self._queue.put_nowait(m)

    def _bad(self, msg: str, *args: object) -> None:
        self.bad_messages += 1
        _BAD(self.bad_messages, "WebSocketBrain %s: call %s: %s", self.url, self.call.call_id,
             redact(msg % args if args else msg, self._token))
