"""Telnyx Media Streaming (bidirectional RTP mode).

Wire: JSON text frames, snake_case. Telnyx → us ``connected``, ``start``, ``media``
(base64 RTP payload without header, codec from ``start.media_format``), ``dtmf``,
``mark``, ``error``, ``stop``; us → Telnyx ``media``, ``mark``, ``clear`` with no
stream id. Hang-up: ``POST /v2/calls/{call_control_id}/actions/hangup`` with
``Authorization: Bearer <TELNYX_API_KEY>``. TeXML answer ``<Connect><Stream
bidirectionalMode="rtp">``; :meth:`TelnyxCarrier.stream_fields` gives the
same request as Call Control fields. Webhooks are signed with Ed25519
(``telnyx-signature-ed25519`` over ``timestamp|body``): checked when a public key
is configured (``TELNYX_PUBLIC_KEY``), which needs the ``telnyx`` extra
(``pip install 'flowcat[telnyx]'``, for ``cryptography``); with a key configured
and the extra missing, webhooks are refused and the error names the extra.

Codecs: PCMU and PCMA (8 kHz), and L16 at the rate ``start.media_format`` reports
(Call Control offers 8000, 16000, 22050, 24000 and 48000 Hz for
``stream_bidirectional_sampling_rate``). Telnyx calls the payload an RTP payload,
and RTP's L16 is big-endian (RFC 3551 §4.5.11), but its docs never state the byte
order and integrations disagree. So by default (``l16_byte_order="auto"``) the
first caller audio that carries signal decides: each reading is scored for how
rough (sample-to-sample steps against level) and how loud it is, since the wrong
reading of speech or a tone is noise near full scale. The verdict is logged once
and applies to bot audio too; until then big-endian is used.

Docs:
    https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket
    https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming
    https://developers.telnyx.com/docs/voice/programmable-voice/texml-verbs/stream
    https://developers.telnyx.com/api-reference/call-commands/hangup-call
    https://developers.telnyx.com/api-reference/call-commands/transfer-call
    https://developers.telnyx.com/api-reference/call-commands/streaming-start (codecs, rates)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal
from xml.sax.saxutils import quoteattr

from ..errors import ConfigError, MissingExtraError
from ._base import CallInfo
from ._carrier import Carrier, HangUpRequest
from ._l16_byte_order import ByteOrder, byteswap16, judge_l16_byte_order
from ._media_stream import MediaStreamSerializer
from ._rest import env
from ._signatures import tokens_equal, validate_telnyx_ed25519
from ._telnyx_messages import TelnyxError, TelnyxStart

if TYPE_CHECKING:
    from aiohttp import web

    from ..frames import Frame, OutputAudioRawFrame

__all__ = ["L16ByteOrder", "TelnyxCarrier", "TelnyxFrameSerializer"]

logger = logging.getLogger("flowcat.serializers")

_REJECT_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'
"""The answer that refuses a call when the server is full."""

L16ByteOrder = Literal["auto", "big", "little"]
"""How L16 samples are laid out: ``"big"`` (RTP), ``"little"``, or ``"auto"`` (detected)."""

# Encoding names as upper case; the L16 spellings other than "L16" are guesses.
_ENCODINGS = {
    "PCMU": "PCMU",
    "PCMA": "PCMA",
    "AUDIO/X-MULAW": "PCMU",
    "AUDIO/X-ALAW": "PCMA",
    "L16": "L16",
    "AUDIO/L16": "L16",
    "AUDIO/X-L16": "L16",
}
_CODECS = ("PCMU", "PCMA", "L16")
_L16_RATES = (8000, 16000, 22050, 24000, 48000)
"""``stream_bidirectional_sampling_rate`` values of Call Control's streaming_start."""


def _check_format(codec: str, sample_rate: int) -> None:
    if codec not in _CODECS:
        raise ConfigError(f"Telnyx codec must be one of {', '.join(_CODECS)}, not {codec!r}")
    if codec == "L16" and sample_rate not in _L16_RATES:
        raise ConfigError(f"Telnyx L16 sample rate must be one of {_L16_RATES}, not {sample_rate!r}")
    if codec != "L16" and sample_rate != 8000:
        raise ConfigError(f"Telnyx {codec} is 8000 Hz only, not {sample_rate!r}")


class TelnyxFrameSerializer(MediaStreamSerializer):
    """Serializer for Telnyx media streams.

    Args:
        api_key: Telnyx API key for hang-up (default ``TELNYX_API_KEY``).
        outbound_codec: Codec of bot audio (``stream_bidirectional_codec``: ``PCMU``,
            ``PCMA`` or ``L16``); default: the inbound codec from ``start``.
        outbound_sample_rate: Rate (Hz) of L16 bot audio
            (``stream_bidirectional_sampling_rate``: 8000, 16000, 22050, 24000 or
            48000); default: the inbound L16 rate, else 8000 (Telnyx's default).
            PCMU and PCMA are always 8000.
        l16_byte_order: Byte order of L16 audio both ways: ``"big"`` (RTP network
            order), ``"little"``, or ``"auto"`` (default): decided from the first
            caller audio that carries signal, big-endian until then. With an explicit
            order the caller audio is still judged once and a mismatch is logged.
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.

    Raises:
        ConfigError: An unknown codec or byte order, or a rate the codec does not take.
    """

    carrier = "telnyx"
    out_sid_key = None
    events = {**MediaStreamSerializer.events, "error": "_on_error"}

    def __init__(
        self,
        *,
        api_key: str | None = None,
        outbound_codec: str | None = None,
        outbound_sample_rate: int | None = None,
        l16_byte_order: L16ByteOrder = "auto",
        **kwargs: Any,
    ) -> None:
        if l16_byte_order not in ("auto", "big", "little"):
            raise ConfigError(f'l16_byte_order must be "auto", "big" or "little", not {l16_byte_order!r}')
        if outbound_codec is not None or outbound_sample_rate is not None:
            _check_format(outbound_codec or "L16", outbound_sample_rate or 8000)
        # Byte-order state first: set_input_format/set_output_format consult it.
        self.l16_byte_order = l16_byte_order
        self._order: ByteOrder = "big" if l16_byte_order == "auto" else l16_byte_order
        self._judging = True  # until the caller audio gave a verdict (also when explicit: logged)
        self._in_l16 = False
        self._swap_in = False
        self._swap_out = False
        super().__init__(**kwargs)
        self.rest = TelnyxCarrier(api_key=api_key, api_base=self._api_base, session=self.session)
        self.outbound_codec = outbound_codec
        self.outbound_sample_rate = outbound_sample_rate
        self._adopt_output(self.default_codec, self.default_rate)

    # ---------------------------------------------------------------- formats

    def set_input_format(self, codec: str, rate: int) -> None:
        super().set_input_format(codec, rate)
        self._in_l16 = codec == "L16"
        self._apply_order()

    def set_output_format(self, codec: str, rate: int) -> None:
        super().set_output_format(codec, rate)
        self._apply_order()

    def _apply_order(self) -> None:
        # Pipeline PCM is little-endian (as everywhere in flowcat): only "big" swaps.
        big = self._order == "big"
        self._swap_in = big and self._in_l16
        self._swap_out = big and self._out_codec == "L16"

    def _adopt_output(self, in_codec: str, in_rate: int) -> None:
        codec = self.outbound_codec or in_codec
        if codec != "L16":
            rate = 8000
        elif self.outbound_sample_rate:
            rate = self.outbound_sample_rate
        else:
            rate = in_rate if in_codec == "L16" else 8000
        self.set_output_format(codec, rate)

    def _parse_start(self, msg: dict[str, Any], raw: str) -> CallInfo | None:
        start = TelnyxStart.from_json(msg)
        fmt = start.media_format
        encoding = fmt.encoding or "PCMU"
        codec = self._codec_of(encoding.upper(), _ENCODINGS, raw)
        rate = self._rate_of(fmt.sample_rate, codec, raw)
        if codec == "L16":
            self.note(
                "l16-format",
                "L16 stream: encoding %r, sample_rate %r, channels %r (byte order: %s)",
                encoding,
                fmt.sample_rate,
                fmt.channels,
                "detected from the caller audio" if self.l16_byte_order == "auto" else self.l16_byte_order,
            )
        self._adopt_output(codec, rate)
        return CallInfo(
            carrier=self.carrier,
            stream_id=start.stream_id,
            call_id=start.call_control_id,
            codec=codec,
            sample_rate=rate,
            custom_parameters=dict(start.custom_parameters),
            account_id=start.user_id,
            from_number=start.from_number,
            to_number=start.to_number,
            extra={"call_session_id": start.call_session_id, "client_state": start.client_state},
        )

    def _rate_of(self, value: object, codec: str, raw: str) -> int:
        """``media_format.sample_rate`` (a number or a numeric string), or 8000 if unreadable."""
        try:
            rate = (
                8000 if value is None else int(value) if isinstance(value, int | float) else int(str(value))
            )
        except (ValueError, OverflowError):
            rate = 0
        if not 8000 <= rate <= 48000:
            self.bad_input(f"unreadable sample_rate {value!r} (using 8000)", raw)
            return 8000
        if codec == "L16" and rate not in _L16_RATES:
            self.note("l16-rate", "L16 at an undocumented rate %d Hz (used as is)", rate)
        return rate

    # ---------------------------------------------------------------- audio

    def decode(self, payload: bytes) -> Frame | None:
        """Caller audio → frame; L16 is checked, judged (until decided) and byte-swapped."""
        if self._in_l16:
            if len(payload) & 1:
                self.bad_input(f"L16 payload with an odd byte count ({len(payload)})", payload)
                return None
            if self._judging:
                self._judge(payload)
            if self._swap_in:
                payload = byteswap16(payload)
        return super().decode(payload)

    def encode(self, frame: OutputAudioRawFrame) -> bytes:
        """Bot audio → carrier bytes, in the L16 byte order in use."""
        data = super().encode(frame)
        return byteswap16(data) if self._swap_out and data else data

    def _judge(self, payload: bytes) -> None:
        if payload.count(0) == len(payload):
            return  # silence: cheaper than judging, and says nothing
        order, scores = judge_l16_byte_order(payload)
        if order is None:
            return
        self._judging = False
        args = (self.stream_id, *scores)
        detail = "(stream %s: roughness big %.2f little %.2f, mean level big %.0f little %.0f)"
        if self.l16_byte_order == "auto":
            self._order = order
            self._apply_order()
            logger.info("telnyx: L16 byte order detected: %s-endian " + detail, order, *args)
        elif order != self.l16_byte_order:
            logger.warning(
                "telnyx: l16_byte_order=%r is configured but the caller audio looks %s-endian " + detail,
                self.l16_byte_order,
                order,
                *args,
            )
        else:
            logger.info("telnyx: caller audio confirms l16_byte_order=%r " + detail, order, *args)

    def _on_error(self, msg: dict[str, Any], raw: str) -> None:
        payload = TelnyxError.from_json(msg).payload
        logger.warning("telnyx: stream error on %s: %s", self.stream_id, str(payload)[:300])

    # ---------------------------------------------------------------- REST and webhooks


class TelnyxCarrier(Carrier):
    """Telnyx's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "telnyx"
    serializer = TelnyxFrameSerializer
    busy_document = _REJECT_BUSY
    default_api_base = "https://api.telnyx.com"

    def __init__(self, *, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        key = env(self.api_key, "TELNYX_API_KEY")
        if not (key and call_id):
            return None
        url = f"{self.api_base}/v2/calls/{call_id}/actions/hangup"
        return "POST", url, {"Authorization": "Bearer " + key}, ("json", {})

    rest_transfer = True

    def transfer_request(self, call_id: str | None, info: CallInfo | None, target: str) -> HangUpRequest | None:
        """Call Control ``transfer``: ``POST /v2/calls/{call_control_id}/actions/transfer`` with
        ``{"to": target}`` (a number or SIP URI);
        https://developers.telnyx.com/api-reference/call-commands/transfer-call"""
        key = env(self.api_key, "TELNYX_API_KEY")
        if not (key and call_id and target.strip()):
            return None
        url = f"{self.api_base}/v2/calls/{call_id}/actions/transfer"
        return "POST", url, {"Authorization": "Bearer " + key}, ("json", {"to": target.strip()})

    @classmethod
    def stream_fields(
        cls,
        stream_url: str,
        *,
        codec: str = "PCMU",
        sample_rate: int = 8000,
        track: str = "inbound_track",
        auth_token: str | None = None,
    ) -> dict[str, Any]:
        """The media-stream fields of a Call Control request, bidirectional in RTP mode.

        They go in the JSON body of ``actions/answer``, ``actions/streaming_start`` or
        the dial request (``POST /v2/calls``). The codec is asked for both ways
        (``stream_codec`` and ``stream_bidirectional_codec``).

        Args:
            stream_url: The ``wss://`` URL Telnyx connects to.
            codec: ``PCMU`` (default), ``PCMA`` or ``L16``.
            sample_rate: ``stream_bidirectional_sampling_rate`` (Hz): 8000 for PCMU and
                PCMA; 8000, 16000, 22050, 24000 or 48000 for L16. For L16 above 8 kHz,
                give the serializer the same ``outbound_sample_rate``.
            track: ``stream_track``: ``inbound_track`` (default), ``outbound_track`` or
                ``both_tracks``.
            auth_token: ``stream_auth_token``, sent back in the upgrade's
                ``x-telnyx-streaming-auth-token`` (see :meth:`verify_stream_token`).

        Raises:
            ConfigError: An unknown codec, or a rate the codec does not take.
        """
        _check_format(codec, sample_rate)
        fields: dict[str, Any] = {
            "stream_url": stream_url,
            "stream_track": track,
            "stream_codec": codec,
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": codec,
            "stream_bidirectional_sampling_rate": sample_rate,
        }
        if auth_token is not None:
            fields["stream_auth_token"] = auth_token
        return fields

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """TeXML ``<Connect><Stream>`` in RTP mode.

        Options: ``codec`` (``PCMU`` default, ``PCMA``, or ``L16``, which also asks for
        L16 caller audio with ``codec="L16"``), ``sample_rate``
        (``bidirectionalSamplingRate``, default 8000), ``after`` (TeXML after the
        stream).

        Raises:
            ConfigError: An unknown codec, or a rate the codec does not take.
        """
        codec = options.get("codec", "PCMU")
        rate = options.get("sample_rate", 8000)
        _check_format(codec, rate)
        inbound = ' codec="L16"' if codec == "L16" else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url={}{} bidirectionalMode="rtp" '
            'bidirectionalCodec={} bidirectionalSamplingRate="{}"/></Connect>{}</Response>'.format(
                quoteattr(stream_url), inbound, quoteattr(codec), rate, options.get("after", "")
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
