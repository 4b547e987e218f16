"""WebsocketClientTransport: a call that dials out to a WebSocket server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from ..errors import TransportError
from ..frames import CancelFrame, EndFrame, StartFrame
from ._websocket import WebsocketInputTransport, WebsocketParams, WebsocketTransport

__all__ = ["WebsocketClientTransport"]

logger = logging.getLogger("flowcat.transports.websocket")


class _ClientInput(WebsocketInputTransport):
    async def start(self, frame: StartFrame) -> None:
        transport = self._transport
        assert isinstance(transport, WebsocketClientTransport)  # noqa: S101 - invariant (type narrowing), not input validation
        try:
            await transport._connect()
        except TransportError as exc:
            logger.error("%s", exc)
            await self.push_error(str(exc), exception=exc, fatal=True)
            return
        await super().start(frame)
        transport._reader = self.create_task(transport.read_messages(), "reader")


class WebsocketClientTransport(WebsocketTransport):
    """Dial ``url`` when the pipeline starts; the call ends when the socket closes.

    The reader runs in one call-owned task. The socket (and the session, if this
    transport made it) is closed on End/Cancel.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        params: Transport parameters (serializer among them).
        session: A shared ``aiohttp.ClientSession``; one is made (and closed) if None.
        headers: Extra handshake headers.
        connect_timeout_secs: Bound on connecting.
        name: Name for logs.
    """

    def __init__(
        self,
        url: str,
        params: WebsocketParams | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
        connect_timeout_secs: float = 10.0,
        name: str | None = None,
    ) -> None:
        super().__init__(None, params, name=name)
        self.url = url
        self._session = session
        self._own_session = session is None
        self._headers = headers
        self._connect_timeout = connect_timeout_secs
        self._reader: Any = None
        self._input = _ClientInput(self, self._wparams, name=f"{self.name}::input")

    async def _connect(self) -> None:
        if self._ws is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        p = self._wparams
        try:
            async with asyncio.timeout(self._connect_timeout):
                self._ws = await self._session.ws_connect(
                    self.url,
                    compress=15 if p.compress else 0,
                    max_msg_size=p.max_msg_size,
                    heartbeat=p.heartbeat_secs,
                    headers=self._headers,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._close_session()
            raise TransportError(f"{self.name}: cannot connect to {self.url}: {exc}") from exc

    async def _close_async(self, frame: EndFrame | CancelFrame) -> None:
        try:
            await super()._close_async(frame)
        finally:
            await self._close_session()

    async def handle_disconnect(self) -> None:
        # The reader task (running this, often cancelled) would hold this transport in a
        # cycle through its exception's traceback.
        self._reader = None
        await super().handle_disconnect()
        await self._close_session()

    async def _close_session(self) -> None:
        session = self._session
        if session is not None and self._own_session and not session.closed:
            self._session = None
            await session.close()
