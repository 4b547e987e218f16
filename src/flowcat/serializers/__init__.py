"""Carrier serializers: carrier WebSocket messages ⇄ frames.

One module per carrier, each against :class:`FrameSerializer`; see ``docs/carriers.md``
for codecs, marks, hang-up, answer documents, signatures and what is unconfirmed.
"""

from __future__ import annotations

from ._base import CallInfo as CallInfo
from ._base import FrameSerializer as FrameSerializer
from ._base import Wire as Wire
from ._base import WireOut as WireOut
from ._marks import MarkTracker as MarkTracker
from .asterisk import AsteriskFrameSerializer as AsteriskFrameSerializer
from .cloudonix import CloudonixFrameSerializer as CloudonixFrameSerializer
from .exotel import ExotelFrameSerializer as ExotelFrameSerializer
from .genesys import GenesysFrameSerializer as GenesysFrameSerializer
from .plivo import PlivoFrameSerializer as PlivoFrameSerializer
from .telnyx import TelnyxFrameSerializer as TelnyxFrameSerializer
from .twilio import TwilioFrameSerializer as TwilioFrameSerializer
from .vobiz import VobizFrameSerializer as VobizFrameSerializer
from .vonage import VonageFrameSerializer as VonageFrameSerializer

__all__ = [
    "AsteriskFrameSerializer",
    "CallInfo",
    "CloudonixFrameSerializer",
    "ExotelFrameSerializer",
    "FrameSerializer",
    "GenesysFrameSerializer",
    "MarkTracker",
    "PlivoFrameSerializer",
    "TelnyxFrameSerializer",
    "TwilioFrameSerializer",
    "VobizFrameSerializer",
    "VonageFrameSerializer",
    "Wire",
    "WireOut",
]
