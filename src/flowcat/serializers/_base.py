"""The serializer interface shared by every carrier, and the pieces carriers build on.

A serializer turns a carrier's WebSocket messages into frames and frames into
messages. It keeps pipecat's interface (``setup``, ``serialize``, ``deserialize``)
and adds what a telephony transport needs around it:

* :meth:`FrameSerializer.handshake` reads the carrier's connect/start messages and
  returns a :class:`CallInfo` once the call is known;
* replies the carrier expects *during* a call (Genesys ``pong``/``closed``, the
  ``opened`` answer) go through :attr:`FrameSerializer.sender` when the transport
  set it, else they wait in :meth:`FrameSerializer.take_replies`;
* :meth:`FrameSerializer.hang_up` ends the call over the carrier's REST API.

The carrier's HTTP side (answer webhook, request checks, busy refusal) is its
:class:`~flowcat.serializers.Carrier`, not the serializer's.

``serialize`` returns one message (``str`` for a text frame, ``bytes`` for a binary
frame), a list of messages to send in order (media followed by a mark, or carriers
that need fixed-size binary messages), or None when there is nothing to send.

Malformed input never raises: it is logged (truncated), counted and skipped.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

from .._ratelimit import RateLimitedLog
from ..frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    TransferCallFrame,
    TTSStoppedFrame,
)
from ._audio import AudioDecoder, AudioEncoder, bytes_per_sample
from ._call import CallInfo, Wire, WireOut, dtmf_frame, truncate
from ._contract import FastSerializer
from ._framer import Framer
from ._marks import MarkTracker

if TYPE_CHECKING:
    import aiohttp

    from ._carrier import Carrier

__all__ = ["CallInfo", "FrameSerializer", "Wire", "WireOut", "dtmf_frame", "truncate"]

logger = logging.getLogger("flowcat.serializers")

_BAD_INPUT = RateLimitedLog(logger)  # the first 20 bad inputs per call in full, then one in every 1000


class FrameSerializer(FastSerializer):
    """Base of every carrier serializer (the :class:`FastSerializer` contract plus telephony helpers).

    Args:
        stream_id: The stream id, when known before the handshake.
        call_id: The call id for REST hang-up, when known before the handshake.
        auto_hang_up: Hang the call up over REST on :class:`EndFrame`/:class:`CancelFrame`.
        api_base: Base URL of the carrier's REST API (tests point it at a local server).
        mark_every_ms: Send a playback mark after output audio whenever this much audio
            (ms) has been sent since the last one; 0 sends marks only at
            :class:`TTSStoppedFrame` and on :meth:`mark`. Ignored where the carrier has
            no marks.
        session: A shared ``aiohttp.ClientSession`` for REST calls (one per process
            is best); without one a short-lived session is opened per hang-up.
        transfer_fallback: What a :class:`TransferCallFrame` does where the carrier cannot
            transfer over its API, or the transfer request fails: ``"hang_up"`` (default:
            a warning, then the call is ended as at the end of the pipeline) or
            ``"continue"`` (a warning; the call stays with the agent).

    Attributes:
        sender: Set by the transport to a coroutine function that sends one message;
            used for replies the carrier expects (pong, opened, …). When None the
            replies collect in :meth:`take_replies`.
        marks: Playback tracking: ``marks.played_up_to`` is how much bot audio (s)
            the carrier confirmed as played; ``marks.on_played`` is called with
            ``(mark_name, seconds)`` for each confirmation.
        call_info: What the handshake learned, or None before it completed.
        remote_ended: The carrier said the call/stream ended (no hang-up is sent then).
        transferred_to: The target the carrier accepted a transfer to (then no hang-up is
            ever sent: it would end the transferred call).
        transfer_task: The task of the transfer request (True if accepted), once one was asked.
        bad_inputs: How many malformed or unexpected messages were skipped.
        dropped_before_start: How many messages that decode to a frame (caller audio,
            DTMF) arrived during the handshake, before the start message, and were dropped
            (the first is logged with the message, the count once the call starts).
    """

    carrier: ClassVar[str] = "carrier"
    default_codec: ClassVar[str] = "PCMU"
    default_rate: ClassVar[int] = 8000
    has_marks: ClassVar[bool] = False

    def __init__(
        self,
        *,
        stream_id: str | None = None,
        call_id: str | None = None,
        auto_hang_up: bool = True,
        api_base: str | None = None,
        mark_every_ms: int = 0,
        session: aiohttp.ClientSession | None = None,
        transfer_fallback: str = "hang_up",
    ) -> None:
        if transfer_fallback not in ("hang_up", "continue"):
            from ..errors import ConfigError

            raise ConfigError(f"transfer_fallback must be 'hang_up' or 'continue', got {transfer_fallback!r}")
        self.transfer_fallback = transfer_fallback
        self.transferred_to: str | None = None
        self.transfer_task: Any = None  # asyncio.Task[bool] of the transfer request, once one was asked
        self.stream_id = stream_id
        self.call_id = call_id
        self.auto_hang_up = auto_hang_up
        self.rest: Carrier | None = None
        """The carrier object that hangs the call up over REST (set by the carrier's
        serializer; None where the carrier has no REST hang-up)."""
        self._api_base = api_base  # for the carrier object (REST)
        self.session = session
        self.sender = None
        self.marks = MarkTracker()
        self.call_info: CallInfo | None = None
        self.remote_ended = False
        self.bad_inputs = 0
        self.dropped_before_start = 0
        self._replies: list[Wire] = []
        self._in_rate = 16000
        self._codec = self.default_codec
        self._rate = self.default_rate
        self._out_codec = self.default_codec
        self._out_rate = self.default_rate
        self._decoder: AudioDecoder | None = None
        self._encoder: AudioEncoder | None = None
        self._framer: Framer | None = None
        self._out_width = bytes_per_sample(self.default_codec)
        self._mark_every = mark_every_ms * self.default_rate // 1000
        self._since_mark = 0
        self._hung_up = False
        self._noted: set[str] = set()

    # ------------------------------------------------------------------ pipecat interface

    async def setup(self, frame: StartFrame) -> None:
        """Learn the pipeline's sample rates from the :class:`StartFrame`."""
        if frame.audio_in_sample_rate != self._in_rate:
            self._in_rate = frame.audio_in_sample_rate
            self._decoder = None

    async def serialize(self, frame: Frame) -> WireOut:
        """Turn an outgoing frame into carrier messages (see the module docstring)."""
        try:
            if isinstance(frame, OutputAudioRawFrame):
                return self._serialize_audio(frame)
            if isinstance(frame, InterruptionFrame):
                self.marks.cleared()
                self._since_mark = 0
                if self._encoder is not None:
                    self._encoder.reset()
                if self._framer is not None:
                    self._framer.reset()
                return self._clear_message()
            if isinstance(frame, EndFrame | CancelFrame):
                return await self._serialize_end(frame)
            if isinstance(frame, TTSStoppedFrame):
                return self._end_of_batch()
            if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
                return self._transport_message(frame.message)
            if isinstance(frame, TransferCallFrame):
                return self._serialize_transfer(frame)
        except Exception as exc:  # never let one frame break the call
            logger.exception("%s: could not serialize %s: %s", self.carrier, frame, exc)
        return None

    def deserialize_now(self, data: str | bytes) -> Frame | None | Awaitable[Frame | None]:
        """:meth:`deserialize` without a coroutine (the transport's fast path).

        Returns the frame or None, or — for a message the carrier answers during the
        call (Genesys ping, open) — a coroutine the caller runs to get the frame.
        """
        try:
            out = self._deserialize(data)
            if inspect.iscoroutine(out):
                return self._guarded(out, data)
            return out
        except Exception as exc:  # malformed input of a shape we did not foresee
            self.bad_input(f"unreadable message ({type(exc).__name__})", data)
            return None

    async def _guarded(self, coro: Awaitable[Frame | None], data: str | bytes) -> Frame | None:
        try:
            return await coro
        except Exception as exc:
            self.bad_input(f"unreadable message ({type(exc).__name__})", data)
            return None

    def serialize_audio(self, frame: OutputAudioRawFrame) -> WireOut:
        """The messages for one chunk of bot audio (the transport's fast path)."""
        try:
            return self._serialize_audio(frame)
        except Exception as exc:  # never let one frame break the call
            logger.exception("%s: could not serialize %s: %s", self.carrier, frame, exc)
            return None

    # ------------------------------------------------------------------ flowcat additions

    async def handshake(self, data: str | bytes) -> CallInfo | None:
        """Feed one message received before the call is known.

        Returns:
            The :class:`CallInfo` once the carrier's start message arrived, else None
            (feed the next message). Replies the carrier expects are sent through
            :attr:`sender` (or queued in :meth:`take_replies`).
        """
        frame = await self.deserialize(data)
        if frame is not None and self.call_info is None:
            self._dropped_before_start(frame, data)
        elif self.dropped_before_start > 1 and self.call_info is not None:
            logger.warning(
                "%s: call %s: %d messages received before the start message were dropped",
                self.carrier,
                self.call_id,
                self.dropped_before_start,
            )
        return self.call_info

    def _dropped_before_start(self, frame: Frame, data: str | bytes) -> None:
        # A frame (caller audio, a DTMF) that arrived before the call is known has no
        # call to go to. The first is logged with the message; the rest are counted
        # and summed up once the call starts.
        self.dropped_before_start += 1
        if self.dropped_before_start == 1:
            logger.warning(
                "%s: dropped %s (received before the start message): %s",
                self.carrier,
                type(frame).__name__,
                truncate(data),
            )

    def take_replies(self) -> list[Wire]:
        """Replies queued because no :attr:`sender` was set (cleared by this call)."""
        out, self._replies = self._replies, []
        return out

    def mark(self, name: str | None = None) -> WireOut:
        """Held-back audio, then a playback mark after everything sent so far.

        Returns None where the carrier has no marks. The name defaults to ``fc-<n>``.
        """
        if not self.has_marks:
            return self._flush()
        self._since_mark = 0
        return self._join(self._flush(), self._mark_message(self.marks.place(name)))

    async def hang_up(self, session: aiohttp.ClientSession | None = None) -> bool:
        """End the call through the carrier's REST API (once).

        Args:
            session: ``aiohttp`` session to use (else :attr:`session`, else a new one).

        Returns:
            True if the carrier accepted the request.
        """
        if self._hung_up:
            return False
        self._hung_up = True
        rest = self.rest
        if rest is None:
            logger.info("%s: no REST hang-up for call %s", self.carrier, self.call_id)
            return False
        return await rest.hang_up(self.call_id, self.call_info, session or self.session)

    def on_upgrade(self, request: Any) -> None:
        """Learn what the accepted media upgrade carried, before the first message.

        Args:
            request: The upgrade request (aiohttp's, or the picows engine's with the
                same ``headers``, ``path`` and ``query``). The default ignores it;
                Genesys keeps ``Audiohook-Organization-Id`` to compare with ``open``.
        """

    # ------------------------------------------------------------------ helpers for carriers

    def bad_input(self, reason: str, raw: object) -> None:
        """Log a skipped message once with context (rate-limited per call)."""
        self.bad_inputs += 1
        n = self.bad_inputs
        if _BAD_INPUT.due(n):  # truncate() copies the input: only for lines that are logged
            _BAD_INPUT(
                n,
                "%s: skipped %s (stream %s, bad input #%d): %s",
                self.carrier,
                reason if len(reason) <= 300 else reason[:300] + "…",  # a reason may quote the input
                self.stream_id,
                n,
                truncate(raw),
            )

    def note(self, key: str, message: str, *args: object) -> None:
        """Log once per call which form of an unconfirmed detail arrived."""
        if key not in self._noted:
            self._noted.add(key)
            logger.info("%s: " + message, self.carrier, *args)

    async def reply(self, message: Wire) -> None:
        """Send a reply the carrier expects (or queue it, see :meth:`take_replies`)."""
        if self.sender is not None:
            await self.sender(message)
        else:
            self._replies.append(message)

    def set_call(self, info: CallInfo) -> None:
        """Record the handshake result and adopt its ids and audio format."""
        self.call_info = info
        if info.stream_id:
            self.stream_id = info.stream_id
        if info.call_id:
            self.call_id = info.call_id
        self.set_input_format(info.codec, info.sample_rate)
        self._on_stream_id()
        logger.debug(
            "%s: call %s stream %s (%s/%d)",
            self.carrier,
            info.call_id,
            info.stream_id,
            info.codec,
            info.sample_rate,
        )

    def set_input_format(self, codec: str, rate: int) -> None:
        """Set the caller audio format (rebuilds the input decoder)."""
        self._codec, self._rate = codec, rate
        self._decoder = None

    def set_output_format(self, codec: str, rate: int) -> None:
        """Set the bot audio format sent to the carrier (rebuilds the encoder)."""
        if self._mark_every:
            self._mark_every = self._mark_every * rate // self._out_rate
        self._out_codec, self._out_rate = codec, rate
        self._out_width = bytes_per_sample(codec)
        self._encoder = None

    def decode(self, payload: bytes) -> Frame | None:
        """Carrier audio bytes → :class:`InputAudioRawFrame` at the pipeline input rate."""
        dec = self._decoder
        if dec is None:
            dec = self._decoder = AudioDecoder(self._codec, self._rate, self._in_rate)
        return dec.frame(payload)

    def encode(self, frame: OutputAudioRawFrame) -> bytes:
        """Pipeline audio → carrier codec bytes at the carrier rate."""
        enc = self._encoder
        if enc is None or enc.in_rate != frame.sample_rate:
            enc = self._encoder = AudioEncoder(self._out_codec, frame.sample_rate, self._out_rate)
        return enc.encode(frame.audio)

    def _serialize_audio(self, frame: OutputAudioRawFrame) -> WireOut:
        data = self.encode(frame)
        if not data:
            return None
        framer = self._framer
        if framer is None:
            return self._emit(data)
        chunks = framer.push(data)
        if not chunks:
            return None
        if len(chunks) == 1:
            return self._emit(chunks[0])
        out: WireOut = None
        for chunk in chunks:
            out = self._join(out, self._emit(chunk))
        return out

    def _emit(self, data: bytes) -> WireOut:
        """One media message for ``data`` (plus a periodic mark when one is due)."""
        self.marks.sent(len(data) // self._out_width, self._out_rate)
        msg = self._media_message(data)
        if self._mark_every:
            self._since_mark += len(data) // self._out_width
            if self._since_mark >= self._mark_every:
                self._since_mark = 0
                return self._join(msg, self._mark_message(self.marks.place()))
        return msg

    def _flush(self) -> WireOut:
        """Send the audio a framer holds back (padded with silence to a whole frame)."""
        framer = self._framer
        if framer is None:
            return None
        rest = framer.flush()
        return self._emit(rest) if rest else None

    @staticmethod
    def _join(first: WireOut, second: WireOut) -> WireOut:
        if first is None:
            return second
        if second is None:
            return first
        a = first if isinstance(first, list) else [first]
        return a + (second if isinstance(second, list) else [second])

    def _end_of_batch(self) -> WireOut:
        """End of a bot utterance: send held-back audio, then a mark (where supported)."""
        out = self._flush()
        if self.has_marks and self.marks.sent_samples > self.marks.marked_samples:
            self._since_mark = 0
            out = self._join(out, self._mark_message(self.marks.place()))
        return out

    async def _serialize_end(self, frame: EndFrame | CancelFrame) -> WireOut:
        out = self._flush()
        if self.auto_hang_up and self.rest is not None and not self.remote_ended:
            await self.hang_up()
        return self._join(out, self._end_message(frame))

    def _serialize_transfer(self, frame: TransferCallFrame) -> WireOut:
        """Hand the call to ``frame.target`` over the carrier's REST API (the audio before the
        frame was sent already: the output releases it in order). The request runs in a task
        of its own (:attr:`transfer_task`), never in the output's write path."""
        if self.transferred_to is not None or self._hung_up or self.transfer_task is not None:
            return self._flush()
        import asyncio

        self.transfer_task = asyncio.get_running_loop().create_task(self._transfer(frame.target))
        return self._flush()

    async def _transfer(self, target: str) -> bool:
        """Accepted: the call is no longer ours, no hang-up follows. Else ``transfer_fallback``."""
        rest = self.rest
        if rest is not None and rest.rest_transfer:
            if await rest.transfer(self.call_id, self.call_info, target, self.session):
                self.transferred_to = target
                self._hung_up = True  # a hang-up now would end the transferred call
                logger.info("%s: call %s transferred to %s", self.carrier, self.call_id, target)
                return True
            why = "the transfer request failed"
        else:
            why = "the carrier has no transfer over its API"
        if self.transfer_fallback == "continue":
            logger.warning("%s: call %s: cannot transfer to %s (%s); the call stays with the agent",
                           self.carrier, self.call_id, target, why)
            return False
        logger.warning("%s: call %s: cannot transfer to %s (%s); ending the call",
                       self.carrier, self.call_id, target, why)
        if not self.remote_ended:
            await self.hang_up()
            end = self._end_message(EndFrame())
            send = self.sender
            if end is not None and send is not None:
                for m in end if isinstance(end, list) else (end,):
                    await send(m)
        return False

    def _transport_message(self, message: Any) -> WireOut:
        if isinstance(message, str | bytes):
            return message
        return json.dumps(message, separators=(",", ":"))

    # ------------------------------------------------------------------ carrier hooks

    def _deserialize(self, data: str | bytes) -> Frame | None | Awaitable[Frame | None]:
        """One message to a frame (may be ``async def`` where the carrier awaits a reply)."""
        raise NotImplementedError

    def _media_message(self, data: bytes) -> WireOut:
        raise NotImplementedError

    def _clear_message(self) -> WireOut:
        return None

    def _mark_message(self, name: str) -> WireOut:
        return None

    def _end_message(self, frame: EndFrame | CancelFrame) -> WireOut:
        return None

    def _on_stream_id(self) -> None:
        """Called when the stream id becomes known (precompute message prefixes here)."""
