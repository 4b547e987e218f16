"""Serializers: a connection's WebSocket messages ⇄ frames.

The contract is :class:`Serializer` (pipecat's async interface) with the synchronous
fast path of :class:`FastSerializer` (see ``docs/transports.md``). Beside the generic
wire formats (:class:`RawPCMSerializer`, pipecat's :class:`ProtobufFrameSerializer`)
there is one module per carrier, each against :class:`FrameSerializer`; see
``docs/carriers.md`` for codecs, marks, hang-up, answer documents, signatures and
what is unconfirmed.
"""

from __future__ import annotations

from ._base import CallInfo as CallInfo
from ._base import FrameSerializer as FrameSerializer
from ._base import Wire as Wire
from ._base import WireOut as WireOut
from ._carrier import Carrier as Carrier
from ._contract import FastSerializer as FastSerializer
from ._contract import Serializer as Serializer
from ._marks import MarkTracker as MarkTracker
from .asterisk import AsteriskCarrier as AsteriskCarrier
from .asterisk import AsteriskFrameSerializer as AsteriskFrameSerializer
from .cloudonix import CloudonixCarrier as CloudonixCarrier
from .cloudonix import CloudonixFrameSerializer as CloudonixFrameSerializer
from .exotel import ExotelCarrier as ExotelCarrier
from .exotel import ExotelFrameSerializer as ExotelFrameSerializer
from .genesys import GenesysCarrier as GenesysCarrier
from .genesys import GenesysFrameSerializer as GenesysFrameSerializer
from .plivo import PlivoCarrier as PlivoCarrier
from .plivo import PlivoFrameSerializer as PlivoFrameSerializer
from .protobuf import ProtobufFrameSerializer as ProtobufFrameSerializer
from .raw_pcm import RawPCMSerializer as RawPCMSerializer
from .telnyx import TelnyxCarrier as TelnyxCarrier
from .telnyx import TelnyxFrameSerializer as TelnyxFrameSerializer
from .twilio import TwilioCarrier as TwilioCarrier
from .twilio import TwilioFrameSerializer as TwilioFrameSerializer
from .vobiz import VobizCarrier as VobizCarrier
from .vobiz import VobizFrameSerializer as VobizFrameSerializer
from .vonage import VonageCarrier as VonageCarrier
from .vonage import VonageFrameSerializer as VonageFrameSerializer

__all__ = [
    "AsteriskCarrier",
    "AsteriskFrameSerializer",
    "CallInfo",
    "Carrier",
    "CloudonixCarrier",
    "CloudonixFrameSerializer",
    "ExotelCarrier",
    "ExotelFrameSerializer",
    "FastSerializer",
    "FrameSerializer",
    "GenesysCarrier",
    "GenesysFrameSerializer",
    "MarkTracker",
    "PlivoCarrier",
    "PlivoFrameSerializer",
    "ProtobufFrameSerializer",
    "RawPCMSerializer",
    "Serializer",
    "TelnyxCarrier",
    "TelnyxFrameSerializer",
    "TwilioCarrier",
    "TwilioFrameSerializer",
    "VobizCarrier",
    "VobizFrameSerializer",
    "VonageCarrier",
    "VonageFrameSerializer",
    "Wire",
    "WireOut",
]
