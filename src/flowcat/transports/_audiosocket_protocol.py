"""The AudioSocket wire protocol and the asyncio protocol of one connection.

The spec is at https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/.
Every message is a 3-byte header, *kind* (1 byte) and payload length (2 bytes,
big-endian), followed by the payload. The kinds:

* ``0x00``: hang up, in either direction (closing the socket also works).
* ``0x01``: the call's UUID, 16 bytes, sent first by Asterisk.
* ``0x03``: one DTMF digit, 1 ASCII byte, from Asterisk.
* ``0x10``: signed linear 16-bit little-endian mono PCM at 8 kHz, both ways.
* ``0x11``–``0x18``: the same at 12, 16, 24, 32, 44.1, 48, 96 and 192 kHz
  (Asterisk's ``enum ast_audiosocket_msg_kind`` in ``res_audiosocket.h``, added in
  October 2025). Asterisk picks the kind of what it sends from the frame's format
  (a format other than these slin rates is sent as ``0x10`` too) and turns each kind
  it receives into a frame of that slin rate. The transport sends bot audio back
  in the kind of the caller's audio.
* ``0xff``: an error; the optional payload is a code (Asterisk's bits: 0x01 hangup
  of calling party, 0x02 frame forwarding error, 0x04 memory error).

Asterisk takes only audio (``0x10``–``0x18``) and ``0x00`` from us. It treats any
other kind, or an empty payload, as an error.

:class:`AudioSocketParser` cuts the byte stream into messages.
:class:`AudioSocketListener` is the ``asyncio.Protocol`` that feeds them to an
:class:`~flowcat.transports.AudioSocketTransport`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError
from ._drive import drive

if TYPE_CHECKING:
    from ._audiosocket import AudioSocketTransport

__all__ = [
    "AUDIO_RATES",
    "DEFAULT_MAX_PAYLOAD",
    "HANGUP",
    "KIND_AUDIO",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_UUID",
    "RATE_KINDS",
    "AudioSocketListener",
    "AudioSocketParser",
    "describe_error",
    "encode_message",
]

logger = logging.getLogger("flowcat.transports.audiosocket")

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF

AUDIO_RATES: dict[int, int] = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
"""Audio kind → sample rate (Hz) of its signed linear 16-bit mono payload."""
RATE_KINDS = {rate: kind for kind, rate in AUDIO_RATES.items()}

HANGUP = b"\x00\x00\x00"
DEFAULT_MAX_PAYLOAD = 16384
"""A longer message is taken as garbage. 20 ms at 192 kHz is 7680 bytes."""

# Asterisk's error codes are bit flags in one byte.
_ERROR_BITS = ((0x01, "hangup of calling party"), (0x02, "frame forwarding error"), (0x04, "memory error"))
_INBOX_MAX = 64  # messages held before the pipeline runs (a flood keeps only the newest)


def _drop(kind: int, payload: bytes) -> None:
    """Where a parser whose connection is gone puts a message: nowhere."""


def encode_message(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message: header (kind, big-endian length) and payload."""
    n = len(payload)
    if not 0 <= kind <= 0xFF or n > 0xFFFF:
        raise ValueError(f"kind {kind:#x} with {n} bytes does not fit an AudioSocket header")
    return bytes((kind, n >> 8, n & 0xFF)) + payload


def describe_error(payload: bytes) -> str:
    """Asterisk's error code (kind 0xff) in words."""
    if not payload:
        return "no code"
    code = payload[0]
    names = [name for bit, name in _ERROR_BITS if code & bit]
    return ", ".join(names) if names else "application code"


class AudioSocketParser:
    """Cuts an AudioSocket byte stream into messages, for TCP reads of any size.

    :meth:`feed` calls ``on_message(kind, payload)`` once per whole message, in
    order. The last, incomplete message waits in a buffer until the rest arrives. A
    read that holds only whole messages (the usual case) is sliced directly, with
    no copy into the buffer.

    Args:
        on_message: Called with ``(kind: int, payload: bytes)``.
        max_payload: Longest acceptable payload; a longer header raises ProtocolError.
    """

    __slots__ = ("_buf", "_need", "bytes_in", "max_payload", "messages", "on_message", "stopped")

    def __init__(self, on_message: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.on_message = on_message
        self.max_payload = max_payload
        self.stopped = False
        """Set to ignore everything fed from now on (the connection is ending)."""
        self.bytes_in = 0
        self.messages = 0
        self._buf = bytearray()
        self._need = 3  # bytes the buffer needs before the next message is complete

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message waiting for the rest."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Parse one read. Raises ProtocolError for a header over ``max_payload``."""
        if self.stopped:
            return
        self.bytes_in += len(data)
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return
            data = bytes(buf)
            buf.clear()
        n = len(data)
        pos = 0
        limit = self.max_payload
        on_message = self.on_message
        while n - pos >= 3:
            length = (data[pos + 1] << 8) | data[pos + 2]
            if length > limit:
                self._garbage(data, pos, length)
            end = pos + 3 + length
            if end > n:
                self._need = 3 + length
                buf += memoryview(data)[pos:]
                return
            self.messages += 1
            try:
                on_message(data[pos], data[pos + 3 : end])
            except Exception:
                logger.exception("AudioSocket message kind 0x%02x: handler failed", data[pos])
            pos = end
            if self.stopped:
                return
        if pos < n:
            self._need = 3
            buf += memoryview(data)[pos:]

    def _garbage(self, data: bytes, pos: int, length: int) -> None:
        self.stopped = True
        offset = self.bytes_in - len(data) + pos
        raise ProtocolError(
            f"header kind 0x{data[pos]:02x} with length {length} (max {self.max_payload}) "
            f"at byte {offset}: {data[pos : pos + 16].hex(' ')}",
            raw=bytes(data[pos : pos + 16]),
        )


class AudioSocketListener(asyncio.Protocol):
    """The ``asyncio.Protocol`` of one AudioSocket connection.

    The first message must be the call's UUID (:meth:`wait_uuid`). Messages after
    it wait in a small inbox until :meth:`attach` hands the connection to an
    :class:`AudioSocketTransport`. From then on each message goes straight to
    :meth:`AudioSocketTransport.feed_message`. A 0x00 from the peer closes the
    connection (:attr:`remote_hangup`). A garbage header is logged with its
    context and the connection is hung up; other connections are unaffected.

    Args:
        max_payload: Longest acceptable payload (bytes).
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.parser = AudioSocketParser(self._hold, max_payload)
        self.tcp: asyncio.Transport | None = None
        """The asyncio transport (set when connected)."""
        self.transport: AudioSocketTransport | None = None
        self.peer: str | None = None
        """The peer's address (``host:port``)."""
        self.call_id: str | None = None
        """The call's UUID in its string form, once it has arrived."""
        self.remote_hangup = False
        """The peer ended the call with 0x00."""
        self.dropped = 0
        """Messages received while the pipeline was starting and dropped."""
        self._open = False
        self._gone = False
        self._paused = False
        self._inbox: deque[tuple[int, bytes]] = deque(maxlen=_INBOX_MAX)
        self._uuid_fut: asyncio.Future[None] | None = None
        self._closed_fut: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return f"AudioSocket({self.call_id or self.peer})"

    @property
    def disconnected(self) -> bool:
        """Whether the connection is gone."""
        return self._gone

    @property
    def is_open(self) -> bool:
        """Whether the connection is open and not closing."""
        return self._open

    @property
    def writable(self) -> bool:
        """Whether audio written now would go out (open, not closing, not backed up)."""
        return self._open and not self._paused

    def closed_future(self) -> asyncio.Future[None]:
        """A future done when the connection is gone."""
        fut = self._closed_fut
        if fut is None:
            fut = self._closed_fut = asyncio.get_running_loop().create_future()
            if self._gone:
                fut.set_result(None)
        return fut

    async def wait_uuid(self) -> str | None:
        """The call's UUID once it arrived; None if the connection ended first."""
        if self.call_id is None and not self._gone and self._open:
            fut = self._uuid_fut = asyncio.get_running_loop().create_future()
            try:
                await fut
            finally:
                self._uuid_fut = None
        return self.call_id

    def attach(self, transport: AudioSocketTransport, keep: int | None = None) -> None:
        """Feed ``transport`` from now on. Held messages go first; of the held audio,
        only the last ``keep`` messages are fed when ``keep`` is given."""
        self.transport = transport
        feed = transport.feed_message
        inbox = self._inbox
        skip = 0
        if keep is not None:
            skip = max(0, sum(1 for kind, _ in inbox if kind in AUDIO_RATES) - keep)
        for kind, payload in inbox:
            if skip and kind in AUDIO_RATES:
                skip -= 1
                self.dropped += 1
                continue
            feed(kind, payload)
        inbox.clear()
        self.parser.on_message = feed
        if self._gone:
            drive(transport.handle_disconnect(), "disconnect")
            self._forget()

    def send(self, data: bytes) -> None:
        """Write raw bytes now (whole messages; see :func:`encode_message`)."""
        if self._open and self.tcp is not None:
            self.tcp.write(data)

    def hang_up(self) -> None:
        """Send 0x00 (unless the peer hung up) and close the connection; idempotent."""
        if self._open and not self.remote_hangup and self.tcp is not None:
            self.tcp.write(HANGUP)
        self._shut()

    # ------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: Any) -> None:
        self.tcp = transport
        self._open = True
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            logger.warning("%s from %s: garbage %s; hanging up", self.name, self.peer, exc)
            self.hang_up()

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._open = False
        self.parser.stopped = True
        for fut in (self._uuid_fut, self._closed_fut):
            if fut is not None and not fut.done():
                fut.set_result(None)
        t = self.transport
        if t is not None:
            drive(t.handle_disconnect(), "disconnect")
        self._forget()

    # --------------------------------------------------------------- internal

    def _forget(self) -> None:
        """The connection is gone: drop the transport and the bound method the parser
        feeds (this listener's or the transport's), which tie them into cycles."""
        self.transport = None
        self.parser.on_message = _drop

    def _hold(self, kind: int, payload: bytes) -> None:
        if kind == KIND_HANGUP:
            self.peer_hung_up()
            return
        if self.call_id is None:
            if kind == KIND_UUID and len(payload) == 16:
                self.call_id = str(uuid.UUID(bytes=payload))
                fut = self._uuid_fut
                if fut is not None and not fut.done():
                    fut.set_result(None)
                return
            logger.warning(
                "%s: first message is kind 0x%02x with %d bytes, not the call's UUID; hanging up",
                self.name,
                kind,
                len(payload),
            )
            self.hang_up()
            return
        if len(self._inbox) == _INBOX_MAX:
            self.dropped += 1
        self._inbox.append((kind, payload))

    def peer_hung_up(self) -> None:
        """The peer sent 0x00: stop reading, close, end the call."""
        self.remote_hangup = True
        self.parser.stopped = True
        self._shut()
        t = self.transport
        if t is not None:
            drive(t.handle_disconnect(), "disconnect")

    def _shut(self) -> None:
        if self._open and self.tcp is not None:
            self._open = False
            self.parser.stopped = True
            self.tcp.close()  # buffered writes (the 0x00) go out first
