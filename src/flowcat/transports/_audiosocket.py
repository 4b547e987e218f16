"""AudioSocketTransport: one Asterisk AudioSocket call over one TCP connection.

The protocol is at https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/
(summarised in :mod:`flowcat.transports._audiosocket_protocol`). The
:class:`~flowcat.transports.AudioSocketListener` of the connection hands each
message to :meth:`AudioSocketTransport.feed_message` synchronously:

* audio (kinds 0x10–0x18) becomes an ``InputAudioRawFrame`` at the kind's rate.
  The input resamples it to the pipeline rate, as it does for every transport.
  The kind also sets the call's wire format (see below);
* a DTMF digit (0x03) becomes an ``InputDTMFFrame``, the frame the carrier
  serializers produce;
* a hang-up (0x00) ends the call: it is cancelled, or ended with
  ``end_on_disconnect``;
* an error (0xff) is logged with its code. Malformed messages and unknown kinds
  are logged, counted in ``bad_messages`` and skipped.

Bot audio goes back in the kind the caller's audio arrives in: Asterisk picks the
kind from the channel's format (``res_audiosocket.c``) and the channel expects
that format back. Which rate bot audio is sent at, by precedence:

1. ``out_rate``, when set: always that rate, whatever the caller sends;
2. the rate of the caller's latest audio message. A change mid-call is logged
   once per change and followed: audio already queued is resampled to the new
   rate, and the chunk size and pacing follow it;
3. ``sample_rate`` until the caller's first audio message arrives.

The base output resamples bot audio from the pipeline's output rate to that rate,
cuts it into ``audio_out_chunk_ms`` chunks (20 ms: 320 bytes at 8 kHz, 640 at
16 kHz) and paces them on the process's shared output clock; one chunk, one
message. AudioSocket has no clear message, so an interruption only empties the
queue; at most the send-ahead window (40 ms) has already gone out. An EndFrame
waits behind the queued audio, then 0x00 is sent and the socket closed. A
CancelFrame does the same at once.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from .._ratelimit import RateLimitedLog
from ..errors import ConfigError
from ..frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    KeypadEntry,
    OutputAudioRawFrame,
    StartFrame,
)
from ._attach import feed_until_closed
from ._audiosocket_protocol import (
    AUDIO_RATES,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    RATE_KINDS,
    AudioSocketListener,
    describe_error,
)
from ._drive import drive
from ._input import BaseInputTransport
from ._output import BaseOutputTransport
from ._params import TransportParams
from ._transport import BaseTransport

__all__ = [
    "AudioSocketInputTransport",
    "AudioSocketOutputTransport",
    "AudioSocketParams",
    "AudioSocketTransport",
]

logger = logging.getLogger("flowcat.transports.audiosocket")
_BAD_MESSAGE = RateLimitedLog(logger)  # per call: the first 20 in full, then one in every 1000
_RATE_CHANGE = RateLimitedLog(logger, level=logging.INFO)

_KEYS = {k.value: k for k in KeypadEntry}


@dataclass(kw_only=True)
class AudioSocketParams(TransportParams):
    """Parameters of an :class:`AudioSocketTransport`.

    ``audio_out_sample_rate`` is ignored: the wire rate of bot audio is ``out_rate``
    if set, else the rate of the caller's audio, else ``sample_rate``.
    """

    sample_rate: int = 8000
    """Wire rate (Hz) of bot audio until the caller's first audio message shows the
    call's rate; its kind follows (8000 → 0x10, 16000 → 0x12, …). Caller audio of any
    audio kind is accepted at its own rate. Default 8000."""
    out_rate: int | None = None
    """Wire rate (Hz) that bot audio is always sent at, whatever kind the caller's
    audio arrives in. None (the default): follow the caller's audio."""
    end_on_disconnect: bool = False
    """A hang-up or closed socket ends the call with an EndFrame instead of cancelling it."""

    def __post_init__(self) -> None:
        for name in ("sample_rate", "out_rate"):
            rate = getattr(self, name)
            if rate is not None and rate not in RATE_KINDS:
                rates = ", ".join(str(r) for r in RATE_KINDS)
                raise ConfigError(f"AudioSocket {name} must be one of {rates}, got {rate!r}")
        top = self.out_rate or max(RATE_KINDS)
        if top * self.audio_out_chunk_ms // 1000 * 2 * self.audio_out_channels > 0xFFFF:
            raise ConfigError(
                f"audio_out_chunk_ms={self.audio_out_chunk_ms} does not fit one AudioSocket "
                f"message at {top} Hz (at most 65535 bytes)"
            )


class AudioSocketInputTransport(BaseInputTransport):
    """Input side of an :class:`AudioSocketTransport`."""

    def __init__(self, transport: AudioSocketTransport, params: AudioSocketParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self._transport._input_started()

    def _detach(self) -> None:
        super()._detach()
        self._transport = None  # type: ignore[assignment]


class AudioSocketOutputTransport(BaseOutputTransport):
    """Output side of an :class:`AudioSocketTransport`: audio only (Asterisk takes nothing else)."""

    def __init__(self, transport: AudioSocketTransport, params: AudioSocketParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    @property
    def wire_rate(self) -> int:
        """The rate (Hz) bot audio is sent at now."""
        return self._params.audio_out_sample_rate or self._rate

    def set_wire_rate(self, rate: int) -> None:
        """Send bot audio at ``rate`` Hz from now on (one of the AudioSocket rates).

        Before the StartFrame this sets the rate the output starts at (its
        ``audio_out_sample_rate``). After it, the chunk size, pacing and silence
        follow ``rate``, audio already queued is resampled to it, and later bot
        audio is resampled from the pipeline rate straight to it.
        """
        self._params.audio_out_sample_rate = rate  # what wire_rate reports
        self.set_sample_rate(rate)

    def write_audio(self, frame: OutputAudioRawFrame) -> None:
        self._transport._write_audio(frame.audio)

    def write_frame(self, frame: Frame) -> None:
        """Nothing to write: AudioSocket has no clear, mark or DTMF message towards Asterisk."""

    def close_transport(self, frame: EndFrame | CancelFrame) -> None:
        self._transport._listener.hang_up()

    def _detach(self) -> None:
        super()._detach()
        self._transport = None  # type: ignore[assignment]


class AudioSocketTransport(BaseTransport):
    """A call over one AudioSocket connection (see the module docstring).

    Events: ``on_client_connected(transport)``, ``on_client_disconnected(transport)``,
    ``on_bad_message(transport, kind, payload, reason)``.

    Args:
        listener: The connection's :class:`AudioSocketListener` (UUID received).
        params: Transport parameters.
        name: Name for logs.
    """

    _event_names = ("on_client_connected", "on_client_disconnected", "on_bad_message")

    def __init__(
        self,
        listener: AudioSocketListener,
        params: AudioSocketParams | None = None,
        *,
        name: str | None = None,
    ) -> None:
        params = params or AudioSocketParams()
        wire = params.out_rate or params.sample_rate
        if params.audio_out_sample_rate != wire:
            params = dataclasses.replace(params, audio_out_sample_rate=wire)
        super().__init__(params, name=name or listener.name)
        self._aparams = params
        self._listener = listener
        self._kind = RATE_KINDS[wire]
        self._headers: dict[int, bytes] = {}
        self._caller_kind: int | None = None
        self._disconnected = False
        self._input = AudioSocketInputTransport(self, params, name=f"{self.name}::input")
        out_params = dataclasses.replace(params)  # its own: the wire rate changes with the call
        self._output = AudioSocketOutputTransport(self, out_params, name=f"{self.name}::output")
        self.bad_messages = 0
        """Messages that were malformed or of an unknown kind (logged and skipped)."""
        self.rate_changes = 0
        """Times the caller's audio changed kind mid-call (the first audio is not a change)."""
        self.messages_in = 0
        self.messages_out = 0
        self.audio_dropped = 0
        """Chunks not written because the peer stopped reading (socket buffer full)."""

    @property
    def listener(self) -> AudioSocketListener:
        """The connection's listener."""
        return self._listener

    @property
    def call_id(self) -> str | None:
        """The call's UUID (string form)."""
        return self._listener.call_id

    @property
    def caller_rate(self) -> int | None:
        """Rate (Hz) of the caller's latest audio message; None before the first."""
        kind = self._caller_kind
        return None if kind is None else AUDIO_RATES[kind]

    @property
    def bot_rate(self) -> int:
        """Rate (Hz) bot audio is sent at now (see the module docstring for which)."""
        return self._output.wire_rate

    def input(self) -> AudioSocketInputTransport:
        return self._input

    def output(self) -> AudioSocketOutputTransport:
        return self._output

    async def read_messages(self) -> None:
        """Feed the input from the listener until the connection is gone; then end the call.

        Waits for the StartFrame to reach the input, then attaches. Of the audio that
        arrived while the pipeline was starting, only the last
        ``audio_out_send_ahead_chunks`` messages are fed, as on the picows transport.
        """
        await feed_until_closed(self, self._listener, max(1, self._aparams.audio_out_send_ahead_chunks))

    def feed_message(self, kind: int, payload: bytes) -> None:
        """Handle one received message (synchronous; never waits)."""
        self.messages_in += 1
        rate = AUDIO_RATES.get(kind)
        if rate is not None and payload and not len(payload) & 1:
            if kind != self._caller_kind:
                self._caller_format(kind, rate)
            inp = self._input
            if rate == inp.sample_rate:
                inp.push_input_frame(InputAudioRawFrame(payload, rate, 1))
            else:
                inp.push_audio(payload, rate)  # resampled to the pipeline rate
            return
        self._control(kind, payload, rate)

    # --------------------------------------------------------------- internal

    def _caller_format(self, kind: int, rate: int) -> None:
        """The caller's audio arrived in ``kind``: the first audio, or a change."""
        before = self._caller_kind
        self._caller_kind = kind
        follow = self._aparams.out_rate is None
        if before is None:
            logger.debug("%s: caller audio is kind 0x%02x (%d Hz)", self.name, kind, rate)
        else:
            self.rate_changes += 1
            n = self.rate_changes
            _RATE_CHANGE(
                n,
                "%s: caller audio changed from kind 0x%02x (%d Hz) to 0x%02x (%d Hz); bot audio %s %d Hz",
                self.name,
                before,
                AUDIO_RATES[before],
                kind,
                rate,
                "follows at" if follow else "stays at out_rate",
                rate if follow else self.bot_rate,
            )
        if follow and rate != self._output.wire_rate:
            self._kind = kind
            self._headers.clear()
            self._output.set_wire_rate(rate)

    def _control(self, kind: int, payload: bytes, rate: int | None) -> None:
        if kind == KIND_DTMF:
            key = _KEYS.get(payload.decode("latin-1").upper()) if len(payload) == 1 else None
            if key is None:
                self._bad(kind, payload, "DTMF payload is not one keypad digit")
            else:
                self._input.push_input_frame(InputDTMFFrame(button=key))
        elif kind == KIND_HANGUP:
            logger.info("%s: the peer hung up", self.name)
            self._listener.peer_hung_up()
        elif kind == KIND_ERROR:
            logger.warning(
                "%s: the peer reported an error: %s (%s)",
                self.name,
                payload.hex() or "-",
                describe_error(payload),
            )
        elif rate is not None:
            self._bad(kind, payload, "audio payload of odd or zero length")
        elif kind == KIND_UUID:
            logger.debug("%s: ignored a second UUID message", self.name)
        else:
            self._bad(kind, payload, "unknown message kind")

    def _bad(self, kind: int, payload: bytes, reason: str) -> None:
        self.bad_messages += 1
        n = self.bad_messages
        _BAD_MESSAGE(
            n,
            "%s: skipped message #%d, kind 0x%02x with %d bytes (%s): %r",
            self.name,
            n,
            kind,
            len(payload),
            reason,
            payload[:32],
        )
        if self.has_event_handler("on_bad_message"):
            drive(self._call_event_handler("on_bad_message", kind, payload, reason), "event")

    def _write_audio(self, audio: bytes) -> None:
        lis = self._listener
        n = len(audio)
        if not lis.writable or not n:
            if lis.is_open:
                self.audio_dropped += 1  # the peer stopped reading: do not queue real-time audio
            return
        header = self._headers.get(n)
        if header is None:
            header = self._headers[n] = bytes((self._kind, n >> 8, n & 0xFF))
        lis.tcp.write(header + audio)  # type: ignore[union-attr]
        self.messages_out += 1

    async def _input_started(self) -> None:
        await self._call_event_handler("on_client_connected")

    async def handle_disconnect(self) -> None:
        """The connection is gone: stop sending, end the call (cancel, or end with
        ``end_on_disconnect``) and fire ``on_client_disconnected``. Only the first call acts."""
        if self._disconnected:
            return
        self._disconnected = True
        self._output.peer_gone()
        self._input.peer_closed(end=self._aparams.end_on_disconnect, reason="AudioSocket peer hung up")
        try:
            await self._call_event_handler("on_client_disconnected")
        finally:
            # No event follows: drop the handlers (they may close over this transport).
            self._clear_event_handlers()
