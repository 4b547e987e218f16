"""Transports: how a call's audio and messages get in and out.

* :class:`BaseTransport` with :meth:`~BaseTransport.input` / :meth:`~BaseTransport.output`
  processors, configured by :class:`TransportParams`.
* Output audio is paced by one :class:`AudioClock` per process (one timer for all
  calls), with a small send-ahead window, instant clear on interruption,
  pause/resume, bot speaking frames derived from sends and a drained EndFrame.
* WebSocket transports on aiohttp: :class:`WebsocketServerTransport` (a route,
  one call per socket), :class:`WebsocketClientTransport` (dials out), with any
  :class:`~flowcat.serializers.Serializer`: :class:`RawPCMSerializer` (the default),
  pipecat's :class:`ProtobufFrameSerializer` or a carrier's (both re-exported here
  from :mod:`flowcat.serializers`, where they live).
* The same transport over picows (``flowcat[picows]``, imported on first use):
  :class:`PicowsTransport` with its :class:`PicowsListener`.
* WebRTC over aiortc (``flowcat[webrtc]``, imported on first use): :class:`WebRTCTransport`
  with :class:`WebRTCParams` (one peer connection per call, Opus 48 kHz, clock-paced).
* Asterisk AudioSocket over raw TCP: :class:`AudioSocketTransport` with its
  :class:`AudioSocketListener` (an ``asyncio.Protocol``) and :class:`AudioSocketParser`.

See ``docs/transports.md``.
"""

from __future__ import annotations

import typing

from ..serializers.protobuf import ProtobufFrameSerializer
from ..serializers.raw_pcm import RawPCMSerializer
from ._audiosocket import (
    AudioSocketInputTransport,
    AudioSocketOutputTransport,
    AudioSocketParams,
    AudioSocketTransport,
)
from ._audiosocket_protocol import AudioSocketListener, AudioSocketParser
from ._clock import AudioClock
from ._drive import Pending, drive
from ._input import BaseInputTransport
from ._output import BaseOutputTransport, OutputStats
from ._params import TransportParams
from ._transport import BaseTransport
from ._websocket import WebsocketInputTransport, WebsocketOutputTransport, WebsocketParams, WebsocketTransport
from ._websocket_client import WebsocketClientTransport
from ._websocket_server import WebsocketServerTransport

if typing.TYPE_CHECKING:
    from ._picows import PicowsListener, PicowsTransport
    from ._webrtc import WebRTCParams, WebRTCTransport

__all__ = [
    "AudioClock",
    "AudioSocketInputTransport",
    "AudioSocketListener",
    "AudioSocketOutputTransport",
    "AudioSocketParams",
    "AudioSocketParser",
    "AudioSocketTransport",
    "BaseInputTransport",
    "BaseOutputTransport",
    "BaseTransport",
    "OutputStats",
    "Pending",
    "PicowsListener",
    "PicowsTransport",
    "ProtobufFrameSerializer",
    "RawPCMSerializer",
    "TransportParams",
    "WebRTCParams",
    "WebRTCTransport",
    "WebsocketClientTransport",
    "WebsocketInputTransport",
    "WebsocketOutputTransport",
    "WebsocketParams",
    "WebsocketServerTransport",
    "WebsocketTransport",
    "drive",
]

_LAZY = {"PicowsListener", "PicowsTransport"}
_LAZY_WEBRTC = {"WebRTCParams", "WebRTCTransport"}


def __getattr__(name: str) -> typing.Any:
    # picows is optional: its transport is imported on first use (MissingExtraError without it).
    if name in _LAZY:
        from . import _picows

        return getattr(_picows, name)
    if name in _LAZY_WEBRTC:
        # aiortc is optional too (MissingExtraError without flowcat[webrtc]).
        from . import _webrtc

        return getattr(_webrtc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
