"""The session side of :class:`~flowcat.services.RealtimeLLMService`: one WebSocket to the
provider, its lifecycle and the provider's wire seam.

:class:`RealtimeSocketService` opens the socket (``prepare_socket()``, then the connect, with
backoff, under a deadline), configures the session (``session_events()``, ``session_ready()``)
and, on every session after the first, replays the conversation (``replay_events()``); it reads
the server's messages (JSON text, or binary through ``handle_binary()``) into
``handle_event()``, counting what does not parse; it sends client events (``send_event()``,
rate-limited logging when the socket is down). **Session limits**: with ``max_session_secs``
it opens a fresh session before the provider's cap (once no response is running), and
``renew_session()`` does so on demand (a context relay's reseed); a dropped socket is
reconnected the same way, with backoff, and reported (``ErrorFrame``, with the close code and
reason) once the new session is up (or the reconnection failed).

The pipeline side (audio, turns, transcripts, tools, barge-in) is :mod:`._realtime`, which
provides the two hooks this side calls: ``_busy()`` and ``_end_response()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

import aiohttp

from .._ratelimit import RateLimitedLog
from ..errors import ServiceConnectionError, ServiceError
from ._backoff import Backoff, Deadline, retry_call
from ._http import WS_ENDED, connection_error, handshake_error, http_session
from ._llm import LLMService
from ._realtime_state import ConversationItem, ConversationLog

__all__ = ["RealtimeSocketService"]

logger = logging.getLogger("flowcat.services.realtime")
_SEND_FAIL = RateLimitedLog(logger)


class RealtimeSocketService(LLMService):
    """The socket and session lifecycle of a realtime service (see the module docstring).

    Args:
        max_session_secs: Open a fresh session after this long (None: never); set it
            under the provider's session cap.
        reconnect: Backoff for reconnecting after a dropped socket.
        connect_timeout_secs: Bound on opening the socket (all attempts).
        **kwargs: :class:`~flowcat.services.LLMService` arguments.

    Events (besides the LLM service's): ``on_session_renewed(service)`` after a fresh
    session replaced one near its cap (or a :meth:`renew_session`),
    ``on_provider_event(service, event)`` for every server event (a dict).
    """

    def __init__(
        self,
        *,
        max_session_secs: float | None = None,
        reconnect: Backoff | None = None,
        connect_timeout_secs: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_session_secs = max_session_secs
        self.reconnect_backoff = reconnect if reconnect is not None else Backoff(initial=0.2, max_attempts=5)
        self.connect_timeout_secs = connect_timeout_secs
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None
        self._cap_task: asyncio.Task[None] | None = None
        self._renew_due = False
        self._reseed: tuple[str | None, bool] | None = None  # (instructions, replay) for the next renewal
        self._closing = False
        self.conversation = ConversationLog()
        """The conversation as text (replayed into a fresh session)."""
        self.sessions = 0
        """Sessions opened (1 + reconnections and renewals)."""
        self.unsent = 0
        """Client events that could not be sent (no socket)."""
        for event in ("on_session_renewed", "on_provider_event"):
            self._register_event_handler(event)

    # ------------------------------------------------- hooks of the pipeline side

    def _busy(self) -> bool:
        """A response or its tool calls are running (a renewal waits for their end)."""
        return False

    async def _end_response(self) -> None:
        """Close the response being pushed, if any (the socket closed or dropped)."""

    # ------------------------------------------------------------ provider seam

    def socket_url(self) -> str:
        """The WebSocket URL (with its query)."""
        raise NotImplementedError

    def socket_headers(self) -> dict[str, str]:
        """The handshake headers (auth)."""
        raise NotImplementedError

    def session_events(self) -> list[dict[str, Any]]:
        """The events that configure a fresh session (sent after every connect)."""
        raise NotImplementedError

    def item_events(self, item: ConversationItem) -> list[dict[str, Any]]:
        """The events that put one conversation item into the session."""
        raise NotImplementedError

    async def handle_event(self, event: dict[str, Any]) -> None:
        """A server event (a JSON object); call the ``on_*`` methods of
        :class:`~flowcat.services.RealtimeLLMService`."""
        raise NotImplementedError

    binary_json: ClassVar[bool] = False
    """Binary WebSocket messages carry UTF-8 JSON too (else they are bad input)."""

    binary_audio: ClassVar[bool] = False
    """The caller's audio goes up as binary messages of raw PCM16 (not ``audio_message()``)."""

    async def prepare_socket(self) -> None:
        """Called before each connection attempt (a provider that must create its session over
        HTTP first, to learn the socket's URL, does it here; a ``ServiceError`` is retried
        like a failed connect when retryable)."""

    async def handle_binary(self, data: bytes) -> None:
        """A binary server message: JSON with :attr:`binary_json`, else bad input (a provider
        whose audio comes as binary messages overrides this)."""
        if self.binary_json:
            await self._on_message(data)
        else:
            self.bad_input("a binary message", data)

    def event_kind(self, event: dict[str, Any]) -> str | None:
        """The kind of a server event (None: malformed); OpenAI-style ``type`` by default."""
        kind = event.get("type")
        return kind if isinstance(kind, str) else None

    async def session_ready(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Called after the session events went on a fresh socket, before anything else is
        sent (a provider that must wait for an acknowledgement reads it here)."""

    def replay_events(self, items: list[ConversationItem]) -> list[dict[str, Any]]:
        """The events that put the conversation so far into a fresh session (a reconnection)."""
        return [event for item in items for event in self.item_events(item)]

    async def update_session(self) -> None:
        """The session config changed (tools, instructions, settings): tell the provider."""
        for event in self.session_events():
            await self.send_event(event)

    # ------------------------------------------------------------------ session

    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
        return self._ws is not None and not self._ws.closed

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        session = await http_session()
        try:
            return await session.ws_connect(
                self.socket_url(), headers=self.socket_headers(), autoping=True, heartbeat=None,
                max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise handshake_error(exc, self.name, self._api_key) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None

    async def _open(self, *, renewal: bool) -> None:
        """Open a session: connect (with backoff), configure it, replay the conversation."""

        async def attempt(_n: int) -> aiohttp.ClientWebSocketResponse:
            await self.prepare_socket()
            ws = await self._connect()
            try:
                for event in self.session_events():
                    await self._send_on(ws, event)
                await self.session_ready(ws)
            except BaseException:
                await ws.close()
                raise
            return ws

        ws = await retry_call(attempt, backoff=self.reconnect_backoff,
                              deadline=Deadline(self.connect_timeout_secs), what=self.name)
        old, self._ws = self._ws, ws
        self.sessions += 1
        if self.sessions > 1:
            for event in self.replay_events(list(self.conversation.items)):
                await self._send_on(ws, event)
        old_recv, self._recv = self._recv, self.create_task(
            self._read(ws), f"{self.name}_receive", generation_bound=False)
        if old is not None and not old.closed:
            await old.close()
        if old_recv is not None and old_recv is not asyncio.current_task():
            await self.cancel_task(old_recv)
        if self._cap_task is not None and self._cap_task is not asyncio.current_task():
            await self.cancel_task(self._cap_task)
        self._cap_task = None
        self._renew_due = False
        if self.max_session_secs:
            self._cap_task = self.create_task(self._session_cap(self.max_session_secs), f"{self.name}_cap",
                                              generation_bound=False)
        if renewal:
            await self._call_event_handler("on_session_renewed")

    async def _close(self) -> None:
        self._closing = True
        ws, self._ws = self._ws, None
        for task in (self._cap_task, self._recv):
            if task is not None and task is not asyncio.current_task():
                await self.cancel_task(task)
        self._cap_task = self._recv = None
        if ws is not None and not ws.closed:
            await ws.close()
        await self._end_response()

    async def _session_cap(self, secs: float) -> None:
        await asyncio.sleep(secs)
        self._renew_due = True
        if not self._busy():
            await self._renew()

    async def renew_session(self, *, instructions: str | None = None, replay: bool = True) -> None:
        """Open a fresh session now, or once the running response ends: the session config is
        re-sent and :attr:`conversation` replayed as text (the seam a context relay uses to
        reseed a long call with text instead of audio).

        Args:
            instructions: New instructions for the fresh session (and after it: they replace
                the ``instructions`` setting). None: unchanged.
            replay: Replay :attr:`conversation` into the fresh session; False clears it (the
                instructions carry the conversation, e.g. a relay's digest).
        """
        if instructions is not None or not replay:
            self._reseed = (instructions, replay)
        if not self._busy():
            await self._renew()
        else:
            self._renew_due = True

    async def _renew(self) -> None:
        """Replace the session by a fresh one (before the provider's cap, or reseeded)."""
        self._renew_due = False
        reseed, self._reseed = self._reseed, None
        if reseed is not None:
            instructions, replay = reseed
            if instructions is not None:
                self._settings.instructions = instructions  # type: ignore[attr-defined]
            if not replay:
                self.conversation.items.clear()
        logger.info("%s: renewing the session (%d items replayed)", self.name, len(self.conversation.items))
        try:
            await self._open(renewal=True)
        except ServiceError as exc:
            await self.push_service_error(exc, "session renewal failed")

    # ------------------------------------------------------------------ sending

    async def _send_on(self, ws: aiohttp.ClientWebSocketResponse, event: dict[str, Any] | str) -> None:
        text = event if isinstance(event, str) else json.dumps(event)
        try:
            await ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None

    async def send_event(self, event: dict[str, Any] | str) -> bool:
        """Send a client event now; False (logged, rate-limited) when the socket is down."""
        ws = self._ws
        if ws is None or ws.closed:
            self.unsent += 1
            _SEND_FAIL(self.unsent, "%s: not connected; %s not sent (#%d)", self.name,
                       event.get("type") if isinstance(event, dict) else "a message", self.unsent)
            return False
        try:
            await self._send_on(ws, event)
        except ServiceConnectionError as exc:
            self.unsent += 1
            _SEND_FAIL(self.unsent, "%s: send failed (#%d): %s", self.name, self.unsent, exc)
            return False
        return True

    # ----------------------------------------------------------------- receiving

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._on_message(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await self.handle_binary(msg.data)
            elif msg.type in WS_ENDED:
                if msg.type is aiohttp.WSMsgType.CLOSE and msg.extra:
                    reason = f": {msg.extra}"  # some providers report errors as the close reason
                break
        if self._ws is not ws or self._closing:
            return  # closed by us
        self._ws = None
        await self._end_response()
        dropped = ServiceConnectionError(
            self.redact(f"{self.name}: closed by the server (code {ws.close_code}{reason})"))
        failed: ServiceError | None = None
        try:  # reconnect first: the caller's audio after the report then reaches the new session
            await self._open(renewal=False)
        except ServiceError as exc:
            failed = exc
        await self.push_service_error(dropped)
        if failed is not None:
            await self.push_service_error(failed, "reconnect failed")

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:  # UnicodeDecodeError included
            self.bad_input("a message that is not JSON", raw)
            return
        kind = self.event_kind(event) if isinstance(event, dict) else None
        if kind is None:
            self.bad_input("a message without a type", raw)
            return
        await self._call_event_handler("on_provider_event", event)
        try:
            await self.handle_event(event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.bad_input(f"{kind}: {exc!r}", raw)

