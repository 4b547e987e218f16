"""A minimal cleartext HTTP/2 server (prior knowledge, RFC 9113 §3.3) on 127.0.0.1 for fakes
of HTTP/2 provider APIs, on the ``h2`` state machine.

A fake subclasses :class:`H2Server` and implements :meth:`on_request` (the request headers;
answer with :meth:`H2Peer.respond`), :meth:`on_data` (request body bytes) and
:meth:`on_end` (the client ended its half, reset the stream, or the connection went away).
:meth:`H2Peer.send` honours the client's flow-control windows and frame size.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class H2Peer:
    """One client connection (one request stream is all the fakes need)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.stream_id = 0
        self.window = asyncio.Event()
        self.lock = asyncio.Lock()
        self.ended = False  # our answer ended, or the connection is gone
        self.state: Any = None  # the fake's per-connection state

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def respond(
        self, status: int, headers: list[tuple[str, str]] | None = None, body: bytes | None = None
    ) -> None:
        self.h2.send_headers(
            self.stream_id,
            [(":status", str(status)), *(headers or [])],
            end_stream=body is None and status != 200,
        )
        self.flush()
        if body is not None:
            await self.send(body, end=True)

    async def send(self, data: bytes, *, end: bool = False) -> None:
        """Send answer bytes within the client's windows; ``end``: END_STREAM after them."""
        async with self.lock:
            view = memoryview(data)
            while view and not self.ended:
                try:
                    window = min(
                        self.h2.local_flow_control_window(self.stream_id), self.h2.max_outbound_frame_size
                    )
                except h2.exceptions.StreamClosedError:
                    self.ended = True
                    return
                if window <= 0:
                    self.window.clear()
                    await self.window.wait()
                    continue
                n = min(window, len(view))
                self.h2.send_data(self.stream_id, bytes(view[:n]))
                view = view[n:]
                self.flush()
            if end and not self.ended:
                self.ended = True
                self.h2.end_stream(self.stream_id)
                self.flush()
            if not self.writer.is_closing():
                await self.writer.drain()

    def abort(self) -> None:
        """Drop the TCP connection at once (no GOAWAY)."""
        self.ended = True
        self.window.set()
        self.writer.transport.abort()


class H2Server:
    """Serves :class:`H2Peer` connections; subclasses implement the three hooks."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.peers: list[H2Peer] = []
        self.h2_url = ""

    async def start_h2(self, tls: ssl.SSLContext | None = None) -> str:
        """Listen on an ephemeral port (cleartext, or TLS with ``tls``); returns the base URL."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.h2_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        return self.h2_url

    async def stop_h2(self) -> None:
        for peer in self.peers:
            peer.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def on_request(self, peer: H2Peer, headers: dict[str, str]) -> None:
        raise NotImplementedError

    async def on_data(self, peer: H2Peer, data: bytes) -> None:
        raise NotImplementedError

    async def on_end(self, peer: H2Peer, why: str) -> None:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = H2Peer(reader, writer)
        self.peers.append(peer)
        peer.h2.initiate_connection()
        peer.flush()
        why = "connection closed"
        try:
            while not peer.ended or peer.stream_id == 0:
                data = await reader.read(65536)
                if not data:
                    break
                for event in peer.h2.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        peer.stream_id = event.stream_id
                        await self.on_request(peer, {str(k): str(v) for k, v in event.headers})
                    elif isinstance(event, h2.events.DataReceived):
                        peer.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        if event.data:
                            await self.on_data(peer, event.data)
                    elif isinstance(event, h2.events.StreamEnded):
                        why = "end of the request"
                        await self.on_end(peer, why)
                    elif isinstance(event, h2.events.StreamReset):
                        why = "stream reset"
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        why = "GOAWAY"
                    elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                        peer.window.set()
                peer.flush()
                if why in ("stream reset", "GOAWAY"):
                    break
        except (ConnectionError, OSError, h2.exceptions.ProtocolError, asyncio.CancelledError):
            why = "connection lost"
        finally:
            peer.ended = True
            peer.window.set()
            if why != "end of the request":
                await self.on_end(peer, why)
            writer.close()
