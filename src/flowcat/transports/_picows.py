"""PicowsTransport: one call over one picows WebSocket (the fast media engine).

picows (``flowcat[picows]``) parses frames in C and calls back a
:class:`PicowsListener` for every frame; there is no reader task and no
per-message future. The listener reassembles fragmented messages (bounded by
``max_msg_size``; past it the socket is closed with 1009), answers CLOSE,
leaves PING to picows' auto-pong, and hands each whole message to
:meth:`~flowcat.transports.WebsocketTransport.feed` synchronously. Until a
transport is attached (a carrier handshake is still running, or the pipeline is
starting) messages wait in a small inbox, read with :meth:`PicowsListener.receive`. Writes are synchronous ``WSTransport.send``
calls: picows writes straight to the socket (or buffers in the asyncio
transport when the kernel buffer is full), so no write ever creates a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .._ratelimit import RateLimitedLog
from ..errors import MissingExtraError
from ._attach import feed_until_closed
from ._drive import drive
from ._flow import StallTimer
from ._websocket import WebsocketParams, WebsocketTransport

try:
    import picows
except ImportError:  # pragma: no cover - picows is installed with the extra
    raise MissingExtraError("the picows WebSocket engine", "picows") from None

__all__ = ["PicowsListener", "PicowsTransport"]

logger = logging.getLogger("flowcat.transports.websocket")

_BINARY = picows.WSMsgType.BINARY
_TEXT = picows.WSMsgType.TEXT
_CONT = picows.WSMsgType.CONTINUATION
_CLOSE = picows.WSMsgType.CLOSE
_PING = picows.WSMsgType.PING
_CloseCode = picows.WSCloseCode

_CLOSE_WAIT = 2.0  # seconds the peer has to answer our CLOSE before the socket is dropped
_INBOX_MAX = 250  # messages kept before a transport is attached (5 s of 20 ms audio; a flood keeps the newest)


def _drop(data: str | bytes) -> None:
    """Where a listener whose connection is gone puts a message: nowhere."""


class _LateWriteLog(logging.Filter):
    """Rate-limits the socket layer's "write() called after connection lost." warning.

    aiofastnet (picows' socket layer) logs it for every write past the fifth on a
    socket whose loss it has seen but picows has not reported yet (its
    ``connection_lost`` runs one loop iteration later). flowcat checks the socket
    before each write (:func:`_sock_open`), so only a writer outside flowcat can
    still cause it; it is logged once, then one in every 1,000, across all
    connections (:attr:`count` has them all).
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._due = RateLimitedLog(logger, first=1, every=1000).due

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).endswith("called after connection lost."):
            return True
        self.count += 1
        return self._due(self.count)


_LATE_WRITES = _LateWriteLog()
logging.getLogger("aiofastnet").addFilter(_LATE_WRITES)


def _sock_open(ws: Any) -> bool:
    """Whether a message written to picows ``ws`` goes anywhere.

    picows' own flags (``is_disconnected``, ``is_close_frame_sent``) change only when
    its ``connection_lost`` runs, one loop iteration after the socket layer closed
    the socket (a failed write, a reset or EOF read, an abort): a burst of writes
    in between (a starved loop catching up, a read of many echoed frames) would
    each reach a closed transport. ``is_closing()`` is true from that moment.
    """
    return ws is not None and not ws.is_disconnected and not ws.is_close_frame_sent and not (
        ws.underlying_transport.is_closing()
    )


class PicowsListener(picows.WSListener):
    """The picows listener of one connection, feeding a :class:`PicowsTransport`.

    Write flow control: when the socket's write buffer passes its high-water mark
    (the peer stopped reading) the listener is ``congested`` and the transport drops
    bot audio instead of buffering it (counted in :attr:`audio_dropped`; control
    messages still go). If the peer has not drained the buffer after
    ``write_stall_timeout`` seconds the connection is dropped and the call ends.

    Args:
        max_msg_size: Largest accepted message (bytes) after reassembly.
        write_stall_timeout: Seconds a full write buffer is tolerated (None: forever).
    """

    # What each received frame and each sent chunk read, in the object rather than its dict.
    __slots__ = ("__dict__", "_frag_type", "_t", "congested")

    def __init__(self, max_msg_size: int = 4 * 1024 * 1024, write_stall_timeout: float | None = 10.0) -> None:
        super().__init__()
        self.congested = False
        """Whether the write buffer is over its high-water mark (the peer is not reading)."""
        self.write_stall_timeout = write_stall_timeout
        self.audio_dropped = 0
        """Bot audio chunks dropped while congested."""
        self.write_pauses = 0
        """Times the write buffer went over its high-water mark."""
        self._stall = StallTimer()
        self._t: WebsocketTransport | None = None  # set by attach(): feed it directly
        self.ws: Any = None
        """The picows ``WSTransport`` (set when the connection is upgraded)."""
        self.max_msg_size = max_msg_size
        self.transport: WebsocketTransport | None = None
        self._feed: Any = self._hold
        self._inbox: deque[str | bytes] = deque(maxlen=_INBOX_MAX)
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._gone = False
        self._frag_type: Any = None
        self._frag: list[bytes] = []
        self._frag_size = 0
        self.dropped = 0
        """Messages received while the pipeline was starting and dropped (all but the last ``keep``)."""

    # ----------------------------------------------------------------- public

    @property
    def disconnected(self) -> bool:
        """Whether the connection is gone."""
        return self._gone

    def closed_future(self) -> asyncio.Future[None]:
        """A future done when the connection is gone."""
        fut = self._closed
        if fut is None:
            fut = self._closed = asyncio.get_running_loop().create_future()
            if self._gone:
                fut.set_result(None)
        return fut

    async def receive(self) -> str | bytes | None:
        """The next message received before a transport was attached (None: the peer left)."""
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self._gone or self.transport is not None:
                return None
            fut = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await fut
            finally:
                self._waiter = None

    @property
    def writable(self) -> bool:
        """Whether a message sent now goes anywhere (the socket is open and not closing)."""
        return _sock_open(self.ws)

    def send(self, message: str | bytes) -> None:
        """Write one message now (str: text frame, bytes: binary frame); nothing once the
        socket is closing or gone."""
        ws = self.ws
        if not _sock_open(ws):
            return
        ws.send(_BINARY if isinstance(message, bytes) else _TEXT, message)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send CLOSE (once) and drop the connection if the peer does not answer in time."""
        ws = self.ws
        if ws is None or ws.is_disconnected:
            return
        if ws.underlying_transport.is_closing():  # lost: picows reports it in a moment
            return
        if not ws.is_close_frame_sent:
            ws.send_close(_CloseCode(code), reason.encode() if reason else None)
        asyncio.get_running_loop().call_later(_CLOSE_WAIT, ws.disconnect)

    def attach(self, transport: WebsocketTransport, keep: int | None = None) -> None:
        """Feed ``transport`` from now on: the inbox first (only its last ``keep`` messages
        when given; the older ones are dropped and counted in :attr:`dropped`)."""
        self.transport = transport
        feed = transport.feed
        inbox = self._inbox
        if keep is not None and len(inbox) > keep:
            n = len(inbox) - keep
            self.dropped += n
            for _ in range(n):
                inbox.popleft()
            logger.debug("%s: dropped %d messages received before the pipeline started", transport.name, n)
        while inbox:
            feed(inbox.popleft())
        self._feed = feed
        self._t = transport if feed == transport.feed else None
        self._wake()
        if self._gone:
            drive(transport.handle_disconnect(), "disconnect")
            self._forget()

    # ---------------------------------------------------------- picows callbacks

    def on_ws_connected(self, transport: Any) -> None:
        self.ws = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        mt = frame.msg_type
        if self._frag_type is None and frame.fin:
            if mt is _BINARY:
                t = self._t
                if t is not None:
                    t.feed(frame.get_payload_as_bytes())
                else:
                    self._feed(frame.get_payload_as_bytes())
                return
            if mt is _TEXT:
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError as exc:
                    self._bad(frame.get_payload_as_bytes(), exc)
                    return
                self._feed(text)
                return
        self._other(transport, frame, mt)

    def pause_writing(self) -> None:
        """picows/asyncio: the write buffer passed its high-water mark."""
        self.congested = True
        self.write_pauses += 1
        self._stall.arm(self.write_stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        """picows/asyncio: the write buffer drained below its low-water mark."""
        self.congested = False
        self._stall.disarm()

    def _stalled(self) -> None:
        ws = self.ws
        if self.congested and ws is not None and not ws.is_disconnected:
            logger.warning(
                "picows connection: the peer read nothing for %.1f s with the write buffer full "
                "(%d audio chunks dropped); disconnecting",
                self.write_stall_timeout,
                self.audio_dropped,
            )
            ws.disconnect(graceful=False)  # a graceful close would wait for the full buffer to drain

    def on_ws_disconnected(self, transport: Any) -> None:
        self._stall.disarm()
        self._gone = True
        self._frag_type, self._frag, self._frag_size = None, [], 0
        fut = self._closed
        if fut is not None and not fut.done():
            fut.set_result(None)
        self._wake()
        t = self.transport
        if t is not None:
            drive(t.handle_disconnect(), "disconnect")
        self._forget()

    def _forget(self) -> None:
        """The connection is gone: drop the references to its transport and socket (and
        the bound method feeding it), which would tie them and this listener into cycles."""
        self.transport = self._t = None
        self._feed = _drop
        self.ws = None

    # --------------------------------------------------------------- internal

    def _hold(self, data: str | bytes) -> None:
        self._inbox.append(data)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _other(self, ws: Any, frame: Any, mt: Any) -> None:
        if mt is _CLOSE:
            # The peer ends the call: answer its CLOSE, then drop the connection.
            if not ws.is_close_frame_sent:
                ws.send_close(_CloseCode.OK)
            ws.disconnect()
            return
        if mt is _PING:  # only when auto-pong is off
            ws.send_pong(frame.get_payload_as_bytes())
            return
        if mt is _CONT:
            if self._frag_type is None:
                self._fail(ws, _CloseCode.PROTOCOL_ERROR, "continuation frame without a first frame")
                return
        elif mt is _BINARY or mt is _TEXT:
            if self._frag_type is not None:
                self._fail(ws, _CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                return
            self._frag_type = mt
        else:  # PONG and anything else: nothing to do
            return
        self._frag_size += frame.payload_size
        if self._frag_size > self.max_msg_size:
            self._fail(ws, _CloseCode.MESSAGE_TOO_BIG, f"message over {self.max_msg_size} bytes")
            return
        self._frag.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        kind, parts = self._frag_type, self._frag
        self._frag_type, self._frag, self._frag_size = None, [], 0
        data = b"".join(parts)
        if kind is _TEXT:
            try:
                self._feed(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                self._bad(data, exc)
            return
        self._feed(data)

    def _fail(self, ws: Any, code: Any, why: str) -> None:
        logger.warning("picows connection: %s; closing with %d", why, code.value)
        self._frag_type, self._frag, self._frag_size = None, [], 0
        if not ws.is_close_frame_sent:
            ws.send_close(code, why.encode())
        ws.disconnect()

    def _bad(self, data: bytes, exc: Exception) -> None:
        t = self.transport
        if isinstance(t, WebsocketTransport):
            t.messages_in += 1
            t.bad_message(data, exc)
        else:
            logger.warning("picows connection: skipped malformed message (%s): %r", exc, data[:64])


class PicowsTransport(WebsocketTransport):
    """A call over one picows connection (see the module docstring).

    Events and behaviour are those of :class:`WebsocketTransport`; only the socket
    differs. :meth:`read_messages` waits for the StartFrame to reach the input,
    attaches the transport to the listener and returns when the connection is gone.
    The messages that arrived before the pipeline started (the listener's inbox, at
    most 250) are all fed first, in order: the caller's first audio is not lost when
    a loaded server starts the pipeline late (the aiohttp engine leaves them in the
    socket until its reader starts, with the same effect). Only feeding the last few
    (as this engine once did, so that a start-up backlog could not put a paced echo
    behind for the call) lost the first words of calls started under load.

    Args:
        listener: The connection's :class:`PicowsListener` (already connected).
        params: Transport parameters (the serializer among them).
        name: Name for logs.
    """

    __slots__ = ("_listener", "_pcm_rate", "_sock")

    def __init__(
        self, listener: PicowsListener, params: WebsocketParams | None = None, *, name: str | None = None
    ) -> None:
        self._listener = listener
        self._pcm_rate = 0
        ws = listener.ws
        self._sock = ws.underlying_transport if ws is not None else None  # the asyncio transport under picows
        super().__init__(ws, params, name=name)

    @property
    def listener(self) -> PicowsListener:
        """The connection's listener."""
        return self._listener

    async def read_messages(self) -> None:
        """Feed the input from the listener until the connection is gone; then end the call."""
        await feed_until_closed(self, self._listener, None)

    # ------------------------------------------------------ socket seam

    def _socket_open(self) -> bool:
        return _sock_open(self._ws)

    def _socket_write(self, message: str | bytes) -> None:
        self._ws.send(_BINARY if isinstance(message, bytes) else _TEXT, message)

    def _audio_writer(self) -> Callable[[Any], None] | None:
        """The generic writer with the picows socket checks and send inlined: a bound
        method reading this transport's slots (a closure would add its cells and
        function object to the memory every chunk touches)."""
        ser = self._fast_ser
        if ser is None or self._ws is None:
            return super()._audio_writer()
        # A serializer that sends audio at ``passthrough_rate`` as the frame's own bytes
        # (raw PCM): chunks at that rate are written without a serializer call.
        self._pcm_rate = ser.passthrough_rate or 0
        return self._write_audio_now

    def _write_audio_now(self, frame: Any) -> None:
        if self._closing:
            return
        # (picows itself ignores sends once the socket is gone or its CLOSE was sent; a
        # socket already closing below it, lost but not yet reported, is checked here.)
        ws = self._ws
        lis = self._listener
        if lis.congested:  # the peer is not reading: real-time audio is dropped, not buffered
            lis.audio_dropped += 1
            return
        if self._sock.is_closing():  # type: ignore[union-attr]  # (set: _ws is, see _audio_writer)
            return
        try:
            if frame.sample_rate == self._pcm_rate:
                self.messages_out += 1
                ws.send(_BINARY, frame.audio)
                return
            # (_fast_ser is set: this writer is only chosen with one, see _audio_writer.)
            out = self._fast_ser.serialize_audio(frame)  # type: ignore[union-attr]
            if out is None:
                return
            cls = out.__class__
            if cls is bytes:
                self.messages_out += 1
                ws.send(_BINARY, out)
            elif cls is list:
                for m in out:
                    self._write(m)  # type: ignore[arg-type]
            else:
                self.messages_out += 1
                ws.send(_TEXT, out)
        except Exception as exc:
            logger.debug("%s: send failed: %r", self.name, exc)
            self._output.peer_gone()

    async def _socket_close(self) -> None:
        self._listener.close()
