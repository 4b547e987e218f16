"""A fault-injecting TCP proxy that understands HTTP and WebSocket upgrades, for provider-fault tests.

:class:`FaultProxy` listens on 127.0.0.1 and forwards each connection to one upstream (a
fake provider of :mod:`flowcat.testing.fakes`, or any HTTP/WebSocket server). A service
pointed at the proxy's :attr:`~FaultProxy.url` instead of the fake's talks to the fake
through it, until a fault is armed (:meth:`FaultProxy.arm`); then the next ``count``
connections get it:

* ``Fault.STATUS`` — the request (or the WebSocket upgrade) is answered with ``status``
  (5xx) by the proxy; the upstream is never reached.
* ``Fault.RATE_LIMIT`` — the same with 429 and a ``Retry-After`` header.
* ``Fault.DISCONNECT`` — ``after_bytes`` bytes of the answer's body (or of the socket's
  messages after the 101) go through, then both sides are closed with a FIN: no
  WebSocket close frame, no last chunk of a chunked body. With ``tls`` (the proxy serves
  TLS to the client) the connection is dropped without TLS ``close_notify``.
* ``Fault.RESET`` — the same, closed with a TCP RST (``SO_LINGER`` 0).
* ``Fault.STALL`` — ``after_bytes`` go through, then nothing more until the client goes
  away (the proxy still reads the client, so its writes do not block).
* ``Fault.TRICKLE`` — the whole answer, ``trickle_bytes`` at a time every
  ``trickle_secs``.
* ``Fault.GARBAGE`` — ``after_bytes`` go through, then ``garbage_bytes`` random bytes,
  then the rest of the answer.

HTTP requests are rewritten to ``Connection: close`` so that each request has its own
connection (a keep-alive pool would otherwise carry several requests on one, and a
fault armed for "the next request" would never meet it). A WebSocket upgrade is
forwarded as is. :attr:`FaultProxy.injected` counts each fault put on a connection;
:meth:`FaultProxy.wait_injected` waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import socket
import ssl
import struct
from collections import Counter
from dataclasses import dataclass

__all__ = ["Fault", "FaultProxy"]

logger = logging.getLogger("flowcat.testing.faults")

_HEAD_LIMIT = 64 * 1024
_READ = 16 * 1024


class Fault(enum.Enum):
    """What the proxy does to a connection (see the module docstring)."""

    NONE = "none"
    STATUS = "status"
    RATE_LIMIT = "rate_limit"
    DISCONNECT = "disconnect"
    RESET = "reset"
    STALL = "stall"
    TRICKLE = "trickle"
    GARBAGE = "garbage"


@dataclass(frozen=True)
class _Armed:
    fault: Fault
    after_bytes: int
    status: int
    retry_after: int
    trickle_bytes: int
    trickle_secs: float
    garbage_bytes: int
    stall_limit: float


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``) that injects faults.

    Args:
        upstream: The server to forward to (plain TCP).
        tls: Serve TLS to the client with this context (the URL is then ``https://``); the
            client must trust its certificate.
        seed: Seed of the garbage bytes.

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started.
        connections: Connections accepted.
        injected: Faults put on connections, by fault.
    """

    def __init__(self, upstream: str, *, tls: ssl.SSLContext | None = None, seed: int = 19) -> None:
        hostport = upstream.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self.upstream = (host.strip("[]"), int(port))
        self.tls = tls
        self.url = ""
        self.connections = 0
        self.injected: Counter[Fault] = Counter()
        self._armed: _Armed | None = None
        self._left = 0
        self._rng = random.Random(seed)  # noqa: S311 - garbage bytes for a test, not a secret
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------ control

    def arm(
        self,
        fault: Fault,
        *,
        count: int = 1,
        after_bytes: int = 0,
        status: int = 503,
        retry_after: int = 1,
        trickle_bytes: int = 16,
        trickle_secs: float = 0.02,
        garbage_bytes: int = 64,
        stall_limit: float = 60.0,
    ) -> None:
        """Put ``fault`` on the next ``count`` connections (-1: every one until :meth:`clear`)."""
        if fault is Fault.RATE_LIMIT:
            status = 429
        self._armed = _Armed(
            fault, after_bytes, status, retry_after, trickle_bytes, trickle_secs, garbage_bytes, stall_limit
        )
        self._left = count

    def clear(self) -> None:
        """No fault on the next connections."""
        self._armed, self._left = None, 0

    async def wait_injected(self, fault: Fault, n: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``fault`` was put on ``n`` connections."""
        async with asyncio.timeout(timeout):
            while self.injected[fault] < n:
                self._changed.clear()
                await self._changed.wait()

    def _take(self) -> _Armed | None:
        armed = self._armed
        if armed is None or self._left == 0:
            return None
        if self._left > 0:
            self._left -= 1
        self.injected[armed.fault] += 1
        self._changed.set()
        return armed

    # ---------------------------------------------------------- lifecycle

    async def start(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1; returns :attr:`url`."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------- a connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - a server callback runs in a task
        self._tasks.add(task)
        self.connections += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            head = await _read_head(reader)
            if head is None:
                return
            armed = self._take()
            fault = armed.fault if armed is not None else Fault.NONE
            if armed is not None and fault in (Fault.STATUS, Fault.RATE_LIMIT):
                writer.write(_status_answer(armed))
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            up_writer.write(_rewrite(head))
            await up_writer.drain()
            client_gone = asyncio.Event()
            to_up = asyncio.create_task(_pipe(reader, up_writer, client_gone), name="fault-proxy-up")
            try:
                await self._answer(up_reader, writer, armed, client_gone)
            finally:
                to_up.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await to_up
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (up_writer, writer):
                if w is not None:
                    w.close()

    async def _answer(
        self,
        up: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        armed: _Armed | None,
        client_gone: asyncio.Event,
    ) -> None:
        """Forward the upstream's answer to the client, with the fault."""
        head = await _read_head(up)
        if head is None:
            return
        writer.write(head)
        await writer.drain()
        fault = armed.fault if armed is not None else Fault.NONE
        passed = 0
        while True:
            if fault is Fault.TRICKLE and armed is not None:
                data = await up.read(armed.trickle_bytes)
            else:
                data = await up.read(_READ)
            if not data:
                return
            if armed is not None and fault in (Fault.DISCONNECT, Fault.RESET, Fault.STALL, Fault.GARBAGE):
                room = armed.after_bytes - passed
                if len(data) >= room:
                    writer.write(data[: max(room, 0)])
                    await writer.drain()
                    if fault is Fault.GARBAGE:
                        writer.write(bytes(self._rng.getrandbits(8) for _ in range(armed.garbage_bytes)))
                        writer.write(data[max(room, 0) :])
                        await writer.drain()
                        fault = Fault.NONE
                        continue
                    if fault is Fault.RESET:
                        _reset(writer)
                    elif self.tls is not None:  # a FIN without close_notify (close() would send it)
                        writer.transport.abort()
                    elif fault is Fault.STALL:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(client_gone.wait(), armed.stall_limit)
                    return
            passed += len(data)
            writer.write(data)
            await writer.drain()
            if fault is Fault.TRICKLE and armed is not None:
                await asyncio.sleep(armed.trickle_secs)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """An HTTP head (request or response) up to its blank line, or None on EOF."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        data = await reader.read(_HEAD_LIMIT)
        return data or None


def _rewrite(head: bytes) -> bytes:
    """The request head with ``Connection: close`` unless it is a WebSocket upgrade."""
    lines = head[:-4].split(b"\r\n")
    if any(line.lower().startswith(b"upgrade:") for line in lines[1:]):
        return head
    kept = [line for line in lines if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"


def _status_answer(armed: _Armed) -> bytes:
    body = b'{"error":{"message":"injected fault","type":"server_error"}}'
    extra = f"Retry-After: {armed.retry_after}\r\n" if armed.status == 429 else ""
    return (
        f"HTTP/1.1 {armed.status} Injected\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with an RST."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gone: asyncio.Event) -> None:
    """Copy ``reader`` to ``writer`` until EOF; then set ``gone``."""
    try:
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        gone.set()
