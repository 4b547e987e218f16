"""A brain's ``Transfer`` ends in the carrier's REST transfer, through the real server route.

The server (``create_app``) runs ``[BrainProcessor(brain that transfers at once)]`` per call; a
carrier's media-stream client connects on ``/{carrier}/ws``; the carrier's REST API is
``FakeAPI`` on 127.0.0.1 (``FLOWCAT_<CARRIER>_API_BASE``). Asserted: the exact request (method,
path, auth, body) and that no hang-up follows it when the call ends (it would end the
transferred call). Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with
``Twiml=<Response><Dial>target</Dial></Response>``
(https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource). Telnyx:
``POST /v2/calls/{call_control_id}/actions/transfer`` with ``{"to": target}``
(https://developers.telnyx.com/api-reference/call-commands/transfer-call). A carrier with no
transfer over its API (Plivo here) warns and hangs up (``transfer_fallback="hang_up"``), or keeps
the call (``"continue"``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp.test_utils import TestClient, TestServer

from flowcat.agent import AgentBrain, BrainEvent, BrainProcessor, CallStarted, Transfer
from flowcat.frames import TransferCallFrame
from flowcat.serializers import PlivoFrameSerializer, TwilioFrameSerializer
from flowcat.serializers.twilio import twiml_dial
from flowcat.server import CallInfo, ServerConfig, create_app
from flowcat.services import close_http_sessions
from test_serializer_conformance import FakeAPI

pytestmark = pytest.mark.usefixtures("no_outside_connections")

PUBLIC = "https://bot.example.test"
FIXTURES = Path(__file__).parent / "fixtures" / "carriers"
TARGET = "+15550100"


class API(FakeAPI):
    """FakeAPI with an event set at each request."""

    def __init__(self) -> None:
        super().__init__()
        self.requested = asyncio.Event()

    async def _handle(self, request: Any) -> Any:
        try:
            return await super()._handle(request)
        finally:
            self.requested.set()


class TransferAtOnce(AgentBrain):
    async def handle(self, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, CallStarted):
            yield Transfer(TARGET, say="Putting you through.")


def _app(call: CallInfo) -> list[Any]:
    return [BrainProcessor(TransferAtOnce(), silence_timeout_secs=None)]


async def _call(client: TestClient, carrier: str, api: API, headers: dict[str, str] | None = None) -> None:
    """One call on ``/{carrier}/ws``: the handshake, then wait (bounded) for the REST request."""
    ws = await client.ws_connect(f"/{carrier}/ws", headers=headers or {})
    for m in json.loads((FIXTURES / f"{carrier}_start.json").read_text()):
        await ws.send_str(json.dumps(m))

    await asyncio.wait_for(api.requested.wait(), 10)
    await ws.close()
    for _ in range(250):  # the call ends: its end must not hang the transferred call up
        if (await (await client.get("/healthz")).json())["active"] == 0:
            break
        await asyncio.sleep(0.02)


async def _server() -> TestClient:
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000, public_url=PUBLIC, app=_app)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    return client


async def test_twilio_transfer_updates_the_call_with_dial_twiml(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "twilio-token-0123456789"
    for var in ("TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_REGION", "TWILIO_EDGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC0001")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", token)
    # Twilio signs the wss:// URL it dialled (the upgrade has no parameters).
    sig = base64.b64encode(hmac.new(token.encode(), f"{PUBLIC.replace('https', 'wss')}/twilio/ws".encode(),
                                    hashlib.sha1).digest()).decode()
    async with API() as api:
        api.status = 200
        monkeypatch.setenv("FLOWCAT_TWILIO_API_BASE", api.url)
        client = await _server()
        try:
            await _call(client, "twilio", api, {"X-Twilio-Signature": sig})
        finally:
            await client.close()
            await close_http_sessions()
    assert len(api.requests) == 1, api.requests
    req = api.requests[0]
    assert (req["method"], req["path"]) == ("POST", "/2010-04-01/Accounts/AC0001/Calls/CA0001.json")
    assert req["headers"]["Authorization"] == "Basic " + base64.b64encode(f"AC0001:{token}".encode()).decode()
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(req["body"]) == {"Twiml": ["<Response><Dial>+15550100</Dial></Response>"]}


async def test_telnyx_transfer_is_the_call_control_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELNYX_API_KEY", "KEY0123")
    async with API() as api:
        api.status = 200
        monkeypatch.setenv("FLOWCAT_TELNYX_API_BASE", api.url)
        client = await _server()
        try:
            await _call(client, "telnyx", api)
        finally:
            await client.close()
            await close_http_sessions()
    assert len(api.requests) == 1, api.requests
    req = api.requests[0]
    assert (req["method"], req["path"]) == ("POST", "/v2/calls/v2:T02lcc/actions/transfer")
    assert req["headers"]["Authorization"] == "Bearer KEY0123"
    assert json.loads(req["body"]) == {"to": TARGET}


def test_dial_twiml_escapes_and_dials_sip_uris() -> None:
    assert twiml_dial(" +15550100 ") == "<Response><Dial>+15550100</Dial></Response>"
    assert twiml_dial("sip:desk@pbx.example.com;transport=tls") == (
        "<Response><Dial><Sip>sip:desk@pbx.example.com;transport=tls</Sip></Dial></Response>")
    assert twiml_dial("a<b>&c") == "<Response><Dial>a&lt;b&gt;&amp;c</Dial></Response>"


async def test_a_refused_twilio_transfer_hangs_up_per_policy(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeAPI() as api:
        api.status = 400
        ser = TwilioFrameSerializer(account_sid="AC1", auth_token="tok", call_id="CA1", api_base=api.url)
        await ser.serialize(TransferCallFrame(target=TARGET))
        assert await asyncio.wait_for(ser.transfer_task, 10) is False
    assert [parse_qs(r["body"]) for r in api.requests] == [
        {"Twiml": ["<Response><Dial>+15550100</Dial></Response>"]}, {"Status": ["completed"]}]
    assert ser.transferred_to is None
    assert "cannot transfer to +15550100 (the transfer request failed); ending the call" in caplog.text


async def test_a_carrier_without_transfer_warns_then_hangs_up_or_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with FakeAPI() as api:
        ser = PlivoFrameSerializer(auth_id="MA1", auth_token="ptok", call_id="uuid-1", api_base=api.url)
        await ser.serialize(TransferCallFrame(target=TARGET))
        assert await asyncio.wait_for(ser.transfer_task, 10) is False
        assert [(r["method"], r["path"]) for r in api.requests] == [("DELETE", "/v1/Account/MA1/Call/uuid-1/")]
        assert "plivo: call uuid-1: cannot transfer to +15550100 (the carrier has no transfer over its API); " \
               "ending the call" in caplog.text
        keep = PlivoFrameSerializer(auth_id="MA1", auth_token="ptok", call_id="uuid-2", api_base=api.url,
                                    transfer_fallback="continue")
        await keep.serialize(TransferCallFrame(target=TARGET))
        assert await asyncio.wait_for(keep.transfer_task, 10) is False
        assert len(api.requests) == 1  # no hang-up: the call stays with the agent
        assert "the call stays with the agent" in caplog.text
