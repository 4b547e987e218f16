"""WebsocketTransport: one call over one aiohttp WebSocket (server or client side).

The reader loop (:meth:`WebsocketTransport.read_messages`) decodes each message
with the serializer and hands the frame to the input processor synchronously;
it never waits on the pipeline. Writes are synchronous from the output's point
of view: aiohttp puts an uncompressed frame on the socket before its only await
(the drain wait), so :func:`~flowcat.transports.drive` finishes nearly every
write without a task. A closed socket ends the call: ``CancelTaskFrame`` by
default, ``EndTaskFrame`` with ``end_on_disconnect``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType

from .._ratelimit import RateLimitedLog
from ..errors import ConfigError
from ..frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputDTMFFrame,
    OutputDTMFUrgentFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    TransferCallFrame,
    TTSStoppedFrame,
)
from ..runtime import FrameProcessor
from ..serializers import FastSerializer, RawPCMSerializer, Serializer
from ._drive import Pending, drive
from ._flow import WriteFlow
from ._input import BaseInputTransport
from ._output import BaseOutputTransport
from ._params import TransportParams
from ._transport import BaseTransport

__all__ = ["WebsocketInputTransport", "WebsocketOutputTransport", "WebsocketParams", "WebsocketTransport"]

logger = logging.getLogger("flowcat.transports.websocket")
_BAD_MESSAGE = RateLimitedLog(logger)  # per call: the first 20 in full, then one in every 1000

# Frames (besides audio) whose protocol message the output writes.
_WRITTEN = (
    InterruptionFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    OutputDTMFFrame,
    OutputDTMFUrgentFrame,
    TTSStoppedFrame,
    TransferCallFrame,
    EndFrame,
    CancelFrame,
)


@dataclass(kw_only=True)
class WebsocketParams(TransportParams):
    """Parameters of a WebSocket transport."""

    serializer: Serializer | None = None
    """The wire format (a :class:`~flowcat.serializers.Serializer`; a
    :class:`~flowcat.serializers.FastSerializer` gets the synchronous hot path);
    default :class:`RawPCMSerializer` at the output rate."""
    end_on_disconnect: bool = False
    """A closed socket ends the call with an EndFrame (drain) instead of a CancelFrame."""
    compress: bool = False
    """Allow permessage-deflate (costs CPU per audio message). Default False."""
    max_msg_size: int = 4 * 1024 * 1024
    """Largest accepted message (bytes)."""
    heartbeat_secs: float | None = None
    """Send WebSocket pings this often; None disables."""
    write_stall_timeout_secs: float | None = 10.0
    """While a write is blocked (the peer stopped reading and the socket's buffer is
    full) bot audio is dropped; after this many seconds blocked the connection is
    aborted and the call ends. None: wait forever. Default 10."""


class WebsocketInputTransport(BaseInputTransport):
    """Input side of a :class:`WebsocketTransport`."""

    def __init__(self, transport: WebsocketTransport, params: WebsocketParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    async def start(self, frame: StartFrame) -> None:
        await self._transport._setup(frame)
        await super().start(frame)
        await self._transport._input_started()

    def _detach(self) -> None:
        super()._detach()
        self._transport = None  # type: ignore[assignment]


class WebsocketOutputTransport(BaseOutputTransport):
    """Output side of a :class:`WebsocketTransport`."""

    def __init__(self, transport: WebsocketTransport, params: WebsocketParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    async def start(self, frame: StartFrame) -> None:
        await self._transport._setup(frame)
        await super().start(frame)

    def write_audio(self, frame: Any) -> None:
        self._transport._send_frame(frame)

    def write_frame(self, frame: Frame) -> None:
        if isinstance(frame, _WRITTEN) and not isinstance(frame, EndFrame | CancelFrame):
            self._transport._send_frame(frame)

    def close_transport(self, frame: EndFrame | CancelFrame) -> None:
        self._transport._close(frame)

    def _detach(self) -> None:
        super()._detach()
        transport = self._transport
        if transport is not None:
            transport._output_detached()
        self._transport = None  # type: ignore[assignment]


class WebsocketTransport(BaseTransport, WriteFlow):
    """A call over one aiohttp WebSocket (``web.WebSocketResponse`` or client socket).

    Events: ``on_client_connected(transport)``, ``on_client_disconnected(transport)``,
    ``on_bad_message(transport, data, exc)``.

    Args:
        websocket: The socket (may be set later with :meth:`attach`).
        params: Transport parameters (the serializer among them).
        name: Name for logs.
    """

    _event_names = ("on_client_connected", "on_client_disconnected", "on_bad_message")

    # What each message in and out reads, in the object rather than its dict.
    __slots__ = (
        "messages_in", "_fast_ser", "_serializer", "_input", "_output", "_closing",
        "messages_out", "_ws", "congested", "_raw_in", "_raw_align", "_raw_submit", "_raw_rate",
        "_raw_channels",
    )

    def __init__(
        self, websocket: Any = None, params: WebsocketParams | None = None, *, name: str | None = None
    ) -> None:
        params = params or WebsocketParams()
        super().__init__(params, name=name)
        self._wparams = params
        self._ws = websocket
        ser = params.serializer
        if ser is None:
            ser = RawPCMSerializer(params.audio_out_sample_rate)
        elif not isinstance(ser, Serializer):
            raise ConfigError(
                f"WebsocketParams.serializer must be a flowcat.serializers.Serializer, not {type(ser).__name__}"
            )
        self._serializer: Serializer = ser
        # The synchronous fast path where the serializer declares it (decided once:
        # the per-message code reads this slot, the same object, and probes nothing).
        self._fast_ser: FastSerializer | None = ser if isinstance(ser, FastSerializer) else None
        self._input = WebsocketInputTransport(self, params, name=f"{self.name}::input")
        self._output = WebsocketOutputTransport(self, params, name=f"{self.name}::output")
        self._setup_done = False
        self._closing = False
        self._disconnected = False
        self.bad_messages = 0
        """Messages that could not be decoded (logged and skipped)."""
        self.messages_in = 0
        self.messages_out = 0
        WriteFlow.__init__(self)
        self._audio_out: Callable[[OutputAudioRawFrame], None] | None = None
        self._raw_in: WebsocketInputTransport | None = None
        """The input, while binary messages are its audio as they come (see ``feed``)."""
        self._raw_align = 2
        self._raw_submit: Callable[[FrameProcessor, Frame], None] | None = None
        self._raw_rate = 0
        self._raw_channels = 1
        ser.sender = self.send_message

    # ----------------------------------------------------------------- public

    @property
    def websocket(self) -> Any:
        """The underlying aiohttp WebSocket."""
        return self._ws

    @property
    def serializer(self) -> Serializer:
        """The wire format."""
        return self._serializer

    def attach(self, websocket: Any) -> None:
        """Set the socket (client transports connect after construction)."""
        self._ws = websocket

    def input(self) -> WebsocketInputTransport:
        return self._input

    def output(self) -> WebsocketOutputTransport:
        return self._output

    async def send_message(self, message: str | bytes) -> None:
        """Write one raw message now (carrier replies, tests)."""
        self._write(message)

    async def read_messages(self) -> None:
        """Read the socket until it closes, feeding the input; then end the call.

        Runs in the connection's handler task (server) or one call-owned task
        (client). Never waits on the pipeline.
        """
        ws = self._ws
        feed = self.feed
        binary, text = WSMsgType.BINARY, WSMsgType.TEXT
        try:
            async for msg in ws:
                t = msg.type
                if t is binary or t is text:
                    feed(msg.data)
                elif t is WSMsgType.ERROR:
                    logger.warning("%s: websocket error: %s", self.name, ws.exception())
                    break
        except Exception as exc:  # connection reset mid-read
            logger.debug("%s: reader stopped: %r", self.name, exc)
        finally:
            await self.handle_disconnect()

    def feed(self, data: str | bytes) -> None:
        """Decode one received message and push its frame (synchronous; never waits)."""
        self.messages_in += 1
        inp = self._raw_in
        if inp is not None and data.__class__ is bytes and inp.audio_passthrough:
            # The serializer's ``passthrough_input``: a binary message of whole samples
            # is input audio at the input's own rate, as it is: no decode call, and the
            # input's ``push_input_frame`` checks are already known to pass (see
            # ``BaseInputTransport.audio_submitter``).
            n = len(data)
            if n and not n % self._raw_align:
                inp.audio_frames_in += 1
                self._raw_submit(inp, InputAudioRawFrame(data, self._raw_rate, self._raw_channels))  # type: ignore[misc]
                return
        frame: Any  # a Frame, None, or an awaitable of one (a reply is sent first)
        try:
            # Method calls, not stored bound methods: one object less to touch.
            fast = self._fast_ser
            frame = fast.deserialize_now(data) if fast is not None else self._serializer.deserialize(data)
            decoded = isinstance(frame, Frame)  # the normal case: one check per message
            if not decoded and inspect.iscoroutine(frame):
                frame = drive(frame, "deserialize")
        except Exception as exc:
            self.bad_message(data, exc)
            return
        if decoded or isinstance(frame, Frame):
            self._input.push_input_frame(frame)
        elif isinstance(frame, Pending):
            frame.task.add_done_callback(self._decoded_late)

    # ------------------------------------------------------ socket seam
    # A transport over another WebSocket library overrides these three.

    def _socket_open(self) -> bool:
        ws = self._ws
        return ws is not None and not ws.closed

    def _socket_write(self, message: str | bytes) -> None:
        ws = self._ws
        sent = drive(ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message), "send")
        if sent.__class__ is Pending:
            self._write_blocked(sent.task)

    async def _socket_close(self) -> None:
        await self._ws.close()

    # --------------------------------------------------------------- internal

    def _decoded_late(self, task: Any) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        frame = task.result()
        if isinstance(frame, Frame):
            self._input.push_input_frame(frame)

    def bad_message(self, data: Any, exc: Exception) -> None:
        """A received message that could not be decoded: counted in :attr:`bad_messages`,
        logged (rate-limited), ``on_bad_message`` fired; the call goes on."""
        self.bad_messages += 1
        n = self.bad_messages
        shown = data[:64] if isinstance(data, bytes | str) else data
        _BAD_MESSAGE(n, "%s: skipped malformed message #%d (%s): %r", self.name, n, exc, shown)
        if self.has_event_handler("on_bad_message"):
            drive(self._call_event_handler("on_bad_message", data, exc), "event")

    async def _setup(self, frame: StartFrame) -> None:
        if self._setup_done:
            return
        self._setup_done = True
        await self._serializer.setup(frame)
        self._audio_out = self._audio_writer()
        out = self._output
        if self._audio_out is not None and type(out).write_audio is WebsocketOutputTransport.write_audio:
            # The output's sends skip the generic frame path.
            out.set_audio_writer(self._audio_out)

    def _audio_writer(self) -> Callable[[OutputAudioRawFrame], None] | None:
        """One call that serializes a bot audio chunk and writes it (the output's
        ``write_audio`` on the hot path), or None without a :class:`FastSerializer`."""
        ser = self._fast_ser
        if ser is None:
            return None
        socket_open, socket_write, write = self._socket_open, self._socket_write, self._write
        over = self._buffer_check()

        def write_audio(frame: OutputAudioRawFrame) -> None:
            if self._closing or not socket_open():
                return
            if (over is not None and over()) or self.congested:
                # The peer is not reading: real-time audio is dropped, not buffered.
                self.audio_dropped += 1
                return
            try:
                out = ser.serialize_audio(frame)
                if out is None:
                    return
                if out.__class__ is list:
                    for m in out:
                        write(m)
                    return
                self.messages_out += 1
                socket_write(out)  # type: ignore[arg-type]  # (a list went above)
            except Exception as exc:
                logger.debug("%s: send failed: %r", self.name, exc)
                self._output.peer_gone()

        return write_audio

    async def _input_started(self) -> None:
        inp = self._input
        fast = self._fast_ser
        raw = fast.passthrough_input if fast is not None else None
        submit = inp.audio_submitter()
        if raw is not None and submit is not None and raw == (inp.sample_rate, inp.num_channels):
            self._raw_in = inp
            self._raw_submit = submit
            self._raw_rate, self._raw_channels = raw
            self._raw_align = 2 * inp.num_channels
        await self._call_event_handler("on_client_connected")

    async def handle_disconnect(self) -> None:
        """The connection is gone (called by the reader, once it ends): stop sending,
        end the call (cancel, or end with ``end_on_disconnect``) and fire
        ``on_client_disconnected``. Only the first call acts."""
        if self._disconnected:
            return
        self._disconnected = True
        self._stall.disarm()
        self._output.peer_gone()
        self._input.peer_closed(end=self._wparams.end_on_disconnect)
        try:
            await self._call_event_handler("on_client_disconnected")
        finally:
            self._after_disconnect()

    def _output_detached(self) -> None:
        """The call's task is over: nothing writes bot audio any more. Drop the fused
        writer (a closure or bound method over this transport: a cycle through it)."""
        self._audio_out = None

    def _after_disconnect(self) -> None:
        """The peer is gone and its event fired: drop what ties this transport into a
        cycle (the serializer's sender, the event handlers, which may close over it)."""
        ser = self._serializer
        if getattr(ser, "sender", None) == self.send_message:
            ser.sender = None
        self._clear_event_handlers()

    def _send_frame(self, frame: Frame) -> None:
        if self._closing or not self._socket_open():
            return
        writer = self._audio_out
        if writer is not None and isinstance(frame, OutputAudioRawFrame):
            writer(frame)  # the fused writer (same checks, flow control)
            return
        try:
            drive(self._emit(frame), "send")
        except Exception as exc:
            logger.debug("%s: send failed: %r", self.name, exc)
            self._output.peer_gone()

    async def _emit(self, frame: Frame) -> None:
        out = await self._serializer.serialize(frame)
        if out is None:
            return
        if isinstance(out, list):
            for m in out:
                self._write(m)
        else:
            self._write(out)

    def _write(self, message: str | bytes) -> None:
        if not self._socket_open():
            return
        self.messages_out += 1
        self._socket_write(message)

    def _close(self, frame: EndFrame | CancelFrame) -> None:
        if self._closing:
            return
        try:
            drive(self._close_async(frame), "close")
        except Exception as exc:
            logger.debug("%s: close failed: %r", self.name, exc)

    async def _close_async(self, frame: EndFrame | CancelFrame) -> None:
        if not self._socket_open():
            self._closing = True
            return
        try:
            out = await self._serializer.serialize(frame)
            if out is not None:
                for m in out if isinstance(out, list) else (out,):
                    self._write(m)
        except Exception:
            logger.exception("%s: serializing %s failed", self.name, frame)
        self._closing = True
        await self._socket_close()
