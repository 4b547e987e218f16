"""SIPTransport: one answered SIP call's media as a flowcat transport.

Caller audio (RTP, reordered and decoded to 8 kHz PCM16 by the call's
:class:`~flowcat.transports.sip.RTPSession`) becomes ``InputAudioRawFrame``\\ s (the
input resamples them to the pipeline rate); RFC 4733 or in-band DTMF becomes
``InputDTMFFrame``. Bot audio is resampled to 8 kHz, cut into 20 ms chunks and
paced by the process's shared :class:`~flowcat.transports.AudioClock`; each chunk is
one RTP packet. While the bot is quiet the output sends silence
(``audio_out_continuous``), so the peer's jitter buffer and NAT bindings stay fed;
an interruption empties the queue at once. When the pipeline ends (EndFrame or
CancelFrame reaching the output) the call is hung up with a BYE; a BYE from the
peer cancels the pipeline (or ends it, with ``end_on_disconnect``).
A ``TransferCallFrame`` reaching the output blind-transfers the call (REFER; see
:mod:`~flowcat.transports.sip._refer`); an ``OutputDTMFFrame`` (in order with the
audio) or ``OutputDTMFUrgentFrame`` (at once) is sent as RFC 4733 events.

``transport.call`` is the :class:`~flowcat.serializers.CallInfo` of the call:
carrier ``"sip"``, ``call_id`` (Call-ID), ``from_number``/``to_number`` (the user
parts of From and To), ``codec``, and in ``extra`` the full ``from``/``to``
header values and the telephone-event payload type.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ...frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    KeypadEntry,
    OutputAudioRawFrame,
    OutputDTMFFrame,
    OutputDTMFUrgentFrame,
    StartFrame,
    TransferCallFrame,
)
from ...serializers import CallInfo
from .._input import BaseInputTransport
from .._output import BaseOutputTransport
from .._params import TransportParams
from .._transport import BaseTransport
from ._media import RTPSession

__all__ = ["SIPInputTransport", "SIPOutputTransport", "SIPParams", "SIPTransport"]

logger = logging.getLogger("flowcat.transports.sip")

WIRE_RATE = 8000


@dataclass(kw_only=True)
class SIPParams(TransportParams):
    """Parameters of a :class:`SIPTransport` (the wire is G.711 at 8 kHz, 20 ms packets:
    ``audio_out_sample_rate`` and ``audio_out_chunk_ms`` are fixed to those)."""

    audio_out_continuous: bool = True
    end_on_disconnect: bool = False
    """A BYE from the peer ends the pipeline with an EndFrame instead of cancelling it."""

    def __post_init__(self) -> None:
        self.audio_out_sample_rate = WIRE_RATE
        self.audio_out_chunk_ms = 20


class CallControl(Protocol):
    """What the transport needs of the SIP call it belongs to."""

    def hang_up(self) -> None: ...

    def input_started(self) -> None: ...

    def transfer(self, target: str) -> None: ...


class SIPInputTransport(BaseInputTransport):
    """Input side of a :class:`SIPTransport`."""

    def __init__(self, transport: SIPTransport, params: SIPParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self._transport._input_started()

    def _detach(self) -> None:
        super()._detach()
        self._transport = None  # type: ignore[assignment]


class SIPOutputTransport(BaseOutputTransport):
    """Output side of a :class:`SIPTransport`: one RTP packet per 20 ms chunk."""

    def __init__(self, transport: SIPTransport, params: SIPParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    def write_audio(self, frame: OutputAudioRawFrame) -> None:
        media = self._transport._media
        if media is not None:
            media.send_pcm(frame.audio)

    def write_frame(self, frame: Frame) -> None:
        cls = frame.__class__
        if cls is OutputDTMFFrame or cls is OutputDTMFUrgentFrame:
            media = self._transport._media
            if media is not None:
                media.send_dtmf(frame.button)  # type: ignore[attr-defined]
        elif cls is TransferCallFrame:
            control = self._transport._control
            if control is not None:
                control.transfer(frame.target)  # type: ignore[attr-defined]

    def close_transport(self, frame: EndFrame | CancelFrame) -> None:
        self._transport._hang_up()

    def _detach(self) -> None:
        super()._detach()
        self._transport = None  # type: ignore[assignment]


class SIPTransport(BaseTransport):
    """The media of one answered SIP call (see the module docstring).

    Built by :class:`~flowcat.transports.sip.SIPServer` for each call it answers and
    handed to the app factory. Events: ``on_client_connected(transport)`` (the
    pipeline started), ``on_client_disconnected(transport)`` (the call ended by
    either side), ``on_dtmf(transport, key)``, ``on_transfer(transport, target,
    status, reason)`` (a transfer's outcome: 2xx done, else failed and the call goes
    on) and ``on_refer(transport, target) -> status`` (the peer asked this side to
    transfer, with ``refer_policy="event"``: the first handler's SIP status is reported).
    """

    _event_names = ("on_client_connected", "on_client_disconnected", "on_dtmf", "on_transfer", "on_refer")

    def __init__(
        self,
        media: RTPSession,
        control: CallControl,
        call: CallInfo,
        params: SIPParams | None = None,
        *,
        name: str | None = None,
    ) -> None:
        params = dataclasses.replace(params) if params is not None else SIPParams()
        super().__init__(params, name=name or f"sip:{call.call_id}")
        self._sparams = params
        self._media: RTPSession | None = media
        self._control: CallControl | None = control
        self.call = call
        self._disconnected = False
        self._input = SIPInputTransport(self, params, name=f"{self.name}::input")
        self._output = SIPOutputTransport(self, params, name=f"{self.name}::output")

    @property
    def media(self) -> RTPSession | None:
        """The call's RTP session (None once the call ended)."""
        return self._media

    def input(self) -> SIPInputTransport:
        return self._input

    def output(self) -> SIPOutputTransport:
        return self._output

    # ------------------------------------------------------------ from RTP

    def on_rtp_audio(self, pcm: bytes) -> None:
        inp = self._input
        if inp.audio_passthrough and inp.sample_rate == WIRE_RATE and inp.num_channels == 1:
            # push_input_frame's fast path without its checks (see its audio_submitter)
            submit = inp.audio_submitter()
            if submit is not None:
                inp.audio_frames_in += 1
                submit(inp, InputAudioRawFrame(pcm, WIRE_RATE, 1))
                return
        inp.push_input_frame(InputAudioRawFrame(pcm, WIRE_RATE, 1))

    def on_rtp_dtmf(self, key: KeypadEntry) -> None:
        self._input.push_input_frame(InputDTMFFrame(button=key))
        if self.has_event_handler("on_dtmf"):
            from .._drive import drive

            drive(self._call_event_handler("on_dtmf", key), "event")

    async def refer_requested(self, target: str) -> int | None:
        """Run the first ``on_refer`` handler; its SIP status (None: none given)."""
        handlers = self.__dict__.get("_event_handlers") or {}
        for handler in handlers.get("on_refer") or ():
            result = handler(self, target)
            if inspect.isawaitable(result):
                result = await result
            return int(result) if result else None
        return None

    # ------------------------------------------------------------ lifecycle

    async def _input_started(self) -> None:
        control = self._control
        if control is not None:
            control.input_started()
        await self._call_event_handler("on_client_connected")

    def _hang_up(self) -> None:
        control = self._control
        if control is not None:
            control.hang_up()

    async def transfer_finished(self, target: str, status: int, reason: str) -> None:
        """A blind transfer's outcome (the final NOTIFY, or the failure): fires ``on_transfer``."""
        await self._call_event_handler("on_transfer", target, status, reason)

    async def handle_disconnect(self, reason: str = "SIP call ended") -> None:
        """The call is over (BYE received, or this side hung up): stop sending, end the
        pipeline and fire ``on_client_disconnected``. Only the first call acts."""
        if self._disconnected:
            return
        self._disconnected = True
        media = self._media
        if media is not None:
            media.sink = None
        self._media = None
        self._control = None
        self._output.peer_gone()
        self._input.peer_closed(end=self._sparams.end_on_disconnect, reason=reason)
        try:
            await self._call_event_handler("on_client_disconnected")
        finally:
            self._clear_event_handlers()
