"""RTP packets (RFC 3550) and the port allocator of the media sockets.

:func:`parse_rtp` reads a packet's fixed header, CSRCs, extension and padding and
returns None for anything that is not a well-formed RTP v2 packet (the caller counts
it). :class:`RTPPortAllocator` hands out even ports from a configured range to one
UDP socket per call (:meth:`RTPPortAllocator.bind`; the call's
:class:`~flowcat.transports.sip.RTPSession` reads and writes it itself); the range is
the only limit on the number of calls.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from ...errors import ConfigError, TransportError

__all__ = ["RTPHeader", "RTPPortAllocator", "build_rtp", "parse_rtp", "sendable"]

_FIXED = struct.Struct("!BBHII")
_HOST = re.compile(r"[A-Za-z0-9.:\-]{1,253}")  # an IP literal or a DNS name, nothing else


def sendable(addr: tuple[Any, ...]) -> bool:
    """Whether ``addr`` is a ``(host, port)`` a UDP socket takes without raising: a host from
    a peer's Contact, Route or SDP with a NUL, a space or a non-ASCII character, or a port
    outside 1-65535, would raise inside asyncio's ``sendto``, which then closes the socket."""
    host, port = addr[0], addr[1]
    return (
        type(port) is int and 0 < port < 65536 and isinstance(host, str) and _HOST.fullmatch(host) is not None
    )


class RTPHeader(NamedTuple):
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RTPHeader | None:
    """The packet's header fields and payload, or None if it is not RTP v2."""
    n = len(data)
    if n < 12:
        return None
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension
        if n < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = n
    if b0 & 0x20:  # padding: the last byte counts it
        pad = data[-1]
        if pad == 0:
            return None
        end -= pad
    if start > end:
        return None
    return RTPHeader(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[start:end])


def build_rtp(
    payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int, payload: bytes
) -> bytes:
    """One RTP v2 packet without CSRCs or extension."""
    return (
        _FIXED.pack(
            0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        + payload
    )


class RTPPortAllocator:
    """Even UDP ports from ``[start, end)`` for the calls' RTP sockets.

    Ports are tried round-robin from where the last call's was taken; one already
    in use (by us or another process) is skipped. ``open`` raises
    :class:`~flowcat.errors.TransportError` only when every port of the range is taken.
    """

    def __init__(self, host: str, start: int = 10000, end: int = 20000) -> None:
        if not 0 < start < end <= 65536:
            raise ConfigError(f"bad RTP port range {start}-{end}")
        self.host = host
        self.start = start + (start & 1)
        self.end = end
        self._next = self.start
        self._used: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._used)

    def bind(self) -> tuple[socket.socket, int]:
        """A non-blocking UDP socket bound on a free even port; returns (socket, port)."""
        count = (self.end - self.start + 1) // 2
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(count):
            port = self._next
            self._next += 2
            if self._next >= self.end:
                self._next = self.start
            if port in self._used:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self._used.add(port)
            return sock, port
        raise TransportError(f"no free RTP port in {self.start}-{self.end} on {self.host}")

    async def open(self, factory: Callable[[], Any]) -> tuple[asyncio.DatagramTransport, Any, int]:
        """:meth:`bind`, then a datagram endpoint on the socket; returns (transport, protocol, port)."""
        sock, port = self.bind()
        try:
            transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(factory, sock=sock)
        except BaseException:
            sock.close()
            self._used.discard(port)
            raise
        return transport, protocol, port

    def release(self, port: int) -> None:
        self._used.discard(port)
