"""Typed Plivo (and Vobiz) audio-stream control messages: ``start``, ``dtmf``,
``playedStream`` (or ``played``), ``clearedAudio``.

``media`` is not typed (raw dict read on the audio path). ``from_json`` raises
:class:`~flowcat.errors.ProtocolError` on a wrong type or a missing required field; the
serializer logs it as bad input and the call goes on.

Docs:
    https://www.plivo.com/docs/voice/audio-streaming/audio-streaming
    https://docs.plivo.com/docs/voice/xml/audiostream
    https://vobiz.ai/docs (Stream Events: Plivo-compatible, ``accountId`` numeric)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Self

from ..errors import ProtocolError
from ._wire import need_object, opt_int, opt_str, opt_str_list, start_parts

__all__ = [
    "PlivoClearedAudio",
    "PlivoDtmf",
    "PlivoMediaFormat",
    "PlivoPlayedStream",
    "PlivoStart",
    "extra_headers",
]


def extra_headers(value: object) -> dict[str, Any]:
    """``extra_headers`` as a dict: sent as an object, a JSON string, or ``k=v;k2=v2``
    (``,`` also separates); anything else (or ``"{}"``) is empty."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value and value != "{}":
        try:
            parsed = json.loads(value)
            if isinstance(parsed, dict):
                return parsed
        except ValueError:
            pass
        return dict(p.split("=", 1) for p in value.replace(",", ";").split(";") if "=" in p)
    return {}


@dataclass(frozen=True, slots=True)
class PlivoMediaFormat:
    """``start.mediaFormat``: ``{"encoding":"audio/x-mulaw","sampleRate":8000}``."""

    encoding: str | None = None
    sample_rate: int | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fmt = need_object(obj, "mediaFormat")
        return cls(
            encoding=opt_str(fmt, "encoding", "mediaFormat"),
            sample_rate=opt_int(fmt, "sampleRate", "mediaFormat"),
        )


@dataclass(frozen=True, slots=True)
class PlivoStart:
    """``start``: call and stream ids, account (a string; Vobiz sends a number), tracks,
    media format, and the ``extraHeaders`` of the XML (top-level ``extra_headers``)."""

    stream_id: str | None = None
    call_id: str | None = None
    account_id: str | None = None
    tracks: tuple[str, ...] | None = None
    media_format: PlivoMediaFormat = field(default_factory=PlivoMediaFormat)
    extra_headers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg, start, fmt = start_parts(obj, "mediaFormat")
        what = "start"
        account = start.get("accountId")
        if account is not None and (isinstance(account, bool) or not isinstance(account, str | int)):
            raise ProtocolError("start whose accountId is not a string or number", obj)
        return cls(
            stream_id=opt_str(start, "streamId", what) or opt_str(msg, "streamId", what),
            call_id=opt_str(start, "callId", what),
            account_id=None if account is None else str(account),
            tracks=opt_str_list(start, "tracks", what),
            media_format=PlivoMediaFormat.from_json(fmt) if fmt is not None else PlivoMediaFormat(),
            extra_headers=extra_headers(msg.get("extra_headers")),
        )


@dataclass(frozen=True, slots=True)
class PlivoDtmf:
    """``dtmf``; its shape is unconfirmed, so all three seen forms are read: ``dtmf.digit``,
    a top-level ``digit``, or ``dtmf`` as a string. ``shape`` says which arrived."""

    digit: str
    shape: str

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "dtmf")
        dtmf = msg.get("dtmf")
        if isinstance(dtmf, dict) and "digit" in dtmf:
            digit, shape = dtmf.get("digit"), "dtmf.digit"
        elif "digit" in msg:
            digit, shape = msg.get("digit"), "top-level digit"
        else:
            digit, shape = dtmf, "string dtmf"
        if isinstance(digit, bool) or not isinstance(digit, str | int):
            raise ProtocolError("dtmf without a valid digit", obj)
        return cls(digit=str(digit), shape=shape)


@dataclass(frozen=True, slots=True)
class PlivoPlayedStream:
    """``{"event":"playedStream","streamId":"…","name":"utt-7"}``: a checkpoint's audio played
    (an older Plivo article names the event ``played``; ``event`` says which arrived)."""

    name: str
    event: str = "playedStream"
    stream_id: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "playedStream")
        name = msg.get("name")
        if not isinstance(name, str):
            raise ProtocolError("checkpoint acknowledgement without a name", obj)
        return cls(
            name=name,
            event=opt_str(msg, "event", "playedStream") or "playedStream",
            stream_id=opt_str(msg, "streamId", "playedStream"),
        )


@dataclass(frozen=True, slots=True)
class PlivoClearedAudio:
    """``{"event":"clearedAudio","sequenceNumber":43,"streamId":"…"}``: the clear was done."""

    stream_id: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "clearedAudio")
        return cls(stream_id=opt_str(msg, "streamId", "clearedAudio"))
