"""One call over an aiohttp WebSocket: transport input → user pipeline → transport output.

The transport is :class:`flowcat.transports.WebsocketTransport` (the socket
reader feeds the input synchronously, output audio is paced by the process's
shared :class:`~flowcat.transports.AudioClock`, an interruption writes the
carrier's clear message at once); the serializer is the carrier's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..runtime import FrameProcessor, Pipeline, PipelineParams, PipelineTask

__all__ = ["run_call"]

logger = logging.getLogger("flowcat.server")

_END_GRACE = 5.0  # seconds the pipeline may take to finish once the socket closed


async def run_call(
    ws: web.WebSocketResponse,
    serializer: Any,
    processors: list[FrameProcessor],
    *,
    params: PipelineParams,
    idle_timeout_secs: float | None = None,
    transport_options: dict[str, Any] | None = None,
) -> PipelineTask:
    """Run one call until the socket closes or the pipeline ends. Returns the finished task."""
    from ..transports import WebsocketParams, WebsocketTransport

    wparams = WebsocketParams(serializer=serializer, **(transport_options or {}))
    transport = WebsocketTransport(ws, wparams)
    pipeline = Pipeline([transport.input(), *processors, transport.output()])
    task = PipelineTask(pipeline, params=params, idle_timeout_secs=idle_timeout_secs)
    runner = asyncio.get_running_loop().create_task(task.run(), name=task.name)
    try:
        await transport.read_messages()
        await asyncio.wait((runner,), timeout=_END_GRACE)
    finally:
        if not runner.done():
            await task.cancel("socket closed")
            await asyncio.wait((runner,), timeout=_END_GRACE)
            if not runner.done():
                logger.warning("%s: did not finish after cancel; abandoning", task.name)
                runner.cancel()
        if not ws.closed:
            await ws.close()
    return task
