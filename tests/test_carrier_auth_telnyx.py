"""Telnyx webhook signatures (Ed25519, ``flowcat[telnyx]``) through the real aiohttp server.

With ``TELNYX_PUBLIC_KEY`` set the answer webhook must carry a valid
``telnyx-signature-ed25519`` over ``timestamp|body``; without the ``telnyx`` extra
(``cryptography``) webhooks are refused and the error names the extra. Also: the
Vonage JWT minting message names its extra.
"""

from __future__ import annotations

import base64
import logging
import sys
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from _helpers import require
from flowcat.errors import MissingExtraError
from flowcat.serializers import VonageFrameSerializer
from flowcat.serializers._signatures import validate_telnyx_ed25519
from flowcat.server import ServerConfig, create_app

cryptography = require("cryptography")  # the telnyx extra
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

ED25519 = "cryptography.hazmat.primitives.asymmetric.ed25519"
BODY = b'{"data":{"event_type":"call.initiated","payload":{"call_control_id":"v2:abc"}}}'


@pytest.fixture
async def base() -> AsyncIterator[str]:
    server = TestServer(create_app(ServerConfig(public_url="https://bot.example.test")), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def signed(key: Ed25519PrivateKey, body: bytes, ts: str) -> dict[str, str]:
    sig = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()
    return {"telnyx-signature-ed25519": sig, "telnyx-timestamp": ts, "Content-Type": "application/json"}


async def test_signed_answer_webhook(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("TELNYX_PUBLIC_KEY", base64.b64encode(key.public_key().public_bytes_raw()).decode())
    ts = str(int(time.time()))
    async with ClientSession() as http:
        async with http.post(base + "/telnyx/answer", data=BODY, headers=signed(key, BODY, ts)) as r:
            assert r.status == 200 and "<Stream" in await r.text()
        tampered = BODY.replace(b"v2:abc", b"v2:xyz")
        async with http.post(base + "/telnyx/answer", data=tampered, headers=signed(key, BODY, ts)) as r:
            assert r.status == 403
        stale = str(int(time.time()) - 3600)
        async with http.post(base + "/telnyx/answer", data=BODY, headers=signed(key, BODY, stale)) as r:
            assert r.status == 403
        async with http.post(base + "/telnyx/answer", data=BODY) as r:
            assert r.status == 403


async def test_missing_extra_refuses_and_names_it(
    base: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("TELNYX_PUBLIC_KEY", base64.b64encode(key.public_key().public_bytes_raw()).decode())
    monkeypatch.setitem(sys.modules, ED25519, None)  # as if cryptography were not installed
    with pytest.raises(MissingExtraError) as err:
        validate_telnyx_ed25519(BODY, "sig", "1", "key")
    assert "pip install 'flowcat[telnyx]'" in str(err.value) and err.value.extra == "telnyx"
    ts = str(int(time.time()))
    async with ClientSession() as http, http.post(base + "/telnyx/answer", data=BODY, headers=signed(key, BODY, ts)) as r:
        assert r.status == 403
    assert "pip install 'flowcat[telnyx]'" in caplog.text


def test_vonage_jwt_minting_names_its_extra(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("VONAGE_JWT", raising=False)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    ser = VonageFrameSerializer(application_id="app-1", private_key="-----BEGIN PRIVATE KEY-----\n...")
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        assert ser.rest is not None and ser.rest._token() is None
    assert "pip install 'flowcat[vonage]'" in caplog.text
