"""One call over a media WebSocket: transport input → user pipeline → transport output.

The transport is :class:`flowcat.transports.WebsocketTransport` (the socket
reader feeds the input synchronously, output audio is paced by the process's
shared :class:`~flowcat.transports.AudioClock`, an interruption writes the
carrier's clear message at once); the serializer is the carrier's.

The WebSocket library is behind a :class:`CallSocket`: :class:`AiohttpSocket`
here, the picows one in :mod:`flowcat.server._picows_engine`. Everything else
(carrier handshake, pipeline, end of call) is the same code for both engines.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..runtime import FrameProcessor, Pipeline, PipelineParams, PipelineTask
from ._apps import is_after_output

if TYPE_CHECKING:
    from ..serializers import Serializer

__all__ = ["CURRENT_CALL", "AiohttpSocket", "CallRecord", "CallSocket", "run_call", "serve_call"]

logger = logging.getLogger("flowcat.server")

_END_GRACE = 5.0  # seconds the pipeline may take to end by itself once the socket closed


@dataclass(eq=False)
class CallRecord:
    """What the server knows of one admitted call (set in its context by the server's
    ``track``): :func:`serve_call` attaches ``observers`` and records the call's task here,
    so that a drain can end the call gracefully."""

    agent: str = "default"
    transport: str = "raw"
    call_id: str = ""
    observers: list[Any] = field(default_factory=list)
    on_error: Any = None
    """Handler of the task's ``on_pipeline_error`` (task, ErrorFrame), or None."""
    task: PipelineTask | None = None


CURRENT_CALL: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("flowcat_call", default=None)


class CallSocket:
    """One accepted media WebSocket, whatever the library (what a call needs of it)."""

    @property
    def closed(self) -> bool:
        """Whether the socket is closed (or closing)."""
        raise NotImplementedError

    async def receive(self) -> str | bytes | None:
        """The next message before the call's transport reads the socket (None: it closed)."""
        raise NotImplementedError

    async def send(self, message: str | bytes) -> None:
        """Write one message (str: text frame, bytes: binary frame)."""
        raise NotImplementedError

    async def close(self, code: int = 1000) -> None:
        """Close the socket (no-op if already closed)."""
        raise NotImplementedError

    def transport(self, params: Any) -> Any:
        """The call's :class:`~flowcat.transports.WebsocketTransport` over this socket."""
        raise NotImplementedError


class AiohttpSocket(CallSocket):
    """An aiohttp ``WebSocketResponse`` as a :class:`CallSocket`."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def receive(self) -> str | bytes | None:
        msg = await self.ws.receive()
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        data: str | bytes = msg.data
        return data

    async def send(self, message: str | bytes) -> None:
        if self.ws.closed:
            return
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_str(message)

    async def close(self, code: int = 1000) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code)

    def transport(self, params: Any) -> Any:
        from ..transports import WebsocketTransport

        return WebsocketTransport(self.ws, params)


async def serve_call(
    sock: CallSocket,
    serializer: Serializer | None,
    processors: list[FrameProcessor],
    *,
    params: PipelineParams,
    idle_timeout_secs: float | None = None,
    transport_options: dict[str, Any] | None = None,
) -> PipelineTask:
    """Run one call until the socket closes or the pipeline ends. Returns the finished task."""
    from ..transports import WebsocketParams

    wparams = WebsocketParams(serializer=serializer, **(transport_options or {}))
    transport = sock.transport(wparams)
    head = [p for p in processors if not is_after_output(p)]
    tail = [p for p in processors if is_after_output(p)]
    pipeline = Pipeline([transport.input(), *head, transport.output(), *tail])
    record = CURRENT_CALL.get()
    task = PipelineTask(
        pipeline,
        params=params,
        idle_timeout_secs=idle_timeout_secs,
        observers=record.observers if record is not None else None,
    )
    if record is not None:
        record.task = task
        if record.on_error is not None:
            task.add_event_handler("on_pipeline_error", record.on_error)
    runner = asyncio.get_running_loop().create_task(task.run(), name=task.name)
    try:
        await transport.read_messages()
        await asyncio.wait((runner,), timeout=_END_GRACE)
    finally:
        if not runner.done():
            # The task bounds its own cancel and cleanup (cancel_timeout_secs, each
            # processor's hook timeout): wait for it as long as it may take. A shorter wait
            # (it was _END_GRACE) cut the cleanup of calls on a CPU-starved loop short.
            await task.cancel("socket closed")
            bound = task.cancel_timeout_secs
            await asyncio.wait((runner,), timeout=bound)
            if not runner.done():
                logger.warning("%s: did not finish %g s after cancel; abandoning", task.name, bound)
                runner.cancel()
        await sock.close()
    return task


async def run_call(
    ws: web.WebSocketResponse,
    serializer: Serializer | None,
    processors: list[FrameProcessor],
    *,
    params: PipelineParams,
    idle_timeout_secs: float | None = None,
    transport_options: dict[str, Any] | None = None,
) -> PipelineTask:
    """Run one call over an aiohttp WebSocket (see :func:`serve_call`)."""
    return await serve_call(
        AiohttpSocket(ws),
        serializer,
        processors,
        params=params,
        idle_timeout_secs=idle_timeout_secs,
        transport_options=transport_options,
    )
