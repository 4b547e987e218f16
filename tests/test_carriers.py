"""Carrier objects own the HTTP side (answer documents, request checks, busy refusal):
the same documents and statuses as when they were serializer class methods, and the
server finds and uses them."""

from __future__ import annotations

import json
import os
from typing import Any

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
        X
        + '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">'
        "wss://bot.example.com/plivo/ws</Stream></Response>",
        "application/xml",
        403,
        HANGUP,
    ),
    "vobiz": (
        X
        + '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">'
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
        X
        + '<Response><Connect><Stream url="wss://bot.example.com/cloudonix/ws"/></Connect><Hangup/></Response>',
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


# The REST hang-up requests the serializers built before the carrier objects took them over
# (``ser.hang_up_request()`` on the main branch, explicit credentials, no environment).
HANG_UPS_BEFORE: dict[str, Any] = {
    "twilio": [
        "POST",
        "http://api.local/2010-04-01/Accounts/AC1/Calls/CA1.json",
        {"Authorization": "Basic QUMxOnRvaw=="},
        ["form", {"Status": "completed"}],
    ],
    "telnyx": [
        "POST",
        "http://api.local/v2/calls/v3:cc1/actions/hangup",
        {"Authorization": "Bearer KEY1"},
        ["json", {}],
    ],
    "plivo": [
        "DELETE",
        "http://api.local/v1/Account/MA1/Call/uuid-1/",
        {"Authorization": "Basic TUExOnB0b2s="},
        None,
    ],
    "vobiz": [
        "DELETE",
        "https://api.vobiz.ai/api/v1/Account/MA2/Call/uuid-2/",
        {"X-Auth-ID": "MA2", "X-Auth-Token": "vtok"},
        None,
    ],
    "vonage": [
        "PUT",
        "https://api.nexmo.com/v1/calls/vg-1",
        {"Authorization": "Bearer a.b.c"},
        ["json", {"action": "hangup"}],
    ],
    "cloudonix": [
        "DELETE",
        "https://api.cloudonix.io/customers/self/domains/d.cx/sessions/st-1",
        {"Authorization": "Bearer cxk"},
        None,
    ],
    "twilio-info": [
        "POST",
        "http://api.local/2010-04-01/Accounts/AC2/Calls/CA2.json",
        {"Authorization": "Basic QUMyOnRvaw=="},
        ["form", {"Status": "completed"}],
    ],
    "cloudonix-info": [
        "DELETE",
        "https://api.cloudonix.io/customers/self/domains/d.cx/sessions/st-2",
        {"Authorization": "Bearer cxk"},
        None,
    ],
    "exotel": True,
    "genesys": True,
    "asterisk": True,
}


def _hang_up_cases() -> dict[str, Any]:
    from flowcat.serializers import (
        AsteriskFrameSerializer,
        CloudonixFrameSerializer,
        ExotelFrameSerializer,
        GenesysFrameSerializer,
        PlivoFrameSerializer,
        TelnyxFrameSerializer,
        TwilioFrameSerializer,
        VobizFrameSerializer,
        VonageFrameSerializer,
    )
    from flowcat.serializers._call import CallInfo

    sers: dict[str, FrameSerializer] = {
        "twilio": TwilioFrameSerializer(
            account_sid="AC1", auth_token="tok", call_id="CA1", api_base="http://api.local"
        ),
        "telnyx": TelnyxFrameSerializer(api_key="KEY1", call_id="v3:cc1", api_base="http://api.local"),
        "plivo": PlivoFrameSerializer(
            auth_id="MA1", auth_token="ptok", call_id="uuid-1", api_base="http://api.local"
        ),
        "vobiz": VobizFrameSerializer(auth_id="MA2", auth_token="vtok", call_id="uuid-2"),
        "vonage": VonageFrameSerializer(jwt="a.b.c", call_id="vg-1"),
        "cloudonix": CloudonixFrameSerializer(
            api_key="cxk", domain="d.cx", session_token="st-1", call_id="CA9"
        ),
    }
    twilio = TwilioFrameSerializer(auth_token="tok", api_base="http://api.local")
    twilio.set_call(
        CallInfo(
            carrier="twilio", stream_id="MZ", call_id="CA2", codec="PCMU", sample_rate=8000, account_id="AC2"
        )
    )
    sers["twilio-info"] = twilio
    cx = CloudonixFrameSerializer(api_key="cxk", domain="d.cx")
    cx.set_call(
        CallInfo(
            carrier="cloudonix",
            stream_id="MZ",
            call_id="CA3",
            codec="PCMU",
            sample_rate=8000,
            extra={"session": "st-2"},
        )
    )
    sers["cloudonix-info"] = cx
    out: dict[str, Any] = {}
    for name, ser in sers.items():
        assert ser.rest is not None
        out[name] = json.loads(json.dumps(ser.rest.hang_up_request(ser.call_id, ser.call_info)))
    for cls in (ExotelFrameSerializer, GenesysFrameSerializer, AsteriskFrameSerializer):
        out[cls.carrier] = cls(call_id="x").rest is None
    return out


def test_carrier_objects_build_the_same_hang_up_requests_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.split("_")[0] in ("TWILIO", "TELNYX", "PLIVO", "VOBIZ", "VONAGE", "CLOUDONIX"):
            monkeypatch.delenv(key)
    assert _hang_up_cases() == HANG_UPS_BEFORE
