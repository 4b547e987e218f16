"""AWS event-stream framing (``application/vnd.amazon.eventstream``): decoder and encoder.

The binary message format of Bedrock's ``ConverseStream`` (and Transcribe, Lex, S3 Select...),
as described in "Event stream encoding"
(https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html ,
https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html) and Smithy's event
stream spec (https://smithy.io/2.0/spec/streaming.html#event-streams). Every integer is
big-endian; the CRCs are CRC-32 (ISO-HDLC, :func:`zlib.crc32`)::

    total length  u32   (the whole message, these 4 bytes and the trailing CRC included)
    headers length u32
    prelude CRC   u32   (of the 8 bytes above)
    headers       repeated: name length u8, name (UTF-8), value type u8, value
    payload       total - headers - 16 bytes
    message CRC   u32   (of every byte before it)

Header value types: 0 true, 1 false (no value bytes), 2 byte (i8), 3 short (i16), 4 int
(i32), 5 long (i64), 6 byte array (u16 length + bytes), 7 string (u16 length + UTF-8),
8 timestamp (i64 milliseconds since the epoch), 9 UUID (16 bytes).

:class:`EventStreamDecoder` is incremental: :meth:`~EventStreamDecoder.feed` takes bytes
cut anywhere and returns the messages completed so far. A bad CRC, an impossible length or
an unknown header type raises :class:`~flowcat.errors.ServiceProtocolError`: the stream is
out of step and cannot be resynchronised, so the connection is to be treated as failed.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, ServiceConnectionError, ServiceProtocolError

__all__ = [
    "EventStreamDecoder",
    "EventStreamMessage",
    "HeaderValue",
    "encode_headers",
    "encode_message",
    "frame_message",
    "iter_event_stream",
]

PRELUDE = 12  # total length, headers length, prelude CRC
OVERHEAD = 16  # prelude + message CRC
MAX_MESSAGE = 16 * 1024 * 1024  # the format's documented limits
MAX_HEADERS = 128 * 1024

_U32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">III")
_FIXED = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"), 5: struct.Struct(">q"),
          8: struct.Struct(">q")}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class HeaderValue:
    """A header value with an explicit wire type (for encoding a byte, short or long)."""

    type: int
    value: Any


@dataclass(slots=True)
class EventStreamMessage:
    """One decoded message: its headers (name → Python value) and raw payload.

    Values: ``bool`` (types 0/1), ``int`` (2-5), ``bytes`` (6), ``str`` (7),
    ``datetime`` in UTC (8), :class:`uuid.UUID` (9).
    """

    headers: dict[str, Any]
    payload: bytes


class EventStreamDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages back."""

    __slots__ = ("_broken", "_buf", "messages")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken: ServiceProtocolError | None = None
        self.messages = 0  # decoded so far (for error context)

    @property
    def pending(self) -> int:
        """Bytes held of a message not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        """Add ``data``; returns the messages it completed (possibly none).

        Messages complete before a broken one are returned first; the error is raised by
        the next call (or :meth:`check`).

        Raises:
            ServiceProtocolError: A CRC mismatch, an impossible length or a malformed header.
        """
        self.check()
        self._buf += data
        out: list[EventStreamMessage] = []
        try:
            self._decode(out)
        except ServiceProtocolError as exc:
            if not out:
                raise
            self._broken = exc
        return out

    def check(self) -> None:
        """Raise the error found after the messages last returned, if any."""
        if self._broken is not None:
            raise self._broken

    def _decode(self, out: list[EventStreamMessage]) -> None:
        buf = self._buf
        while len(buf) >= PRELUDE:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, 0)
            if zlib.crc32(buf[:8]) != prelude_crc:
                raise self._error(f"prelude CRC mismatch (total length {total}, headers length {headers_len})")
            if total < OVERHEAD or total > MAX_MESSAGE or headers_len > MAX_HEADERS or headers_len > total - OVERHEAD:
                raise self._error(f"impossible lengths: total {total}, headers {headers_len}")
            if len(buf) < total:
                break
            view = memoryview(buf)
            try:
                (message_crc,) = _U32.unpack_from(view, total - 4)
                if zlib.crc32(view[: total - 4]) != message_crc:
                    raise self._error(f"message CRC mismatch ({total} bytes)")
                headers = self._headers(view[PRELUDE : PRELUDE + headers_len])
                payload = bytes(view[PRELUDE + headers_len : total - 4])
            finally:
                view.release()
            del buf[:total]
            self.messages += 1
            out.append(EventStreamMessage(headers, payload))

    def _error(self, what: str) -> ServiceProtocolError:
        return ServiceProtocolError(f"event stream: {what} after {self.messages} message(s)")

    def _headers(self, raw: memoryview) -> dict[str, Any]:
        headers: dict[str, Any] = {}
        i, end = 0, len(raw)
        try:
            while i < end:
                n = raw[i]
                name = bytes(raw[i + 1 : i + 1 + n]).decode("utf-8")
                i += 1 + n
                kind = raw[i]
                i += 1
                value: Any
                if kind == 0 or kind == 1:
                    value = kind == 0
                elif kind in _FIXED:
                    fixed = _FIXED[kind]
                    if i + fixed.size > end:
                        raise IndexError(name)
                    (value,) = fixed.unpack_from(raw, i)
                    i += fixed.size
                    if kind == 8:
                        value = _EPOCH + dt.timedelta(milliseconds=value)
                elif kind == 6 or kind == 7:
                    (size,) = struct.unpack_from(">H", raw, i)
                    i += 2
                    if i + size > end:
                        raise IndexError(name)
                    data = bytes(raw[i : i + size])
                    i += size
                    value = data if kind == 6 else data.decode("utf-8")
                elif kind == 9:
                    if i + 16 > end:
                        raise IndexError(name)
                    value = uuid.UUID(bytes=bytes(raw[i : i + 16]))
                    i += 16
                else:
                    raise self._error(f"unknown header value type {kind} for {name!r}")
                headers[name] = value
        # OverflowError: a timestamp (type 8) beyond what datetime holds.
        except (IndexError, struct.error, UnicodeDecodeError, OverflowError) as exc:
            raise self._error(f"malformed headers ({type(exc).__name__})") from exc
        return headers


async def iter_event_stream(content: Any, decoder: EventStreamDecoder | None = None) -> AsyncIterator[EventStreamMessage]:
    """The messages of an event-stream body (an ``aiohttp.StreamReader``), as they complete.

    Raises:
        ServiceProtocolError: The framing is broken (see :class:`EventStreamDecoder`).
        ServiceConnectionError: The body ended inside a message.
    """
    decoder = decoder if decoder is not None else EventStreamDecoder()
    async for chunk in content.iter_any():
        for message in decoder.feed(chunk):
            yield message
        decoder.check()
    if decoder.pending:
        raise ServiceConnectionError(f"event stream: the body ended inside a message ({decoder.pending} bytes held)")


# ------------------------------------------------------------------ encoding


def _encode_header(name: str, value: Any) -> bytes:
    raw_name = name.encode("utf-8")
    if len(raw_name) > 255:
        raise ConfigError(f"event stream: header name too long: {name!r}")
    out = bytes([len(raw_name)]) + raw_name
    kind: int
    if isinstance(value, HeaderValue):
        kind, value = value.type, value.value
    elif isinstance(value, bool):
        kind = 0 if value else 1
    elif isinstance(value, int):
        kind = 4
    elif isinstance(value, bytes):
        kind = 6
    elif isinstance(value, str):
        kind = 7
    elif isinstance(value, dt.datetime):
        kind = 8
    elif isinstance(value, uuid.UUID):
        kind = 9
    else:
        raise ConfigError(f"event stream: no header type for {type(value).__name__}")
    out += bytes([kind])
    if kind in (0, 1):
        return out
    if kind in _FIXED:
        if kind == 8 and isinstance(value, dt.datetime):
            value = int((value - _EPOCH) // dt.timedelta(milliseconds=1))
        return out + _FIXED[kind].pack(value)
    if kind in (6, 7):
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return out + struct.pack(">H", len(data)) + data
    if kind == 9:
        return out + (value.bytes if isinstance(value, uuid.UUID) else bytes(value))
    raise ConfigError(f"event stream: unknown header value type {kind}")


def encode_headers(headers: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> bytes:
    """The wire form of a header block (typed as :func:`encode_message` types them).

    Raises:
        ConfigError: A header name over 255 bytes, or a value with no header type.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    return b"".join(_encode_header(n, v) for n, v in items)


def encode_message(headers: Mapping[str, Any] | Iterable[tuple[str, Any]], payload: bytes = b"") -> bytes:
    """One message, with valid CRCs (for fakes and tests).

    Raises:
        ConfigError: A header name over 255 bytes, or a value with no header type.

    ``headers`` values are typed by their Python type (``bool``, ``int`` as int32, ``bytes``,
    ``str``, ``datetime``, :class:`uuid.UUID`) or given as :class:`HeaderValue`.
    """
    return frame_message(encode_headers(headers), payload)


def frame_message(raw_headers: bytes, payload: bytes = b"") -> bytes:
    """One message from an already encoded header block (:func:`encode_headers`; a sender
    reusing a constant block skips re-encoding it), with valid CRCs."""
    total = len(raw_headers) + len(payload) + OVERHEAD
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += _U32.pack(zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + _U32.pack(zlib.crc32(body))
