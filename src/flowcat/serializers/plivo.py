"""Plivo Audio Streams (bidirectional ``<Stream>``).

Wire: JSON text frames, camelCase. Plivo → us ``start``, ``media`` (base64; L16
8 kHz by default, 16 kHz or μ-law 8 kHz by ``contentType``), ``dtmf``,
``playedStream`` (checkpoint reached), ``clearedAudio``; us → Plivo ``playAudio``
(with ``contentType`` and ``sampleRate``), ``checkpoint``, ``clearAudio``, each with
``streamId``. A clear voids outstanding checkpoints. Hang-up: ``DELETE
/v1/Account/{auth_id}/Call/{call_uuid}/`` (HTTP Basic, 204). Webhooks carry
``X-Plivo-Signature-V3`` + ``-Nonce`` (HMAC-SHA256 with the auth token).

Credentials: ``PLIVO_AUTH_ID``, ``PLIVO_AUTH_TOKEN``.

Docs:
    https://www.plivo.com/docs/voice/xml/audio-streaming
    https://www.plivo.com/docs/voice-agents/audio-streaming/concepts/audio-streaming-reference
    https://www.plivo.com/docs/voice/xml/the-stream-element/checkpoint-event
    https://www.plivo.com/docs/voice/detailed-reference/api/call/hangup-a-call
    https://docs.plivo.com/docs/voice/xml/request/validation
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from ..errors import ProtocolError
from ..frames import CancelFrame, EndFrame, Frame
from ._base import CallInfo, FrameSerializer, WireOut, dtmf_frame
from ._carrier import Carrier, HangUpRequest
from ._json import decode_media_payload, dispatch_event, parse_json_object
from ._media_stream import PrefixedJsonMedia
from ._plivo_messages import PlivoClearedAudio, PlivoDtmf, PlivoPlayedStream, PlivoStart
from ._rest import basic_auth, env
from ._signatures import note_unchecked, validate_plivo_v3

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["PlivoCarrier", "PlivoFrameSerializer"]

logger = logging.getLogger("flowcat.serializers")

_HANGUP_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup reason="busy"/></Response>'
"""The answer that refuses a call when the server is full."""

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_ENCODINGS = {"audio/x-mulaw": "PCMU", "audio/x-l16": "L16"}
_CONTENT_TYPES = {"PCMU": "audio/x-mulaw", "L16": "audio/x-l16"}


class PlivoFrameSerializer(PrefixedJsonMedia, FrameSerializer):
    """Serializer for Plivo audio streams.

    Args:
        auth_id: Plivo auth id (default ``PLIVO_AUTH_ID``).
        auth_token: Plivo auth token (default ``PLIVO_AUTH_TOKEN``).
        content_type: The ``contentType`` the answer XML asked for, used until ``start``
            reports the format (``audio/x-l16;rate=8000`` is Plivo's default).
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.
    """

    carrier = "plivo"
    default_codec = "L16"
    has_marks = True
    events: ClassVar[dict[str, str]] = {
        "start": "_on_start",
        "dtmf": "_on_dtmf",
        "playedStream": "_on_played",
        "played": "_on_played",
        "clearedAudio": "_on_cleared",
        "stop": "_on_stop",
    }

    def __init__(
        self,
        *,
        auth_id: str | None = None,
        auth_token: str | None = None,
        content_type: str = "audio/x-l16;rate=8000",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rest = self._rest_carrier(auth_id=auth_id, auth_token=auth_token)
        encoding, _, rate = content_type.partition(";rate=")
        codec = _ENCODINGS.get(encoding, "L16")
        self.set_input_format(codec, int(rate or 8000))
        self.set_output_format(codec, int(rate or 8000))
        self._on_stream_id()

    def _rest_carrier(self, **credentials: Any) -> PlivoCarrier:
        return PlivoCarrier(api_base=self._api_base, session=self.session, **credentials)

    # ---------------------------------------------------------------- inbound

    def _deserialize(self, data: str | bytes) -> Frame | None:
        # Per inbound audio frame: this parse-and-media prologue is repeated in
        # _media_stream.py on purpose (a shared helper would add a call per frame).
        msg = parse_json_object(self, data, text_only=True)
        if msg is None:
            return None
        event = msg.get("event")
        if event == "media":
            audio = decode_media_payload(self, msg, data)
            if audio is None:
                return None
            if self._codec == "L16" and len(audio) & 1:
                self.bad_input("L16 payload with an odd byte count", data)
                return None
            return self.decode(audio) if audio else None
        return dispatch_event(self, self.events, event, msg, data)

    def _on_start(self, msg: dict[str, Any], raw: str) -> None:
        try:
            start = PlivoStart.from_json(msg)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        encoding = start.media_format.encoding
        codec = _ENCODINGS.get(encoding) if encoding is not None else self._codec
        if codec is None:
            self.bad_input(f"unsupported encoding {encoding!r} (keeping {self._codec})", raw)
            codec = self._codec
        rate = start.media_format.sample_rate or self._rate
        self.set_output_format(codec, rate)
        self.set_call(
            CallInfo(
                carrier=self.carrier,
                stream_id=start.stream_id,
                call_id=start.call_id,
                codec=codec,
                sample_rate=rate,
                custom_parameters=start.extra_headers,
                account_id=start.account_id,
                extra={"tracks": list(start.tracks) if start.tracks is not None else None},
            )
        )

    def _on_dtmf(self, msg: dict[str, Any], raw: str) -> Frame | None:
        try:
            dtmf = PlivoDtmf.from_json(msg)
        except ProtocolError:
            frame = None
        else:
            self.note("dtmf-shape", "dtmf arrived as %s", dtmf.shape)
            frame = dtmf_frame(dtmf.digit)
        if frame is None:
            self.bad_input("dtmf without a valid digit", raw)
        return frame

    def _on_played(self, msg: dict[str, Any], raw: str) -> None:
        self.note("played-event", "checkpoint acknowledgements arrive as %r", msg.get("event"))
        try:
            played = PlivoPlayedStream.from_json(msg)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        self.marks.echoed(played.name)

    def _on_cleared(self, msg: dict[str, Any], raw: str) -> None:
        try:
            cleared = PlivoClearedAudio.from_json(msg)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        logger.debug("%s: audio cleared on %s", self.carrier, cleared.stream_id or self.stream_id)

    def _on_stop(self, msg: dict[str, Any], raw: str) -> None:
        self.remote_ended = True

    # ---------------------------------------------------------------- outbound

    def set_output_format(self, codec: str, rate: int) -> None:
        super().set_output_format(codec, rate)
        self._on_stream_id()

    def _on_stream_id(self) -> None:
        sid = _DUMPS(self.stream_id)
        self._sid = sid
        ctype = _CONTENT_TYPES.get(self._out_codec, "audio/x-l16")
        self._media_prefix = (
            f'{{"event":"playAudio","streamId":{sid},"media":{{"contentType":"{ctype}",'
            f'"sampleRate":{self._out_rate},"payload":"'
        )
        self._clear = f'{{"event":"clearAudio","streamId":{sid}}}'

    def _mark_message(self, name: str) -> WireOut:
        return f'{{"event":"checkpoint","streamId":{self._sid},"name":{_DUMPS(name)}}}'

    def _end_message(self, frame: EndFrame | CancelFrame) -> WireOut:
        return None

    # ---------------------------------------------------------------- REST and webhooks


class PlivoCarrier(Carrier):
    """Plivo's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "plivo"
    serializer = PlivoFrameSerializer
    env_prefix: ClassVar[str] = "PLIVO"
    busy_document = _HANGUP_BUSY
    default_api_base = "https://api.plivo.com"

    def __init__(self, *, auth_id: str | None = None, auth_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.auth_id = auth_id
        self.auth_token = auth_token

    def _credentials(self) -> tuple[str | None, str | None]:
        return env(self.auth_id, self.env_prefix + "_AUTH_ID"), env(
            self.auth_token, self.env_prefix + "_AUTH_TOKEN"
        )

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        auth_id, token = self._credentials()
        if not (auth_id and token and call_id):
            return None
        url = f"{self.api_base}/v1/Account/{auth_id}/Call/{call_id}/"
        return "DELETE", url, {"Authorization": basic_auth(auth_id, token)}, None

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """``<Stream bidirectional="true" keepCallAlive="true" contentType=…>url</Stream>``.

        Options: ``content_type`` (default ``audio/x-mulaw;rate=8000``),
        ``status_callback_url``, ``extra_headers`` (dict; ``[A-Za-z0-9]`` only), ``after``.
        """
        attrs = 'bidirectional="true" keepCallAlive="true" contentType={}'.format(
            quoteattr(options.get("content_type", "audio/x-mulaw;rate=8000"))
        )
        if options.get("status_callback_url"):
            attrs += " statusCallbackUrl={}".format(quoteattr(options["status_callback_url"]))
        headers = options.get("extra_headers")
        if headers:
            attrs += " extraHeaders={}".format(
                quoteattr(",".join("{}={}".format(*kv) for kv in headers.items()))
            )
        return '<?xml version="1.0" encoding="UTF-8"?><Response><Stream {}>{}</Stream>{}</Response>'.format(
            attrs,
            escape(stream_url),
            options.get("after", ""),
        )

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Check ``X-Plivo-Signature-V3`` when an auth token is configured.

        Options: ``auth_token`` (default ``PLIVO_AUTH_TOKEN``), ``public_url``.
        """
        token = env(options.get("auth_token"), cls.env_prefix + "_AUTH_TOKEN")
        if not token:
            note_unchecked(cls.carrier, cls.env_prefix + "_AUTH_TOKEN")
            return True
        params = (
            parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            if request.method == "POST"
            else []
        )
        return validate_plivo_v3(
            request.method,
            options.get("public_url") or str(request.url),
            params,
            request.headers.get("X-Plivo-Signature-V3-Nonce"),
            request.headers.get("X-Plivo-Signature-V3"),
            token,
        )
