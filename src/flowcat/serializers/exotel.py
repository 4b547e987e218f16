"""Exotel Voicebot applet (AgentStream), bidirectional.

Wire: JSON text frames, snake_case. Exotel → us ``connected``, ``start``, ``media``
(base64 16-bit little-endian PCM, 8 kHz by default; 16/24 kHz by the applet's
``sample-rate``), ``dtmf``, ``mark``, ``stop``; us → Exotel ``media``, ``mark``,
``clear`` with ``stream_sid``. Outbound chunks are at least 100 ms and always a
multiple of 320 bytes (held back and padded with silence at the end of an
utterance). No hang-up API: closing the socket moves the flow to the next applet.

Docs:
    https://developer.exotel.com/docs/agentstream/websocket-protocol
    https://developer.exotel.com/docs/agentstream/stream-voicebot-applet
    https://support.exotel.com/support/solutions/articles/3000108630
"""

from __future__ import annotations

from typing import Any

from ._base import CallInfo
from ._carrier import Carrier
from ._exotel_messages import ExotelStart
from ._framer import Framer
from ._media_stream import MediaStreamSerializer

__all__ = ["ExotelCarrier", "ExotelFrameSerializer"]

_ENCODINGS = {"audio/x-raw": "L16", "raw": "L16", "slin": "L16", "audio/x-l16": "L16"}


class ExotelFrameSerializer(MediaStreamSerializer):
    """Serializer for Exotel's Voicebot stream.

    Args:
        sample_rate: The applet's ``sample-rate`` (8000, 16000 or 24000), used until
            ``start`` reports one.
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer` (``auto_hang_up``
            has no effect: Exotel has no hang-up API; the transport closes the socket).
    """

    carrier = "exotel"
    default_codec = "L16"
    out_sid_key = "stream_sid"

    def __init__(self, *, sample_rate: int = 8000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_rate(sample_rate)

    def _set_rate(self, rate: int) -> None:
        self.set_input_format("L16", rate)
        self.set_output_format("L16", rate)
        # ≥100 ms per message, whole multiples of 320 bytes (Exotel's guidance).
        self._framer = Framer(320, min_bytes=rate // 10 * 2, max_bytes=100_000 // 320 * 320, pad_to_min=True)

    def _parse_start(self, msg: dict[str, Any], raw: str) -> CallInfo | None:
        start = ExotelStart.from_json(msg)
        fmt = start.media_format
        self._codec_of(fmt.encoding or "audio/x-raw", _ENCODINGS, raw)
        try:
            rate = int(fmt.sample_rate or self._rate)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            self.bad_input(f"unreadable sample_rate (keeping {self._rate})", raw)
            rate = self._rate
        if rate not in (8000, 16000, 24000):
            self.bad_input(f"unexpected sample_rate {rate} (keeping {self._rate})", raw)
            rate = self._rate
        self._set_rate(rate)
        return CallInfo(
            carrier=self.carrier,
            stream_id=start.stream_sid,
            call_id=start.call_sid,
            codec="L16",
            sample_rate=rate,
            custom_parameters=dict(start.custom_parameters),
            account_id=start.account_sid,
            from_number=start.from_number,
            to_number=start.to_number,
        )


class ExotelCarrier(Carrier):
    """Exotel's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "exotel"
    serializer = ExotelFrameSerializer
    rest_hang_up = False
