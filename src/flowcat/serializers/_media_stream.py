"""Shared machinery for Twilio-shaped JSON media streams (Twilio, Telnyx, Exotel, Cloudonix).

All four send JSON text frames ``{"event": ..., ...}`` with base64 audio in
``media.payload`` and take ``media``/``mark``/``clear`` back; they differ in field
spelling (camelCase or snake_case), in whether outgoing messages name the stream,
and in codec. Subclasses set the class attributes and parse their ``start``.
Control messages are read through the typed messages of ``_twilio_messages.py``
(and each carrier's ``start`` class); ``media`` stays a raw dict read.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any, ClassVar

from ..errors import ProtocolError
from ..frames import Frame
from ._base import CallInfo, FrameSerializer, WireOut, dtmf_frame
from ._json import decode_media_payload, dispatch_event, parse_json_object
from ._twilio_messages import TwilioClear, TwilioConnected, TwilioDtmf, TwilioMark, TwilioMarkOut, TwilioStop

__all__ = ["MediaStreamSerializer", "PrefixedJsonMedia"]

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class PrefixedJsonMedia:
    """Outbound media and clear messages from texts built once per stream.

    Mixed in before :class:`FrameSerializer`; ``_on_stream_id`` sets ``_media_prefix``
    (a media message up to its base64 payload) and ``_clear``.
    """

    __slots__ = ()
    _media_prefix: str
    _clear: str

    def _media_message(self, data: bytes) -> WireOut:
        return self._media_prefix + b64encode(data).decode("ascii") + '"}}'

    def _clear_message(self) -> WireOut:
        return self._clear


class MediaStreamSerializer(PrefixedJsonMedia, FrameSerializer):
    """Base of the Twilio-shaped carriers.

    Class attributes:
        out_sid_key: Name of the stream-id field in outgoing messages, or None to omit it.
        events: Event name → handler method name.
    """

    out_sid_key: ClassVar[str | None] = "streamSid"
    has_marks = True
    events: ClassVar[dict[str, str]] = {
        "connected": "_on_connected",
        "start": "_on_start",
        "dtmf": "_on_dtmf",
        "mark": "_on_mark",
        "stop": "_on_stop",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._media_prefix = ""
        self._clear = ""
        self._on_stream_id()

    # ---------------------------------------------------------------- inbound

    def _deserialize(self, data: str | bytes) -> Frame | None:
        # Per inbound audio frame: this parse-and-media prologue is repeated in
        # plivo.py on purpose (a shared helper would add a call per frame).
        msg = parse_json_object(self, data, text_only=True)
        if msg is None:
            return None
        event = msg.get("event")
        if event == "media":
            audio = decode_media_payload(self, msg, data)
            if audio is None:
                return None
            if not audio:
                return None
            return self.decode(audio)
        return dispatch_event(self, self.events, event, msg, data)

    def _on_connected(self, msg: dict[str, Any], raw: str) -> None:
        try:
            hello = TwilioConnected.from_json(msg)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        self.note("connected", "connected (protocol %s, version %s)", hello.protocol, hello.version)

    def _on_start(self, msg: dict[str, Any], raw: str) -> None:
        try:
            info = self._parse_start(msg, raw)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        if info is not None:
            self.set_call(info)

    def _parse_start(self, msg: dict[str, Any], raw: str) -> CallInfo | None:
        """The call a ``start`` message describes (parsed with the carrier's typed message).

        Raises:
            ProtocolError: A malformed ``start`` (reported as bad input by the caller).
        """
        raise NotImplementedError

    def _on_dtmf(self, msg: dict[str, Any], raw: str) -> Frame | None:
        try:
            frame = dtmf_frame(TwilioDtmf.from_json(msg).digit)
        except ProtocolError:
            frame = None
        if frame is None:
            self.bad_input("dtmf without a valid digit", raw)
        return frame

    def _on_mark(self, msg: dict[str, Any], raw: str) -> None:
        try:
            mark = TwilioMark.from_json(msg)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        self.marks.echoed(mark.name)

    def _on_stop(self, msg: dict[str, Any], raw: str) -> None:
        self.remote_ended = True  # whatever else it says: the stream is over
        try:
            stop = TwilioStop.from_json(msg)
        except ProtocolError as exc:
            self.bad_input(str(exc), raw)
            return
        if stop.reason:
            self.note("stop", "stream stopped: %s", stop.reason)

    def _codec_of(self, encoding: object, known: dict[str, str], raw: str) -> str:
        """Map a carrier encoding name to a codec; log and keep the default if unknown."""
        codec = known.get(str(encoding)) if encoding is not None else self.default_codec
        if codec is None:
            self.bad_input(f"unsupported encoding {encoding!r} (keeping {self.default_codec})", raw)
            return self.default_codec
        return codec

    # ---------------------------------------------------------------- outbound

    def _on_stream_id(self) -> None:
        key = self.out_sid_key
        sid = "" if key is None else f',"{key}":{_DUMPS(self.stream_id)}'
        self._media_prefix = f'{{"event":"media"{sid},"media":{{"payload":"'
        self._clear = TwilioClear(self.stream_id, key).to_json()

    def _mark_message(self, name: str) -> WireOut:
        return TwilioMarkOut(name, self.stream_id, self.out_sid_key).to_json()
