"""WebRTCTransport: one call over one aiortc ``RTCPeerConnection`` (``flowcat[webrtc]``).

Everything runs on the event loop that accepted the offer: no thread or event loop
of flowcat's own per call. (aiortc itself decodes received Opus in a thread per
receiver and encodes sent Opus on the loop's default executor.)

* **Signalling** is one offer/answer exchange, non-trickle: :meth:`WebRTCTransport.accept_offer`
  takes the peer's SDP offer (with its candidates), waits for ICE gathering and
  returns the answer with ours. ICE uses host candidates only, no STUN by default;
  :func:`set_ice_host_addresses` pins the addresses gathered (``127.0.0.1`` for a
  loopback-only server or test).
* **Bot audio**: the output transport runs at 48 kHz, the Opus rate (the base output
  resamples bot audio to it with :class:`~flowcat.audio.LowLatencyResampler`), and is
  continuous: the process's shared :class:`~flowcat.transports.AudioClock` releases one
  20 ms chunk per period, silence while the bot is quiet. Each chunk goes to the
  :class:`OutputAudioTrack` (an aiortc ``MediaStreamTrack``) whose ``recv`` aiortc awaits
  for the next frame to encode: the clock paces the RTP stream, as it paces a
  carrier's WebSocket.
* **Caller audio**: one reader task per call awaits the remote track's frames (48 kHz
  stereo s16, as aiortc decodes Opus), folds them to mono and pushes them to the
  input, which resamples them to the pipeline rate.
* **Data channel** (optional): text messages the peer sends on any channel become
  ``InputTransportMessageFrame``\\s; ``OutputTransportMessage(Urgent)Frame``\\s are sent
  as JSON on the first open channel.
* **End of call**: the peer connection failing or closing ends the call (a
  ``CancelFrame``, or an ``EndFrame`` with ``end_on_disconnect``); an EndFrame or
  CancelFrame reaching the output closes the peer connection. :meth:`close` is
  idempotent and leaves no task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .._ratelimit import RateLimitedLog
from ..errors import ConfigError, MissingExtraError, ProtocolError
from ..frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputTransportMessageFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
)
from ._input import BaseInputTransport
from ._output import BaseOutputTransport
from ._params import TransportParams
from ._transport import BaseTransport

try:
    import aioice.ice
    import av
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingExtraError("the WebRTC transport", "webrtc") from None

__all__ = [
    "OPUS_RATE",
    "OutputAudioTrack",
    "WebRTCInputTransport",
    "WebRTCOutputTransport",
    "WebRTCParams",
    "WebRTCTransport",
    "filter_candidates",
    "set_ice_host_addresses",
]

logger = logging.getLogger("flowcat.transports.webrtc")
_BAD_MESSAGE = RateLimitedLog(logger)

OPUS_RATE = 48000
"""The rate of WebRTC audio on both sides of the Opus codec."""

_TIME_BASE = Fraction(1, OPUS_RATE)
_ENDED_STATES = frozenset(("failed", "closed"))

# ------------------------------------------------------------------- ICE addresses

_host_addresses: list[str] | None = None
_original_get_host_addresses = aioice.ice.get_host_addresses


def _pinned_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    pinned = _host_addresses
    if pinned is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    out = []
    for addr in pinned:
        v6 = ipaddress.ip_address(addr).version == 6
        if (v6 and use_ipv6) or (not v6 and use_ipv4):
            out.append(addr)
    return out


def set_ice_host_addresses(addresses: list[str] | None) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (None: every interface but loopback,
    aioice's default). aioice has no per-connection setting for this, so it is process-wide.

    Raises:
        ConfigError: An entry is not an IP address.
    """
    global _host_addresses
    if addresses is not None:
        try:
            addresses = [str(ipaddress.ip_address(a)) for a in addresses]
        except ValueError as exc:
            raise ConfigError(f"WebRTC ICE host addresses: {exc}") from None
    _host_addresses = addresses
    aioice.ice.get_host_addresses = _pinned_host_addresses


def ice_host_addresses() -> list[str] | None:
    """The addresses pinned with :func:`set_ice_host_addresses` (None: aioice's default)."""
    return None if _host_addresses is None else list(_host_addresses)


def filter_candidates(sdp: str, allowed: list[str] | None) -> str:
    """``sdp`` without the ``a=candidate`` lines this side cannot reach.

    With pinned host addresses that are all loopback, only loopback candidates of the
    peer are kept (a browser offers every interface and mDNS ``.local`` names too; none
    is reachable from 127.0.0.1). Otherwise only ``.local`` names are dropped (aioice
    does not resolve mDNS). Candidates over TCP are dropped (aioice pairs UDP).
    """
    loopback_only = bool(allowed) and all(ipaddress.ip_address(a).is_loopback for a in allowed or ())
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 8 or parts[2].lower() != "udp" or parts[4].endswith(".local"):
                continue
            if loopback_only:
                try:
                    if not ipaddress.ip_address(parts[4]).is_loopback:
                        continue
                except ValueError:
                    continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


# ------------------------------------------------------------------------- params


@dataclass(kw_only=True)
class WebRTCParams(TransportParams):
    """Parameters of a :class:`WebRTCTransport`.

    ``audio_out_sample_rate`` is always 48000 (Opus) and ``audio_out_continuous`` True
    (the RTP stream needs a frame every period; silence while the bot is quiet).
    """

    end_on_disconnect: bool = False
    """A failed or closed peer connection ends the call with an EndFrame instead of a CancelFrame."""
    ice_servers: list[Any] = dataclasses.field(default_factory=list)
    """aiortc ``RTCIceServer``\\s (STUN/TURN). Default none: host candidates only."""
    track_queue_chunks: int = 8
    """Chunks the outgoing track holds at most when aiortc reads slower than real time
    (older ones are dropped and counted in ``audio_dropped``)."""

    def __post_init__(self) -> None:
        self.audio_out_sample_rate = OPUS_RATE
        self.audio_out_continuous = True


# -------------------------------------------------------------------------- track


class OutputAudioTrack(MediaStreamTrack):
    """The outgoing audio track: aiortc awaits :meth:`recv` for each frame to encode; the
    output transport :meth:`put`\\s each chunk the clock releases."""

    kind = "audio"

    def __init__(self, max_chunks: int = 8) -> None:
        super().__init__()
        self._chunks: deque[bytes] = deque()
        self._max = max(1, max_chunks)
        self._waiter: asyncio.Future[None] | None = None
        self._pts = 0
        self.dropped = 0
        """Chunks dropped because aiortc did not read them in time."""
        self.frames_out = 0
        """Frames handed to aiortc."""

    def put(self, pcm: bytes) -> None:
        """Queue one chunk of 48 kHz mono PCM16 (synchronous)."""
        chunks = self._chunks
        if len(chunks) >= self._max:
            chunks.popleft()
            self.dropped += 1
        chunks.append(pcm)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def recv(self) -> av.AudioFrame:
        chunks = self._chunks
        while not chunks:
            if self.readyState != "live":
                raise MediaStreamError
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        pcm = chunks.popleft()
        samples = len(pcm) >> 1
        # Stereo, both channels the chunk: aiortc's encoder up-mixes mono to stereo
        # with a -3 dB pan law; duplicated samples keep the bot's level.
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        frame.planes[0].update(np.frombuffer(pcm, dtype=np.int16).repeat(2).tobytes())
        frame.sample_rate = OPUS_RATE
        frame.time_base = _TIME_BASE
        frame.pts = self._pts
        self._pts += samples
        self.frames_out += 1
        return frame

    def stop(self) -> None:
        super().stop()
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# --------------------------------------------------------------------- processors


class WebRTCInputTransport(BaseInputTransport):
    """Input side of a :class:`WebRTCTransport`."""

    def __init__(self, transport: WebRTCTransport, params: WebRTCParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self._transport._input_started()

    def _detach(self) -> None:
        super()._detach()
        self._transport = None  # type: ignore[assignment]


class WebRTCOutputTransport(BaseOutputTransport):
    """Output side of a :class:`WebRTCTransport`."""

    def __init__(self, transport: WebRTCTransport, params: WebRTCParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport
        self._track_put = transport.track.put

    def write_audio(self, frame: OutputAudioRawFrame) -> None:
        self._track_put(frame.audio)

    def write_frame(self, frame: Frame) -> None:
        if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
            self._transport.send_message(frame.message)

    def close_transport(self, frame: EndFrame | CancelFrame) -> None:
        self._transport.close_soon()

    def _detach(self) -> None:
        super()._detach()
        self._track_put = None  # type: ignore[assignment]
        self._transport = None  # type: ignore[assignment]


# ---------------------------------------------------------------------- transport


class WebRTCTransport(BaseTransport):
    """A call over one aiortc peer connection (see the module docstring).

    Events: ``on_client_connected(transport)`` (ICE and DTLS up),
    ``on_client_disconnected(transport)``, ``on_connection_state(transport, state)``.

    Args:
        params: Transport parameters.
        name: Name for logs.
    """

    _event_names = ("on_client_connected", "on_client_disconnected", "on_connection_state")

    def __init__(self, params: WebRTCParams | None = None, *, name: str | None = None) -> None:
        params = params or WebRTCParams()
        super().__init__(params, name=name)
        self._wparams = params
        self.track = OutputAudioTrack(params.track_queue_chunks)
        self._input = WebRTCInputTransport(self, params, name=f"{self.name}::input")
        self._output = WebRTCOutputTransport(self, params, name=f"{self.name}::output")
        config = RTCConfiguration(iceServers=list(params.ice_servers))
        self.pc = RTCPeerConnection(configuration=config)
        self._reader: asyncio.Task[None] | None = None
        self._remote: Any = None
        self._channels: list[Any] = []
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing: asyncio.Task[None] | None = None
        self._disconnected = False
        self._connected = False
        self.frames_in = 0
        """Audio frames received from the peer."""
        self.peer_left = False
        """Whether the call ended because the peer connection failed or the peer closed it."""
        self.bad_messages = 0
        self.pc.addTrack(self.track)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    # ----------------------------------------------------------------- public

    def input(self) -> WebRTCInputTransport:
        return self._input

    def output(self) -> WebRTCOutputTransport:
        return self._output

    @property
    def connection_state(self) -> str:
        """The peer connection's state (``new``, ``connecting``, ``connected``, ``failed``, ``closed``)."""
        return str(self.pc.connectionState)

    @property
    def audio_dropped(self) -> int:
        """Bot audio chunks dropped because aiortc did not read them in time."""
        return self.track.dropped

    def closed_future(self) -> asyncio.Future[None]:
        """Done once the peer connection is closed (by either side) and the reader stopped."""
        return self._closed

    async def accept_offer(self, sdp: str, type_: str = "offer") -> RTCSessionDescription:
        """Apply the peer's offer and return our answer, ICE gathering complete (non-trickle).

        Raises:
            ProtocolError: The SDP is not a usable offer (no audio, malformed).
        """
        if type_ != "offer":
            raise ProtocolError(f"expected an SDP offer, got type {type_!r}")
        offer = RTCSessionDescription(sdp=filter_candidates(sdp, _host_addresses), type="offer")
        try:
            await self.pc.setRemoteDescription(offer)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise ProtocolError(f"bad SDP offer: {exc}", raw=sdp[:200]) from exc
        return self.pc.localDescription

    async def create_offer(self) -> RTCSessionDescription:
        """Our offer (ICE gathered), for a transport that dials: tests and peer-to-peer use."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription

    async def accept_answer(self, sdp: str) -> None:
        """Apply the peer's answer to :meth:`create_offer`."""
        answer = RTCSessionDescription(sdp=filter_candidates(sdp, _host_addresses), type="answer")
        await self.pc.setRemoteDescription(answer)

    def send_message(self, message: Any) -> None:
        """Send ``message`` (JSON unless str or bytes) on the first open data channel, if any."""
        for ch in self._channels:
            if ch.readyState == "open":
                data = message if isinstance(message, str | bytes) else json.dumps(message)
                ch.send(data)
                return

    async def close(self) -> None:
        """Close the peer connection and stop the reader (idempotent; waits until done)."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(), name=f"{self.name}.close")
        await asyncio.shield(self._closing)

    # --------------------------------------------------------------- internal

    def _on_track(self, track: Any) -> None:
        if track.kind != "audio" or self._remote is not None:
            return
        self._remote = track
        self._reader = asyncio.get_running_loop().create_task(self._read(track), name=f"{self.name}.read")

    def _on_datachannel(self, channel: Any) -> None:
        self._channels.append(channel)
        channel.on("message", self._on_message)

    def _on_message(self, data: Any) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        try:
            message = json.loads(data)
        except ValueError:
            message = data
        self._input.push_input_frame(InputTransportMessageFrame(message=message))

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.debug("%s: peer connection %s", self.name, state)
        await self._call_event_handler("on_connection_state", state)
        if state == "connected" and not self._connected:
            self._connected = True
            await self._call_event_handler("on_client_connected")
        elif state in _ENDED_STATES:
            await self._peer_gone()

    async def _read(self, track: Any) -> None:
        """Caller audio in: 48 kHz s16 (stereo as aiortc decodes Opus) → mono → the input."""
        push = self._input.push_audio
        try:
            while True:
                frame = await track.recv()
                self.frames_in += 1
                pcm = frame.to_ndarray()
                channels = len(frame.layout.channels)
                if channels == 2:
                    both = pcm.reshape(-1, 2).astype(np.int32)
                    mono = ((both[:, 0] + both[:, 1]) >> 1).astype(np.int16).tobytes()
                else:
                    mono = pcm.reshape(-1)[::channels].tobytes()
                push(mono, frame.sample_rate)
        except MediaStreamError:
            pass
        except Exception as exc:
            logger.warning("%s: reading the peer's audio failed: %r", self.name, exc)
        finally:
            self._reader = None  # ending by itself: nothing for _close to cancel
            await self._peer_gone()

    async def _input_started(self) -> None:
        pass

    async def _peer_gone(self) -> None:
        if self._disconnected:
            return
        self._disconnected = True
        if self._closing is None:
            self.peer_left = True
        self._output.peer_gone()
        self._input.peer_closed(end=self._wparams.end_on_disconnect, reason="WebRTC peer connection ended")
        try:
            await self._call_event_handler("on_client_disconnected")
        finally:
            self._clear_event_handlers()
            self.close_soon()

    def close_soon(self) -> None:
        """Start :meth:`close` without waiting for it (synchronous; idempotent)."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(), name=f"{self.name}.close")

    async def _close(self) -> None:
        try:
            self.track.stop()
            await self.pc.close()
        except Exception as exc:
            logger.debug("%s: closing the peer connection: %r", self.name, exc)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if not self._closed.done():
            self._closed.set_result(None)
