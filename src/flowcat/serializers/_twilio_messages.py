"""Typed Twilio Media Streams control messages (inbound ``connected``/``start``/``dtmf``/
``mark``/``stop``; outbound ``mark``/``clear``).

The ``mark`` and ``dtmf`` shapes (``{"mark":{"name"}}``, ``{"dtmf":{"digit"}}``) are shared
by every Twilio-shaped carrier (Twilio, Cloudonix, Telnyx, Exotel), so
:class:`~flowcat.serializers._media_stream.MediaStreamSerializer` reads them with these
classes for all of them. ``media`` is not typed: it is read as a raw dict on the audio path.

Each ``from_json`` takes the decoded message and raises
:class:`~flowcat.errors.ProtocolError` on a wrong type or a missing required field; the
serializer logs that as bad input and the call goes on.

Docs:
    https://www.twilio.com/docs/voice/media-streams/websocket-messages
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Self

from ..errors import ProtocolError
from ._wire import need_object, opt_int, opt_object, opt_str, opt_str_list, start_parts

__all__ = [
    "TwilioClear",
    "TwilioConnected",
    "TwilioDtmf",
    "TwilioMark",
    "TwilioMarkOut",
    "TwilioMediaFormat",
    "TwilioStart",
    "TwilioStop",
]

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class TwilioConnected:
    """``{"event":"connected","protocol":"Call","version":"1.0.0"}``."""

    protocol: str | None = None
    version: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "connected")
        return cls(
            protocol=opt_str(msg, "protocol", "connected"), version=opt_str(msg, "version", "connected")
        )


@dataclass(frozen=True, slots=True)
class TwilioMediaFormat:
    """``start.mediaFormat``: ``{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}``."""

    encoding: str | None = None
    sample_rate: int | None = None
    channels: int | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fmt = need_object(obj, "mediaFormat")
        what = "mediaFormat"
        return cls(
            encoding=opt_str(fmt, "encoding", what),
            sample_rate=opt_int(fmt, "sampleRate", what),
            channels=opt_int(fmt, "channels", what),
        )


@dataclass(frozen=True, slots=True)
class TwilioStart:
    """``start``: the stream and call ids, tracks, ``<Parameter>`` values and media format.

    ``stream_sid`` is the message's ``streamSid``, else ``start.streamSid``. Cloudonix
    sends its session token as ``start.session`` or ``start.sessionToken``; both are kept.
    """

    stream_sid: str | None = None
    call_sid: str | None = None
    account_sid: str | None = None
    tracks: tuple[str, ...] | None = None
    custom_parameters: dict[str, Any] = field(default_factory=dict)
    media_format: TwilioMediaFormat = field(default_factory=TwilioMediaFormat)
    session: str | None = None
    session_token: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg, start, fmt = start_parts(obj, "mediaFormat")
        what = "start"
        return cls(
            stream_sid=opt_str(msg, "streamSid", what) or opt_str(start, "streamSid", what),
            call_sid=opt_str(start, "callSid", what),
            account_sid=opt_str(start, "accountSid", what),
            tracks=opt_str_list(start, "tracks", what),
            custom_parameters=opt_object(start, "customParameters", what) or {},
            media_format=TwilioMediaFormat.from_json(fmt) if fmt is not None else TwilioMediaFormat(),
            session=opt_str(start, "session", what),
            session_token=opt_str(start, "sessionToken", what),
        )


@dataclass(frozen=True, slots=True)
class TwilioDtmf:
    """``{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"1"}}`` (the digit as sent)."""

    digit: str
    track: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "dtmf")
        dtmf = msg.get("dtmf")
        if not isinstance(dtmf, dict) or not isinstance(dtmf.get("digit"), str):
            raise ProtocolError("dtmf without a valid digit", obj)
        return cls(digit=dtmf["digit"], track=opt_str(dtmf, "track", "dtmf"))


@dataclass(frozen=True, slots=True)
class TwilioMark:
    """``{"event":"mark","mark":{"name":"utt-7"}}``: a mark's audio has played (or was cleared)."""

    name: str

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "mark")
        mark = msg.get("mark")
        if not isinstance(mark, dict) or not isinstance(mark.get("name"), str):
            raise ProtocolError("mark without a name", obj)
        return cls(name=mark["name"])


@dataclass(frozen=True, slots=True)
class TwilioStop:
    """``{"event":"stop","stop":{"accountSid","callSid"}}`` (Exotel adds ``reason``)."""

    account_sid: str | None = None
    call_sid: str | None = None
    reason: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "stop")
        stop = opt_object(msg, "stop", "stop") or {}
        return cls(
            account_sid=opt_str(stop, "accountSid", "stop"),
            call_sid=opt_str(stop, "callSid", "stop"),
            reason=opt_str(stop, "reason", "stop"),
        )


@dataclass(frozen=True, slots=True)
class TwilioMarkOut:
    """Outbound ``mark``; ``sid_key`` names the stream-id field (None: not sent, as for Telnyx)."""

    name: str
    stream_sid: str | None = None
    sid_key: str | None = "streamSid"

    def to_json(self) -> str:
        sid = "" if self.sid_key is None else f',"{self.sid_key}":{_DUMPS(self.stream_sid)}'
        return f'{{"event":"mark"{sid},"mark":{{"name":{_DUMPS(self.name)}}}}}'


@dataclass(frozen=True, slots=True)
class TwilioClear:
    """Outbound ``clear``: drop the queued audio (queued marks come back)."""

    stream_sid: str | None = None
    sid_key: str | None = "streamSid"

    def to_json(self) -> str:
        sid = "" if self.sid_key is None else f',"{self.sid_key}":{_DUMPS(self.stream_sid)}'
        return f'{{"event":"clear"{sid}}}'
