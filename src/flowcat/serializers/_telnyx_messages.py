"""Typed Telnyx media-streaming control messages (``start``, ``error``).

``connected``, ``dtmf``, ``mark`` and ``stop`` have Twilio's shapes and are read with the
classes of ``_twilio_messages.py``; ``media`` is not typed (raw dict read on the audio
path). ``from_json`` raises :class:`~flowcat.errors.ProtocolError` on a wrong type or a
missing required field; the serializer logs it as bad input and the call goes on.

Docs:
    https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from ._wire import need_object, opt_int, opt_object, opt_str, opt_str_list, start_parts

__all__ = ["TelnyxError", "TelnyxMediaFormat", "TelnyxStart"]


@dataclass(frozen=True, slots=True)
class TelnyxMediaFormat:
    """``start.media_format``: ``{"encoding":"PCMU","sample_rate":8000,"channels":1}``.

    ``sample_rate`` is kept as sent (a number or a numeric string, in the wild): the
    serializer reads it and logs an unreadable one (falling back to 8000 Hz) rather than
    refusing the call.
    """

    encoding: str | None = None
    sample_rate: object = None
    channels: int | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fmt = need_object(obj, "media_format")
        return cls(
            encoding=opt_str(fmt, "encoding", "media_format"),
            sample_rate=fmt.get("sample_rate"),
            channels=opt_int(fmt, "channels", "media_format"),
        )


@dataclass(frozen=True, slots=True)
class TelnyxStart:
    """``start``: stream id, Call Control ids, numbers, tags, client state, media format."""

    stream_id: str | None = None
    call_control_id: str | None = None
    call_session_id: str | None = None
    user_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    tags: tuple[str, ...] | None = None
    client_state: str | None = None
    custom_parameters: dict[str, Any] = field(default_factory=dict)
    media_format: TelnyxMediaFormat = field(default_factory=TelnyxMediaFormat)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg, start, fmt = start_parts(obj, "media_format")
        what = "start"
        return cls(
            stream_id=opt_str(msg, "stream_id", what),
            call_control_id=opt_str(start, "call_control_id", what),
            call_session_id=opt_str(start, "call_session_id", what),
            user_id=opt_str(start, "user_id", what),
            from_number=opt_str(start, "from", what),
            to_number=opt_str(start, "to", what),
            tags=opt_str_list(start, "tags", what),
            client_state=opt_str(start, "client_state", what),
            custom_parameters=opt_object(start, "custom_parameters", what) or {},
            media_format=TelnyxMediaFormat.from_json(fmt) if fmt is not None else TelnyxMediaFormat(),
        )


@dataclass(frozen=True, slots=True)
class TelnyxError:
    """``{"event":"error","payload":{...}}`` (inner fields undocumented: kept as sent)."""

    payload: object = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "error")
        return cls(payload=msg.get("payload", msg))
