"""Carrier objects own the HTTP side (answer documents, request checks, busy refusal):
the same documents and statuses as when they were serializer class methods, and the
server finds and uses them."""

from __future__ import annotations

import pytest

import flowcat.serializers as s
from flowcat.serializers import Carrier, FastSerializer, FrameSerializer

X = '<?xml version="1.0" encoding="UTF-8"?>'
REJECT = X + '<Response><Reject reason="busy"/></Response>'
HANGUP = X + '<Response><Hangup reason="busy"/></Response>'

# What each carrier answered before the move (serializer class methods and the
# server's refusal table), for the stream URL wss://bot.example.com/<carrier>/ws.
BEFORE: dict[str, tuple[str | None, str, int, str | None]] = {
    "twilio": (
        X + '<Response><Connect><Stream url="wss://bot.example.com/twilio/ws"/></Connect></Response>',
        "application/xml",
        403,
        REJECT,
    ),
    "telnyx": (
        X + '<Response><Connect><Stream url="wss://bot.example.com/telnyx/ws" bidirectionalMode="rtp" '
        'bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000"/></Connect></Response>',
        "application/xml",
        403,
        REJECT,
    ),
    "plivo": (
        X + '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">'
        "wss://bot.example.com/plivo/ws</Stream></Response>",
        "application/xml",
        403,
        HANGUP,
    ),
    "vobiz": (
        X + '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">'
        "wss://bot.example.com/vobiz/ws</Stream></Response>",
        "application/xml",
        403,
        HANGUP,
    ),
    "vonage": (
        '[{"action":"connect","endpoint":[{"type":"websocket","uri":"wss://bot.example.com/vonage/ws",'
        '"content-type":"audio/l16;rate=16000"}]}]',
        "application/json",
        401,
        None,
    ),
    "cloudonix": (
        X + '<Response><Connect><Stream url="wss://bot.example.com/cloudonix/ws"/></Connect><Hangup/></Response>',
        "application/xml",
        403,
        REJECT,
    ),
    "exotel": (None, "application/xml", 403, None),
    "genesys": (None, "application/xml", 401, None),
    "asterisk": (None, "application/xml", 403, None),
}


def _carrier(name: str) -> type[Carrier]:
    cls = getattr(s, name.capitalize() + "Carrier")
    assert issubclass(cls, Carrier) and cls.carrier == name
    return cls  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_carrier_answers_as_before(name: str) -> None:
    doc, content_type, status, busy = BEFORE[name]
    carrier = _carrier(name)
    if doc is None:
        with pytest.raises(NotImplementedError):
            carrier.answer_document(f"wss://bot.example.com/{name}/ws")
    else:
        assert carrier.answer_document(f"wss://bot.example.com/{name}/ws") == doc
    assert carrier.answer_content_type == content_type
    assert carrier.auth_failure_status == status
    assert carrier.busy_refusal() == (None if busy is None else (busy, "application/xml"))


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_each_carrier_names_its_serializer_which_speaks_only_the_wire(name: str) -> None:
    ser = _carrier(name).serializer
    assert issubclass(ser, FrameSerializer) and issubclass(ser, FastSerializer)
    assert ser.carrier == name
    for http_side in ("answer", "answer_document", "verify_request", "verify_websocket", "busy_refusal"):
        assert not hasattr(ser, http_side), f"{ser.__name__}.{http_side}"


def test_server_adapter_uses_the_carrier_objects() -> None:
    from flowcat.server._carrier_adapters import build

    for name in BEFORE:
        adapter = build(name)
        assert adapter is not None and adapter.cls is _carrier(name)
        assert adapter.refusal_status == BEFORE[name][2]
