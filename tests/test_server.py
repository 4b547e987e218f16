"""Server routes: health, readiness, raw media echo, admission (503), answer webhooks, signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import sys
import types
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from flowcat.errors import ConfigError
from flowcat.server import (
    Admission,
    CallInfo,
    EchoProcessor,
    ServerConfig,
    carrier_names,
    create_app,
    default_app,
    load_app,
)
from test_transport_support import StartFlag

PUBLIC = "https://bot.example.test"
TWILIO_START = Path(__file__).parent / "fixtures" / "carriers" / "twilio_start.json"


async def _client(**kw: object) -> TestClient:
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000, public_url=PUBLIC, **kw)  # type: ignore[arg-type]
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    return client


async def test_healthz_and_readyz_report_counters() -> None:
    client = await _client(capacity=7, worker_id=3)
    try:
        r = await client.get("/healthz")
        body = await r.json()
        assert r.status == 200
        assert body["status"] == "ok"
        assert (body["worker"], body["capacity"], body["active"], body["rejected"]) == (3, 7, 0, 0)
        r = await client.get("/readyz")
        assert r.status == 200
    finally:
        await client.close()


async def test_raw_ws_echoes_bytes_through_the_pipeline() -> None:
    client = await _client()
    try:
        ws = await client.ws_connect("/ws?sample_rate=8000")
        payloads = [bytes([i]) * 320 for i in range(5)]  # 20 ms of 8 kHz PCM16 each
        for p in payloads:
            await ws.send_bytes(p)
        got = [(await asyncio.wait_for(ws.receive(), 3.0)).data for _ in payloads]
        assert got == payloads
        health = await (await client.get("/healthz")).json()
        assert health["active"] == 1 and health["accepted"] == 1
        await ws.close()
        for _ in range(100):
            health = await (await client.get("/healthz")).json()
            if health["active"] == 0:
                break
            await asyncio.sleep(0.02)
        assert health["active"] == 0 and health["completed"] == 1
    finally:
        await client.close()


async def test_plain_get_to_a_media_route_is_400_and_not_counted_as_a_call() -> None:
    client = await _client(capacity=1)
    try:
        for path in ("/ws", "/twilio/ws", "/ws", "/twilio/ws"):
            r = await client.get(path)
            assert r.status == 400, path
        health = await (await client.get("/healthz")).json()
        counters = {k: health[k] for k in ("active", "accepted", "rejected", "completed")}
        assert counters == {"active": 0, "accepted": 0, "rejected": 0, "completed": 0}
        ws = await client.ws_connect("/ws")  # a real call is still admitted and counted (capacity 1)
        health = await (await client.get("/healthz")).json()
        assert (health["active"], health["accepted"]) == (1, 1)
        await ws.close()
    finally:
        await client.close()


async def test_ws_past_capacity_gets_503_before_upgrade() -> None:
    client = await _client(capacity=1)
    try:
        ws1 = await client.ws_connect("/ws")
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/ws")
        assert err.value.status == 503
        r = await client.get("/readyz")
        assert r.status == 503
        health = await (await client.get("/healthz")).json()
        assert (health["active"], health["rejected"], health["capacity"]) == (1, 1, 1)
        # The admitted call is unaffected.
        await ws1.send_bytes(b"\x01\x02" * 160)
        assert (await asyncio.wait_for(ws1.receive(), 3.0)).data == b"\x01\x02" * 160
        await ws1.close()
    finally:
        await client.close()


async def test_carrier_ws_past_capacity_gets_503() -> None:
    client = await _client(capacity=0)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/twilio/ws")
        assert err.value.status == 503
    finally:
        await client.close()


async def test_media_before_start_is_dropped_and_logged_once_with_context(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    caplog.set_level(logging.INFO)
    started: asyncio.Queue[None] = asyncio.Queue()
    client = await _client(app=lambda call: [StartFlag(started), EchoProcessor()])
    early = [
        json.dumps(
            {
                "event": "media",
                "streamSid": "MZ0001",
                "media": {"payload": base64.b64encode(bytes([n]) * 160).decode()},
            }
        )
        for n in (0x11, 0x22, 0x33)
    ]
    connected, start = (json.dumps(m) for m in json.loads(TWILIO_START.read_text()))
    try:
        ws = await client.ws_connect("/twilio/ws")
        await ws.send_str(connected)
        for m in early:
            await ws.send_str(m)
        await ws.send_str(start)
        await asyncio.wait_for(started.get(), 5.0)
        # The call goes on: caller audio after the start is echoed back.
        await ws.send_str(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": "MZ0001",
                    "media": {"payload": base64.b64encode(b"\x40" * 160).decode()},
                }
            )
        )
        while True:
            msg = json.loads((await asyncio.wait_for(ws.receive(), 5.0)).data)
            if msg["event"] == "media":
                break
        assert base64.b64decode(msg["media"]["payload"]) == b"\x40" * 160  # the first audio echoed
        await ws.close()
    finally:
        await client.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # the first dropped message, then the count: not one line each
    assert warnings[0].startswith("twilio: dropped InputAudioRawFrame (received before the start message): ")
    assert '"event": "media"' in warnings[0]
    assert warnings[1] == "twilio: call CA0001: 3 messages received before the start message were dropped"


async def test_unknown_carrier_is_404() -> None:
    client = await _client()
    try:
        assert (await client.post("/nosuchcarrier/answer")).status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/nosuchcarrier/ws")
        assert err.value.status == 404
    finally:
        await client.close()


ANSWERING = [
    c for c in ("twilio", "telnyx", "plivo", "vobiz", "exotel", "vonage", "cloudonix") if c in carrier_names()
]
# Exotel's stream is set up in its own console: no answer document, the answer route is 404.
NO_ANSWER_DOCUMENT = {"exotel"}


@pytest.mark.parametrize("carrier", ANSWERING)
async def test_answer_webhook_points_at_the_public_stream_url(
    carrier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("TWILIO_AUTH_TOKEN", "PLIVO_AUTH_TOKEN", "TELNYX_PUBLIC_KEY", "VONAGE_SIGNATURE_SECRET"):
        monkeypatch.delenv(var, raising=False)
    client = await _client()
    try:
        r = await client.post(f"/{carrier}/answer", data={"CallSid": "CA1", "From": "+15550001"})
        text = await r.text()
        if carrier in NO_ANSWER_DOCUMENT:  # an explicit case, not a skip: the route must say so
            assert r.status == 404 and "no answer webhook" in text, text
            return
        assert r.status == 200, text
        assert f"wss://bot.example.test/{carrier}/ws" in text
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("carrier", "setting"),
    [("twilio", "TWILIO_AUTH_TOKEN"), ("plivo", "PLIVO_AUTH_TOKEN"), ("vobiz", "VOBIZ_AUTH_TOKEN")],
)
async def test_an_unset_auth_token_is_warned_about_once_not_per_request(
    carrier: str, setting: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowcat.serializers import _signatures

    monkeypatch.setattr(_signatures, "_unchecked", set(), raising=False)  # a fresh process
    monkeypatch.delenv(setting, raising=False)
    caplog.set_level(logging.WARNING)
    client = await _client()
    try:
        for n in range(3):
            for route in ("answer", "event"):
                r = await client.post(f"/{carrier}/{route}", data={"CallSid": f"CA{n}"})
                assert r.status in (200, 204), await r.text()
    finally:
        await client.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"{carrier}: {setting} is not set; webhook signatures are not checked (said once)"]


@pytest.mark.parametrize("carrier", ANSWERING)
async def test_answer_webhook_past_capacity_is_refused(carrier: str) -> None:
    client = await _client(capacity=0)
    try:
        r = await client.post(f"/{carrier}/answer", data={"CallSid": "CA1"})
        text = await r.text()
        if carrier in ("twilio", "cloudonix", "telnyx"):
            assert r.status == 200 and "<Reject" in text
        elif carrier in ("plivo", "vobiz"):
            assert r.status == 200 and "<Hangup" in text
        else:
            assert r.status == 503
        assert "/ws" not in text
        health = await (await client.get("/healthz")).json()
        assert health["rejected"] == 1
    finally:
        await client.close()


def _twilio_signature(url: str, params: dict[str, str], token: str) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@pytest.mark.skipif("twilio" not in carrier_names(), reason="twilio serializer missing")
async def test_twilio_answer_checks_the_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
    client = await _client()
    try:
        params = {"CallSid": "CA9", "From": "+15550009"}
        local = str(client.make_url("/twilio/answer"))
        bad = await client.post("/twilio/answer", data=params, headers={"X-Twilio-Signature": "AAAA"})
        assert bad.status == 403
        # With a public URL configured, Twilio signed that URL, not the one the server sees.
        sig = _twilio_signature(local, params, "secret-token")
        bad = await client.post("/twilio/answer", data=params, headers={"X-Twilio-Signature": sig})
        assert bad.status == 403
        sig = _twilio_signature(PUBLIC + "/twilio/answer", params, "secret-token")
        good = await client.post("/twilio/answer", data=params, headers={"X-Twilio-Signature": sig})
        assert good.status == 200
        assert "<Stream" in await good.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/twilio/ws", headers={"X-Twilio-Signature": "AAAA"})
        assert err.value.status == 403
    finally:
        await client.close()


async def test_draining_refuses_new_calls() -> None:
    client = await _client()
    try:
        from flowcat.server._state import STATE_KEY

        client.server.app[STATE_KEY].admission.draining = True
        assert (await client.get("/readyz")).status == 503
        assert (await (await client.get("/healthz")).json())["status"] == "draining"
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/ws")
        assert err.value.status == 503
    finally:
        await client.close()


def test_admission_counts() -> None:
    a = Admission(capacity=2)
    assert a.try_admit() and a.try_admit()
    assert not a.try_admit()
    a.release()
    assert a.try_admit()
    assert a.snapshot() == {
        "active": 2,
        "capacity": 2,
        "accepted": 3,
        "rejected": 1,
        "completed": 1,
        "draining": False,
    }


def test_load_app_resolves_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_app puts the cwd first on it
    mod = types.ModuleType("fc_test_app_mod")
    mod.no_arg = lambda: [EchoProcessor()]  # type: ignore[attr-defined]
    mod.with_call = lambda call: [EchoProcessor(name=call.carrier)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fc_test_app_mod", mod)
    call = CallInfo(carrier="raw")
    assert isinstance(load_app("fc_test_app_mod:no_arg")(call)[0], EchoProcessor)  # type: ignore[index]
    assert load_app("fc_test_app_mod:with_call")(call)[0].name == "raw"  # type: ignore[index]
    assert load_app(None) is default_app
    assert len(default_app(call)) == 3
    for bad in ("nocolon", "fc_test_app_mod:missing", "no_such_module_xyz:f"):
        with pytest.raises(ConfigError):
            load_app(bad)


async def test_after_output_processors_run_after_the_output_transport() -> None:
    """An app's processor marked ``after_output`` sees the bot audio the output transport wrote
    (where the assistant half of the context aggregator goes); the rest stay before it."""
    from flowcat.frames import Frame, OutputAudioRawFrame
    from flowcat.runtime import FrameDirection, FrameProcessor
    from flowcat.server import after_output

    seen: list[tuple[str, bytes]] = []

    class Tap(FrameProcessor):
        def __init__(self, label: str) -> None:
            super().__init__()
            self.label = label

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, OutputAudioRawFrame):
                seen.append((self.label, bytes(frame.audio)))
            await self.push_frame(frame, direction)

    def app(call: CallInfo) -> list[FrameProcessor]:
        # Listed first, but marked: without the mark it would sit before the echo and see no bot audio.
        return [after_output(Tap("after")), EchoProcessor(), Tap("before")]

    client = await _client(app=app)
    try:
        ws = await client.ws_connect("/ws?sample_rate=8000")
        await ws.send_bytes(b"\x07\x00" * 160)
        assert (await asyncio.wait_for(ws.receive(), 3.0)).data == b"\x07\x00" * 160
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        # "after" saw the frame only once the transport had sent it: it sits past the output.
        assert seen == [("before", b"\x07\x00" * 160), ("after", b"\x07\x00" * 160)]
        await ws.close()
    finally:
        await client.close()
