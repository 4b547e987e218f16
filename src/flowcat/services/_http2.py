"""One bidirectional HTTP/2 request over asyncio, on the pure-Python ``h2`` protocol stack.

aiohttp speaks HTTP/1.1 only, and a few provider APIs need HTTP/2 for a request whose body
and answer stream at the same time (Bedrock's ``InvokeModelWithBidirectionalStream``).
:class:`H2Stream` opens one connection per request (TLS with ALPN ``h2`` for ``https``, or
cleartext HTTP/2 with prior knowledge, RFC 9113 §3.3, for ``http`` — local test servers), sends
the request headers, and then carries body bytes up (:meth:`H2Stream.send`, within the
peer's flow-control windows) and answer bytes down (:meth:`H2Stream.receive`) until either
side ends its half. Received data is acknowledged at once (the reader never stalls the
peer). One reader task per connection feeds ``h2`` and wakes the sender on window updates.

``h2`` comes with the ``aws`` extra (``pip install 'flowcat[aws]'``) and is imported when a
stream opens.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, ServiceConnectionError, ServiceTimeout, require_extra

__all__ = ["H2Stream"]

logger = logging.getLogger("flowcat.services.http2")

_tls: ssl.SSLContext | None = None
_hpack_quiet = False


def _quiet_hpack() -> None:
    """hpack logs every header it encodes at DEBUG (a session token included): unless the
    application set its level, keep it at WARNING."""
    global _hpack_quiet
    if not _hpack_quiet:
        _hpack_quiet = True
        hpack_log = logging.getLogger("hpack")
        if hpack_log.level == logging.NOTSET:
            hpack_log.setLevel(logging.WARNING)


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["h2"])
        _tls = ctx
    return _tls


class H2Stream:
    """A request stream on its own HTTP/2 connection (see the module docstring).

    Not safe for concurrent :meth:`send` calls (a caller serialises its writes).

    Attributes:
        status: The answer's ``:status`` (0 until the headers came).
        headers: The answer's headers (names lowercase).
        error: Why the stream ended abnormally ("" while it has not, or ended cleanly).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Any) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = conn
        self._events: Any = None  # h2.events, set by open()
        self._h2_error: type[Exception] = Exception  # h2.exceptions.H2Error, set by open()
        self.stream_id = 1
        self.status = 0
        self.headers: dict[str, str] = {}
        self.error = ""
        self._answered = asyncio.Event()
        self._window = asyncio.Event()
        self._data: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._ended = False  # the answer ended (or the connection failed)
        self._half_closed = False  # our side ended
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        headers: list[tuple[str, str]],
        *,
        timeout: float = 10.0,
        method: str = "POST",
        ssl_context: ssl.SSLContext | None = None,
    ) -> H2Stream:
        """Connect, send the request headers and wait for the answer's headers.

        Args:
            url: ``https://host[:port]/path`` (TLS, ALPN ``h2``) or ``http://`` (cleartext).
            headers: Request headers (regular ones; the pseudo-headers are made from ``url``).
            timeout: Bound on connecting and on waiting for the answer's headers.
            method: The request method.
            ssl_context: TLS settings for ``https`` (None: the system's CAs); ALPN ``h2`` is
                set on it.

        Raises:
            ServiceConnectionError: The connection failed or closed before an answer.
            ServiceTimeout: No answer in ``timeout`` seconds.
            MissingExtraError: ``h2`` is not installed.
        """
        h2conn: Any = require_extra("h2.connection", "HTTP/2 streams (AWS Nova Sonic)", "aws")
        h2config: Any = require_extra("h2.config", "HTTP/2 streams (AWS Nova Sonic)", "aws")
        h2events: Any = require_extra("h2.events", "HTTP/2 streams (AWS Nova Sonic)", "aws")
        h2errors: Any = require_extra("h2.exceptions", "HTTP/2 streams (AWS Nova Sonic)", "aws")
        _quiet_hpack()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"http2: not an http(s) URL with a host: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        if tls and ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    parts.hostname,
                    port,
                    ssl=(ssl_context or _tls_context()) if tls else None,
                    server_hostname=parts.hostname if tls else None,
                )
        except TimeoutError:
            raise ServiceTimeout(f"http2: connecting to {parts.netloc} took over {timeout} s") from None
        except OSError as exc:  # ssl.SSLError (a certificate refused) included
            raise ServiceConnectionError(f"http2: cannot connect to {parts.netloc}: {exc}") from None
        if tls:
            alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn != "h2":
                writer.close()
                raise ServiceConnectionError(f"http2: {parts.netloc} does not speak HTTP/2 (ALPN {alpn!r})")
        conn = h2conn.H2Connection(config=h2config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self = cls(reader, writer, conn)
        self._events = h2events
        self._h2_error = h2errors.H2Error
        conn.initiate_connection()
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.send_headers(
            self.stream_id,
            [
                (":method", method),
                (":scheme", parts.scheme),
                (":authority", parts.netloc),
                (":path", path),
                *headers,
            ],
        )
        self._flush()
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name="http2_reader")
        try:
            async with asyncio.timeout(timeout):
                await self._answered.wait()
        except TimeoutError:
            await self.close()
            raise ServiceTimeout(f"http2: no answer from {parts.netloc} in {timeout} s") from None
        if not self.status:
            await self.close()
            raise ServiceConnectionError(f"http2: {parts.netloc} closed before answering ({self.error})")
        return self

    # ------------------------------------------------------------------ I/O

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        reason = "the connection closed"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for event in self._conn.receive_data(data):
                    self._on_event(event)
                self._flush()
                if self._ended and self._half_closed:
                    break
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # h2's ProtocolError: the peer broke HTTP/2
            reason = f"HTTP/2 protocol error: {exc}"
        self._finish(reason)

    def _on_event(self, event: Any) -> None:
        ev = self._events
        if isinstance(event, ev.DataReceived):
            self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.data:
                self._data.put_nowait(event.data)
        elif isinstance(event, ev.ResponseReceived):
            self.headers = {_text(k): _text(v) for k, v in event.headers}
            self.status = int(self.headers.get(":status", "0") or 0)
            self._answered.set()
        elif isinstance(event, ev.WindowUpdated | ev.RemoteSettingsChanged):
            self._window.set()
        elif isinstance(event, ev.StreamEnded):
            self._finish("")
        elif isinstance(event, ev.StreamReset):
            self._finish(f"stream reset (error code {int(event.error_code)})")
        elif isinstance(event, ev.ConnectionTerminated):
            # h2 takes nothing more after a GOAWAY, even on a stream it covers: the stream ends.
            self._finish(f"GOAWAY (error code {int(event.error_code)})")
        elif isinstance(event, ev.TrailersReceived):
            self.headers.update({_text(k): _text(v) for k, v in event.headers})

    def _finish(self, error: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.error = error
        self._data.put_nowait(None)
        self._answered.set()
        self._window.set()

    @property
    def ended(self) -> bool:
        """The answer ended (cleanly or not) or the connection is gone."""
        return self._ended

    async def send(self, data: bytes) -> None:
        """Send body bytes, waiting for flow-control credit as needed.

        Raises:
            ConnectionError: The stream or connection ended.
        """
        view = memoryview(data)
        while view:
            if self._ended or self._half_closed or self._closed:
                raise ConnectionError(f"http2: the stream ended ({self.error or 'closed'})")
            window = min(
                self._conn.local_flow_control_window(self.stream_id), self._conn.max_outbound_frame_size
            )
            if window <= 0:
                self._window.clear()
                await self._window.wait()
                continue
            n = min(window, len(view))
            try:
                self._conn.send_data(self.stream_id, bytes(view[:n]))
            except self._h2_error as exc:  # the peer closed or reset the stream meanwhile
                raise ConnectionError(f"http2: cannot send: {exc!r}") from None
            view = view[n:]
            self._flush()
        await self._writer.drain()

    async def receive(self) -> bytes | None:
        """The next bytes of the answer; None once it ended (see :attr:`error`)."""
        if self._ended and self._data.empty():
            return None
        return await self._data.get()

    async def end(self) -> None:
        """End our half of the stream (END_STREAM); the answer may go on."""
        if self._half_closed or self._closed or self._ended:
            return
        self._half_closed = True
        try:
            self._conn.end_stream(self.stream_id)
            self._flush()
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            logger.debug("http2: ending the stream failed: %r", exc)
        except Exception as exc:  # h2: the stream is already closed
            logger.debug("http2: ending the stream failed: %r", exc)

    async def close(self) -> None:
        """Close the connection (GOAWAY, then the socket); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finish(self.error or "closed by the client")
        try:
            self._conn.close_connection()
            self._flush()
        except Exception as exc:  # h2 refuses in some terminal states: the socket goes anyway
            logger.debug("http2: GOAWAY failed: %r", exc)
        self._writer.close()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self._writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass

    @property
    def closed(self) -> bool:
        return self._closed


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
