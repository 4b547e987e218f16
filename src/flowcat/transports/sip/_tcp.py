"""SIP over TCP and TLS (RFC 3261 §18): stream framing, connections, connection reuse.

* :class:`StreamFramer` cuts a byte stream into messages: leading CRLFs are skipped, a
  double CRLF before a message is a keep-alive ping (RFC 5626 §3.5.1, answered with one
  CRLF), the header block ends at the first empty line and the body is exactly
  ``Content-Length`` bytes (mandatory on a stream, RFC 3261 §18.3). A missing or bad
  ``Content-Length``, a header block over :data:`MAX_HEADER_BYTES` or a message over
  ``max_size`` is a framing error: the stream cannot be resynchronised, so the
  connection is closed (logged, rate-limited).
* :class:`SIPConnection` is one TCP or TLS connection, accepted or opened by this side.
  Data written before an opened connection is up is queued; a connection idle for
  ``idle_timeout`` seconds is closed by a sweep (one timer per endpoint, not per
  message).
* :class:`StreamTransports` holds the listeners and the connections of one
  :class:`~flowcat.transports.sip._endpoint.SIPEndpoint`. A connection is found by its
  peer address, and also by the ``sent-by`` address of the top Via of the requests that
  came on it (when its host is the connection's own address): in-dialog requests to a
  peer that called over TCP reuse its connection instead of dialling its listening
  port (the connection reuse of RFC 5923, without requiring its ``alias`` parameter).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any

from ..._ratelimit import RateLimitedLog
from ...errors import SIPParseError

__all__ = ["MAX_HEADER_BYTES", "SIPConnection", "StreamFramer", "StreamTransports"]

logger = logging.getLogger("flowcat.transports.sip")
_BAD = RateLimitedLog(logger)

MAX_HEADER_BYTES = 16384
"""Largest header block accepted on a stream before the connection is closed."""
PING = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)$", re.IGNORECASE | re.MULTILINE)

Addr = tuple[str, int]


class StreamFramer:
    """Splits a SIP byte stream into messages (see the module docstring)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; returns the complete messages (``PING`` for a keep-alive).
        Raises :class:`~flowcat.errors.SIPParseError` on a framing error."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            if buf[:2] == b"\r\n":
                if buf[:4] == PING:
                    out.append(PING)
                    del buf[:4]
                elif len(buf) < 4 and PING.startswith(bytes(buf)):
                    break  # maybe the start of a ping
                else:
                    del buf[:2]  # a pong, or a CRLF between messages
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise SIPParseError(f"header block over {MAX_HEADER_BYTES} bytes", bytes(buf[:64]))
                break
            head = bytes(buf[:end])
            match = _CONTENT_LENGTH.search(head, head.find(b"\n") + 1)
            if match is None:
                raise SIPParseError("no Content-Length on a stream (RFC 3261 18.3)", head[:64])
            value = match.group(1).strip()
            if not value.isdigit() or len(value) > 7:
                raise SIPParseError(f"bad Content-Length {value[:20]!r}", head[:64])
            total = end + 4 + int(value)
            if total > self.max_size:
                raise SIPParseError(
                    f"message of {total} bytes exceeds the limit of {self.max_size}", head[:64]
                )
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out


class SIPConnection(asyncio.Protocol):
    """One TCP or TLS connection carrying SIP (see the module docstring)."""

    def __init__(self, owner: StreamTransports, proto: str, peer: Addr | None = None) -> None:
        self.owner = owner
        self.proto = proto
        self.peer: Addr | None = peer
        self.aliases: set[Addr] = set()
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(owner.max_size)
        self.pending: list[bytes] = []
        self.closed = False
        self.last_active = asyncio.get_running_loop().time()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.peer is None:
            host, port = transport.get_extra_info("peername")[:2]
            self.peer = (str(host), int(port))
            owner = self.owner
            if len(owner.connections) >= owner.max_connections:
                owner.refused += 1
                _BAD(owner.refused, "sip: refused a %s connection from %s: %d open", self.proto, self.peer,
                     len(owner.connections))  # fmt: skip
                self.closed = True
                self.transport = None
                transport.abort()
                return
        self.owner._add(self)
        pending, self.pending = self.pending, []
        for data in pending:
            transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        try:
            messages = self.framer.feed(data)
        except SIPParseError as exc:
            self.owner.bad_streams += 1
            n = self.owner.bad_streams
            _BAD(n, "sip: closing %s connection from %s: %s", self.proto, self.peer, exc)
            self.close()
            return
        for msg in messages:
            if msg is PING:
                self.write(b"\r\n")
            else:
                self.owner.deliver(msg, self)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return  # refused in connection_made
        self.closed = True
        self.transport = None
        self.owner._forget(self)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = asyncio.get_running_loop().time()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        elif not self.closed:
            self.closed = True
            self.owner._forget(self)

    def __repr__(self) -> str:
        return f"<SIPConnection {self.proto} {self.peer}>"


class ReliableSend:
    """A transaction's ``send`` over a stream: a retransmission (the same bytes again) is
    dropped, since the stream delivers (RFC 3261 §17: Timers A, E and G are for UDP),
    except a 2xx, which the UAS core repeats end to end until the ACK (§13.3.1.4)."""

    __slots__ = ("_last", "_write")

    def __init__(self, write: Callable[[bytes, Addr], None]) -> None:
        self._write = write
        self._last: bytes | None = None

    def __call__(self, data: bytes, addr: Addr) -> None:
        if data is self._last and not data.startswith(b"SIP/2.0 2"):
            return
        self._last = data
        self._write(data, addr)


class StreamTransports:
    """The TCP/TLS listeners and connections of one SIP endpoint (see the module docstring).

    Args:
        deliver: Called with each framed message and its connection.
        max_size: Largest message on a stream.
        tls_client: SSL context for TLS connections this side opens (default: the system's
            trust store, hostname checks on).
        idle_timeout: Seconds a connection may stay silent before it is closed.
        on_failed: Called with ``(proto, addr)`` when a connection this side opens fails.
        max_connections: Connections at once; more incoming ones are refused (closed).
    """

    def __init__(
        self,
        deliver: Callable[[bytes, SIPConnection], None],
        *,
        max_size: int,
        tls_client: ssl.SSLContext | None = None,
        idle_timeout: float = 300.0,
        on_failed: Callable[[str, Addr], None] | None = None,
        max_connections: int = 10000,
    ) -> None:
        self.deliver = deliver
        self.on_failed = on_failed
        self.max_connections = max_connections
        self.refused = 0
        self.max_size = max_size
        self.tls_client = tls_client
        self.idle_timeout = idle_timeout
        self.servers: dict[str, asyncio.Server] = {}
        self.ports: dict[str, int] = {}
        self.connections: set[SIPConnection] = set()
        self._by_addr: dict[tuple[str, Addr], SIPConnection] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.bad_streams = 0
        self.opened = 0
        self.accepted = 0

    async def listen(self, proto: str, host: str, port: int, context: ssl.SSLContext | None = None) -> int:
        """Accept ``proto`` (``TCP`` or ``TLS``) connections on ``host:port``; returns the port."""
        loop = asyncio.get_running_loop()

        def accept() -> SIPConnection:
            self.accepted += 1
            return SIPConnection(self, proto)

        server = await loop.create_server(accept, host, port, ssl=context, reuse_address=True)
        self.servers[proto] = server
        self.ports[proto] = int(server.sockets[0].getsockname()[1])
        return self.ports[proto]

    def find(self, addr: Addr, proto: str | None = None) -> SIPConnection | None:
        """A live connection to ``addr`` (its peer address or a Via alias)."""
        for p in (proto,) if proto else ("TLS", "TCP"):
            conn = self._by_addr.get((p, addr))
            if conn is not None and not conn.closed:
                return conn
        return None

    def alias(self, conn: SIPConnection, sent_by: Addr) -> None:
        """Reach ``conn`` also as ``sent_by`` (a received request's Via, same host)."""
        if conn.peer is not None and sent_by[0] == conn.peer[0] and sent_by not in conn.aliases:
            conn.aliases.add(sent_by)
            self._by_addr[(conn.proto, sent_by)] = conn

    def connect(self, proto: str, addr: Addr) -> SIPConnection:
        """The connection to ``addr``: an existing one, else a new one (data written before
        it is up is queued; a failed connect is logged and the data dropped: the
        transactions time out)."""
        conn = self.find(addr, proto)
        if conn is not None:
            return conn
        conn = SIPConnection(self, proto, addr)
        self._by_addr[(proto, addr)] = conn
        self.connections.add(conn)
        self.opened += 1
        asyncio.get_running_loop().create_task(self._open(conn, addr), name=f"sip-{proto}-connect")
        return conn

    async def _open(self, conn: SIPConnection, addr: Addr) -> None:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if conn.proto == "TLS":
            context = self.tls_client or ssl.create_default_context()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn, addr[0], addr[1], ssl=context, server_hostname=addr[0] if context else None
                ),
                10.0,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            logger.warning("sip: %s connection to %s:%d failed: %s", conn.proto, addr[0], addr[1], exc)
            conn.pending.clear()
            conn.close()
            if self.on_failed is not None:
                self.on_failed(conn.proto, addr)

    def send(self, proto: str, data: bytes, addr: Addr) -> None:
        """Write ``data`` to the ``proto`` connection to ``addr`` (opened if needed)."""
        self.connect(proto, addr).write(data)

    def _add(self, conn: SIPConnection) -> None:
        self.connections.add(conn)
        if conn.peer is not None:
            self._by_addr[(conn.proto, conn.peer)] = conn
        if self._sweep is None and self.idle_timeout > 0:
            self._sweep = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._close_idle)

    def _forget(self, conn: SIPConnection) -> None:
        self.connections.discard(conn)
        for key in [(conn.proto, a) for a in (conn.peer, *conn.aliases) if a is not None]:
            if self._by_addr.get(key) is conn:
                del self._by_addr[key]

    def _close_idle(self) -> None:
        self._sweep = None
        now = asyncio.get_running_loop().time()
        for conn in list(self.connections):
            if now - conn.last_active > self.idle_timeout:
                logger.debug("sip: closing idle %r", conn)
                conn.close()
        if self.connections:
            self._sweep = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._close_idle)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for server in self.servers.values():
            server.close()
        self.servers.clear()
        for conn in list(self.connections):
            conn.close()
        self.deliver = _drop  # no cycle back to the endpoint once closed
        self.on_failed = None


def _drop(data: bytes, conn: SIPConnection) -> None:
    return None
