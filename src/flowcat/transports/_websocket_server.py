"""WebsocketServerTransport: an aiohttp route that runs one call per WebSocket.

HTTP and WebSocket share one aiohttp application and port. For each accepted
WebSocket the handler builds a :class:`WebsocketTransport`, asks the user's
factory for the call's :class:`~flowcat.PipelineTask`, runs it in one task and
reads the socket in the handler's own task: two asyncio tasks per idle call.
When the socket closes the call ends (cancel, or end with ``end_on_disconnect``)
and the handler waits for the task, bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..runtime import PipelineTask
from ..serializers import Serializer
from ._drive import drive
from ._websocket import WebsocketParams, WebsocketTransport

__all__ = ["WebsocketServerTransport"]

logger = logging.getLogger("flowcat.transports.websocket")

TaskFactory = Callable[
    [WebsocketTransport, web.Request], "PipelineTask | Awaitable[PipelineTask | None] | None"
]


class WebsocketServerTransport:
    """Serve calls over WebSockets on an aiohttp application.

    Args:
        factory: ``factory(transport, request) -> PipelineTask`` (may be async):
            builds the pipeline around ``transport.input()`` / ``transport.output()``.
            Returning None refuses the call.
        params: Parameters copied into every call's transport.
        serializer_factory: Builds a fresh serializer per call (serializers hold
            per-call state); default: ``params.serializer`` shared, else raw PCM.
        path: Route path used by :meth:`add_routes` / :meth:`start`.
        finish_timeout_secs: Bound on waiting for the call's task after the socket closed.
    """

    def __init__(
        self,
        factory: TaskFactory,
        *,
        params: WebsocketParams | None = None,
        serializer_factory: Callable[[], Serializer] | None = None,
        path: str = "/ws",
        finish_timeout_secs: float = 30.0,
    ) -> None:
        self._factory = factory
        self._params = params or WebsocketParams()
        self._serializer_factory = serializer_factory
        self.path = path
        self._finish_timeout = finish_timeout_secs
        self._runner: web.AppRunner | None = None
        self.calls: set[WebsocketTransport] = set()
        """Transports of the calls in progress."""
        self.calls_served = 0
        self.port: int | None = None
        """Port bound by :meth:`start`."""

    def add_routes(self, app: web.Application, path: str | None = None) -> None:
        """Add the WebSocket route to ``app``."""
        app.router.add_get(path or self.path, self.handle)

    def app(self) -> web.Application:
        """A new application with only the WebSocket route."""
        app = web.Application()
        self.add_routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, app: web.Application | None = None) -> int:
        """Serve ``app`` (default :meth:`app`) on ``host:port``; returns the bound port."""
        runner = self._runner = web.AppRunner(app or self.app(), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_port=port != 0)
        await site.start()
        addresses = runner.addresses  # the bound (host, port, ...) of each listening socket
        self.port = int(addresses[0][1]) if addresses else port
        return self.port

    async def stop(self) -> None:
        """Stop serving (open calls are closed by aiohttp's shutdown)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _params_for_call(self) -> WebsocketParams:
        if self._serializer_factory is None:
            return self._params
        return dataclasses.replace(self._params, serializer=self._serializer_factory())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler: one call per WebSocket."""
        p = self._params
        ws = web.WebSocketResponse(
            compress=p.compress, max_msg_size=p.max_msg_size, heartbeat=p.heartbeat_secs
        )
        await ws.prepare(request)
        transport = WebsocketTransport(ws, self._params_for_call())
        task: Any = self._factory(transport, request)
        if inspect.isawaitable(task):
            task = await task
        if task is None:
            await ws.close()
            return ws
        self.calls.add(transport)
        self.calls_served += 1
        run = asyncio.ensure_future(task.run())
        run.add_done_callback(lambda _f: _close_soon(ws))
        try:
            started = transport.input().started_future()
            await asyncio.wait((started, run), return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                await transport.read_messages()
            await self._finish(task, run)
        finally:
            self.calls.discard(transport)
            if not run.done():
                run.cancel()
        return ws

    async def _finish(self, task: PipelineTask, run: asyncio.Future[None]) -> None:
        if run.done():
            return
        _, pending = await asyncio.wait((run,), timeout=self._finish_timeout)
        if pending:
            logger.error(
                "%s: call task did not finish %g s after the socket closed; cancelling",
                task.name,
                self._finish_timeout,
            )
            await task.cancel()
            await asyncio.wait((run,), timeout=self._finish_timeout)


def _close_soon(ws: web.WebSocketResponse) -> None:
    if not ws.closed:
        try:
            drive(ws.close(), "close")
        except Exception as exc:
            logger.debug("closing websocket failed: %r", exc)
