"""Twilio's regional REST API for the hang-up: ``region``/``edge`` pick
``https://api.{edge}.{region}.twilio.com`` (Twilio's documented
``{product}.{edge}.{region}.twilio.com`` form)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from flowcat.errors import ConfigError
from flowcat.frames import EndFrame
from flowcat.serializers import Carrier, CloudonixFrameSerializer, FrameSerializer, TwilioFrameSerializer
from flowcat.serializers.twilio import twilio_api_base
from test_serializer_conformance import FakeAPI


def _rest(ser: FrameSerializer) -> Carrier:
    """The serializer's carrier object (the REST side: API base, hang-up request)."""
    assert ser.rest is not None
    return ser.rest


START = [
    json.dumps(m)
    for m in json.loads((Path(__file__).parent / "fixtures/carriers/twilio_start.json").read_text())
]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TWILIO_REGION", "TWILIO_EDGE", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("region", "edge", "base"),
    [
        (None, None, "https://api.twilio.com"),
        ("au1", "sydney", "https://api.sydney.au1.twilio.com"),
        ("ie1", "dublin", "https://api.dublin.ie1.twilio.com"),
        ("us1", "ashburn-ix", "https://api.ashburn-ix.us1.twilio.com"),  # a private (Interconnect) edge
        (None, "umatilla", "https://api.umatilla.us1.twilio.com"),  # an edge alone: us1
        (" AU1 ", "Sydney", "https://api.sydney.au1.twilio.com"),
    ],
)
def test_regional_api_host(region: str | None, edge: str | None, base: str) -> None:
    assert twilio_api_base(region, edge) == base


@pytest.mark.parametrize(
    ("region", "edge", "message"),
    [
        ("au1", None, "region 'au1' needs an edge: Twilio's regional API host is api.{edge}.{region}"),
        ("au1", "sydney.evil.example/x?", "edge 'sydney.evil.example/x?' is not a Twilio edge name"),
        ("a u1", "sydney", "region 'a u1' is not a Twilio region name"),
    ],
)
def test_a_region_without_an_edge_or_a_bad_name_is_refused(
    region: str, edge: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        twilio_api_base(region, edge)
    assert message in str(err.value)
    with pytest.raises(ConfigError):
        TwilioFrameSerializer(region=region, edge=edge)


def test_the_serializer_takes_region_and_edge_from_arguments_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _rest(TwilioFrameSerializer()).api_base == "https://api.twilio.com"
    assert (
        _rest(TwilioFrameSerializer(region="au1", edge="sydney")).api_base
        == "https://api.sydney.au1.twilio.com"
    )
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    assert _rest(TwilioFrameSerializer()).api_base == "https://api.dublin.ie1.twilio.com"
    assert (
        _rest(TwilioFrameSerializer(region="au1", edge="sydney")).api_base
        == "https://api.sydney.au1.twilio.com"
    )
    # An explicit base URL (a Twilio-compatible API, a test server) wins.
    assert _rest(TwilioFrameSerializer(api_base="http://127.0.0.1:9/")).api_base == "http://127.0.0.1:9"
    # Cloudonix speaks Twilio's stream protocol but has its own API: Twilio's region does not apply.
    assert _rest(CloudonixFrameSerializer()).api_base == "https://api.cloudonix.io"


async def _started(ser: TwilioFrameSerializer) -> TwilioFrameSerializer:
    for msg in START:
        await ser.handshake(msg)
    assert ser.call_id == "CA0001"
    return ser


async def test_regional_hang_up_request_and_its_delivery_to_a_local_api() -> None:
    ser = await _started(
        TwilioFrameSerializer(account_sid="AC0001", auth_token="tok", region="au1", edge="sydney")
    )
    req = _rest(ser).hang_up_request(ser.call_id, ser.call_info)
    assert req is not None
    method, url, headers, body = req
    assert (method, url) == (
        "POST",
        "https://api.sydney.au1.twilio.com/2010-04-01/Accounts/AC0001/Calls/CA0001.json",
    )
    assert headers == {"Authorization": "Basic " + base64.b64encode(b"AC0001:tok").decode()}
    assert body == ("form", {"Status": "completed"})

    # The same request, with the base URL pointed at a fake Twilio API on 127.0.0.1.
    async with FakeAPI() as api:
        ser = await _started(
            TwilioFrameSerializer(
                account_sid="AC0001", auth_token="tok", region="au1", edge="sydney", api_base=api.url
            )
        )
        await ser.serialize(EndFrame())
        assert len(api.requests) == 1
        got = api.requests[0]
        assert (got["method"], got["path"], got["body"]) == (
            "POST",
            "/2010-04-01/Accounts/AC0001/Calls/CA0001.json",
            "Status=completed",
        )
        assert got["headers"]["Authorization"] == headers["Authorization"]
