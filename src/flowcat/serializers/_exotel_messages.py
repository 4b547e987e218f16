"""Typed Exotel AgentStream control messages (``start``).

``connected``, ``dtmf``, ``mark`` and ``stop`` (``stop.reason``) have Twilio's shapes and
are read with the classes of ``_twilio_messages.py``; ``media`` is not typed (raw dict
read on the audio path). ``from_json`` raises :class:`~flowcat.errors.ProtocolError` on a
wrong type or a missing required field; the serializer logs it as bad input and the call
goes on.

Docs:
    https://developer.exotel.com/docs/agentstream/websocket-protocol
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from ._wire import need_object, opt_object, opt_str, start_parts

__all__ = ["ExotelMediaFormat", "ExotelStart"]


@dataclass(frozen=True, slots=True)
class ExotelMediaFormat:
    """``start.media_format``: ``{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}``.

    ``sample_rate`` and ``bit_rate`` are kept as sent (Exotel sends strings): the
    serializer reads the rate and logs an unreadable one, keeping the applet's rate.
    """

    encoding: str | None = None
    sample_rate: object = None
    bit_rate: object = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fmt = need_object(obj, "media_format")
        return cls(
            encoding=opt_str(fmt, "encoding", "media_format"),
            sample_rate=fmt.get("sample_rate"),
            bit_rate=fmt.get("bit_rate"),
        )


@dataclass(frozen=True, slots=True)
class ExotelStart:
    """``start``: stream, call and account ids, numbers, custom parameters, media format."""

    stream_sid: str | None = None
    call_sid: str | None = None
    account_sid: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    custom_parameters: dict[str, Any] = field(default_factory=dict)
    media_format: ExotelMediaFormat = field(default_factory=ExotelMediaFormat)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg, start, fmt = start_parts(obj, "media_format")
        what = "start"
        return cls(
            stream_sid=opt_str(msg, "stream_sid", what) or opt_str(start, "stream_sid", what),
            call_sid=opt_str(start, "call_sid", what),
            account_sid=opt_str(start, "account_sid", what),
            from_number=opt_str(start, "from", what),
            to_number=opt_str(start, "to", what),
            custom_parameters=opt_object(start, "custom_parameters", what) or {},
            media_format=ExotelMediaFormat.from_json(fmt) if fmt is not None else ExotelMediaFormat(),
        )
