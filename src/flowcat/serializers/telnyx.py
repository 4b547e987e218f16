"""Telnyx Media Streaming (bidirectional RTP mode).

Wire: JSON text frames, snake_case. Telnyx → us ``connected``, ``start``, ``media``
(base64 RTP payload without header, codec from ``start.media_format``), ``dtmf``,
``mark``, ``error``, ``stop``; us → Telnyx ``media``, ``mark``, ``clear`` with no
stream id. Hang-up: ``POST /v2/calls/{call_control_id}/actions/hangup`` with
``Authorization: Bearer <TELNYX_API_KEY>``. TeXML answer ``<Connect><Stream
bidirectionalMode="rtp">``. Webhooks are signed with Ed25519
(``telnyx-signature-ed25519`` over ``timestamp|body``): checked when a public key
is configured (``TELNYX_PUBLIC_KEY``), which needs the ``telnyx`` extra
(``pip install 'flowcat[telnyx]'``, for ``cryptography``); with a key configured
and the extra missing, webhooks are refused and the error names the extra.

Codecs: PCMU and PCMA. Telnyx also offers L16 (``stream_codec`` /
``stream_bidirectional_codec``, 8000–48000 Hz), but its docs do not state the
byte order of an L16 payload, so L16 is not accepted here (logged, PCMU kept).

Docs:
    https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket
    https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming
    https://developers.telnyx.com/docs/voice/programmable-voice/texml-verbs/stream
    https://developers.telnyx.com/api-reference/call-commands/hangup-call
    https://developers.telnyx.com/api-reference/call-commands/streaming-start (codecs, rates)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from ..errors import MissingExtraError
from ._base import CallInfo
from ._media_stream import MediaStreamSerializer
from ._rest import env
from ._signatures import tokens_equal, validate_telnyx_ed25519

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["TelnyxFrameSerializer"]

logger = logging.getLogger("flowcat.serializers")

_ENCODINGS = {"PCMU": "PCMU", "PCMA": "PCMA", "audio/x-mulaw": "PCMU", "audio/x-alaw": "PCMA"}


class TelnyxFrameSerializer(MediaStreamSerializer):
    """Serializer for Telnyx media streams.

    Args:
        api_key: Telnyx API key for hang-up (default ``TELNYX_API_KEY``).
        outbound_codec: Codec of bot audio (``stream_bidirectional_codec``: ``PCMU`` or
            ``PCMA``); default: the inbound codec from ``start``.
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.
    """

    carrier = "telnyx"
    default_api_base = "https://api.telnyx.com"
    out_sid_key = None
    events = {**MediaStreamSerializer.events, "error": "_on_error"}

    def __init__(
        self, *, api_key: str | None = None, outbound_codec: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.outbound_codec = outbound_codec
        if outbound_codec:
            self.set_output_format(outbound_codec, 8000)

    def _parse_start(self, msg: dict[str, Any], start: dict[str, Any], raw: str) -> CallInfo | None:
        fmt = start.get("media_format")
        fmt = fmt if isinstance(fmt, dict) else {}
        codec = self._codec_of(fmt.get("encoding", "PCMU"), _ENCODINGS, raw)
        rate = int(fmt.get("sample_rate") or 8000)
        if not self.outbound_codec:
            self.set_output_format(codec, rate)
        params = start.get("custom_parameters")
        return CallInfo(
            carrier=self.carrier,
            stream_id=msg.get("stream_id"),
            call_id=start.get("call_control_id"),
            codec=codec,
            sample_rate=rate,
            custom_parameters=params if isinstance(params, dict) else {},
            account_id=start.get("user_id"),
            from_number=start.get("from"),
            to_number=start.get("to"),
            extra={
                "call_session_id": start.get("call_session_id"),
                "client_state": start.get("client_state"),
            },
        )

    def _on_error(self, msg: dict[str, Any], raw: str) -> None:
        logger.warning("telnyx: stream error on %s: %s", self.stream_id, str(msg.get("payload", msg))[:300])

    def hang_up_request(self) -> tuple[str, str, dict[str, str], Any] | None:
        key = env(self.api_key, "TELNYX_API_KEY")
        if not (key and self.call_id):
            return None
        url = f"{self.api_base}/v2/calls/{self.call_id}/actions/hangup"
        return "POST", url, {"Authorization": "Bearer " + key}, ("json", {})

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """TeXML ``<Connect><Stream>`` in RTP mode (options: ``codec`` ``PCMU``/``PCMA``, ``after``)."""
        codec = options.get("codec", "PCMU")
        return (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url={} bidirectionalMode="rtp" '
            'bidirectionalCodec={} bidirectionalSamplingRate="8000"/></Connect>{}</Response>'.format(
                quoteattr(stream_url), quoteattr(codec), options.get("after", "")
            )
        )

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Check ``telnyx-signature-ed25519`` when ``public_key``/``TELNYX_PUBLIC_KEY`` is set.

        With a key configured but without the ``telnyx`` extra (``cryptography``) the
        webhook is refused: the error is logged with the install command.
        """
        key = env(options.get("public_key"), "TELNYX_PUBLIC_KEY")
        if not key:
            return True
        try:
            return validate_telnyx_ed25519(
                body,
                request.headers.get("telnyx-signature-ed25519"),
                request.headers.get("telnyx-timestamp"),
                key,
            )
        except MissingExtraError as exc:
            logger.error("telnyx: TELNYX_PUBLIC_KEY is set but the webhook cannot be checked: %s", exc)
            return False

    @staticmethod
    def verify_stream_token(request: web.Request, expected: str) -> bool:
        """Check the ``x-telnyx-streaming-auth-token`` header of the WebSocket upgrade."""
        return tokens_equal(request.headers.get("x-telnyx-streaming-auth-token"), expected)
