"""Typed Vonage Voice API WebSocket control messages (``websocket:connected``,
``websocket:dtmf``, ``websocket:notify``; outbound ``notify``).

Audio travels in binary frames and is not typed. ``from_json`` raises
:class:`~flowcat.errors.ProtocolError` on a wrong type or a missing required field; the
serializer logs it as bad input and the call goes on.

Docs:
    https://developer.vonage.com/en/voice/voice-api/concepts/websockets
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Self

from ..errors import ProtocolError
from ._wire import need_object, opt_int, opt_object, opt_str

__all__ = ["VonageConnected", "VonageDtmf", "VonageNotify", "VonageNotifyOut"]

_RESERVED = frozenset(("event", "content-type"))


@dataclass(frozen=True, slots=True)
class VonageConnected:
    """``{"event":"websocket:connected","content-type":"audio/l16;rate=16000","call_ref":"8f3c"}``.

    ``headers`` are the NCCO endpoint's ``headers``, echoed at top level (every key but
    ``event`` and ``content-type``); ``call_uuid`` is the ``call_uuid`` (else ``uuid``) header.
    """

    content_type: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    call_uuid: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "websocket:connected")
        headers = {k: v for k, v in msg.items() if k not in _RESERVED}
        call = headers.get("call_uuid") or headers.get("uuid")
        if call is not None and (isinstance(call, bool) or not isinstance(call, str | int)):
            raise ProtocolError("websocket:connected whose call_uuid is not a string", obj)
        return cls(
            content_type=opt_str(msg, "content-type", "websocket:connected"),
            headers=headers,
            call_uuid=str(call) if call else None,
        )


@dataclass(frozen=True, slots=True)
class VonageDtmf:
    """``{"event":"websocket:dtmf","digit":"5","duration":260}`` (``dtmf.digit`` is read too)."""

    digit: str
    duration: int | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "websocket:dtmf")
        dtmf = msg.get("dtmf")
        body = dtmf if isinstance(dtmf, dict) else msg
        digit = body.get("digit")
        if isinstance(digit, bool) or not isinstance(digit, str | int):
            raise ProtocolError("dtmf without a valid digit", obj)
        return cls(digit=str(digit), duration=opt_int(body, "duration", "websocket:dtmf"))


@dataclass(frozen=True, slots=True)
class VonageNotify:
    """``{"event":"websocket:notify","payload":{"name":"utt-7"}}``: the audio before our
    ``notify`` has played (its payload echoed; flowcat's carries the mark ``name``)."""

    name: str
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg = need_object(obj, "websocket:notify")
        payload = opt_object(msg, "payload", "websocket:notify")
        name = payload.get("name") if payload is not None else None
        if payload is None or not isinstance(name, str):
            raise ProtocolError("notify without payload.name", obj)
        return cls(name=name, payload=payload)


@dataclass(frozen=True, slots=True)
class VonageNotifyOut:
    """Outbound ``{"action":"notify","payload":{"name":"utt-7"}}`` (a mark)."""

    name: str

    def to_json(self) -> str:
        return f'{{"action":"notify","payload":{{"name":{json.dumps(self.name)}}}}}'
