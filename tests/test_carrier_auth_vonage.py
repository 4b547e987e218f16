"""Vonage signed webhooks and media upgrades: HS256 JWT in ``Authorization: Bearer``, checked with the standard library.

The JWT verifier is anchored on RFC 7515's HS256 example (appendix A.1); the
webhook checks run through the real aiohttp server on 127.0.0.1 (``/vonage/event``
and ``/vonage/answer``): valid, tampered body, wrong secret, stale or future
``iat``, ``alg: none``, unsigned events Vonage signs, and the unsigned answer
webhook Vonage's developer preview sends. The media upgrade (``/vonage/ws``, asked
for by the NCCO's ``authorization: {"type": "vonage"}`` when a secret is set) runs
through both media engines (aiohttp and picows): a valid token opens the socket;
missing, mis-signed, expired, stale, ``alg: none`` and webhook tokens get 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, WSServerHandshakeError
from aiohttp.test_utils import TestServer

import test_carrier_auth_genesys as genesys_tests
from flowcat.serializers import _vonage_auth as vonage_auth
from flowcat.serializers import vonage
from flowcat.serializers._jwt import JWTError, check_times, verify_hs256
from flowcat.serializers._signatures import vonage_payload_hashes
from flowcat.server import ServerConfig, create_app

SECRET = "vonage-signature-secret-for-tests"
EVENT = {
    "start_time": None,
    "rate": None,
    "from": "447700900000",
    "to": "447700900001",
    "uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "conversation_uuid": "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "status": "answered",
    "direction": "inbound",
    "timestamp": "2026-11-21T08:00:00.000Z",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(claims: dict[str, Any], secret: str = SECRET, header: dict[str, Any] | None = None) -> str:
    """An HS256 JWT as Vonage signs webhooks (test side; the verifier is anchored on RFC 7515)."""
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def claims_for(payload: bytes, **over: Any) -> dict[str, Any]:
    claims = {
        "iat": int(time.time()),
        "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(payload).hexdigest(),
        "api_key": "a1b2c3d",
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    claims.update(over)
    return claims


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "VONAGE_SIGNATURE_SECRET",
        "VONAGE_REQUIRE_SIGNED_WEBHOOKS",
        "VONAGE_API_KEY",
        "VONAGE_APPLICATION_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(vonage, "_noted", set())


@pytest.fixture
async def base() -> AsyncIterator[str]:
    cfg = ServerConfig(public_url="https://bot.example.test")
    server = TestServer(create_app(cfg), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def post_event(base: str, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    async with ClientSession() as http, http.post(base + "/vonage/event", data=body, headers=headers) as r:
        return r.status


# ---------------------------------------------------------------- the JWT verifier


def test_rfc7515_a1_hs256_example_verifies() -> None:
    k = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
    key = base64.urlsafe_b64decode(k + "=" * (-len(k) % 4))
    token = (
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    )
    assert verify_hs256(token, key) == {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}
    with pytest.raises(JWTError, match="signature mismatch"):
        verify_hs256(token, key[:-1] + b"x")
    with pytest.raises(JWTError, match="expired"):
        check_times({"iat": 1300819000, "exp": 1300819380}, now=1300819500, max_age_s=3600, leeway_s=30)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b", "three segments"),
        ("!!.e30.AA", "not base64url"),
        (b64url(b"[]") + ".e30.AA", "not a JSON object"),
        (b64url(b'{"alg":"none"}') + ".e30.", "is not HS256"),
        (b64url(b'{"alg":"RS256"}') + ".e30.AA", "is not HS256"),
        (b64url(b'{"alg":"HS256","crit":["x"]}') + ".e30.AA", "critical"),
    ],
)
def test_malformed_and_downgraded_tokens_are_refused(token: str, reason: str) -> None:
    with pytest.raises(JWTError, match=reason):
        verify_hs256(token, b"k")


def test_payload_hash_candidates() -> None:
    obj = {"to": "447700900001", "status": "answered", "naïve": "é"}
    compact = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    pretty = json.dumps(obj, indent=2).encode()
    # Vonage hashes the compact JSON: a pretty-printed body still matches through the rebuilt form.
    assert hashlib.sha256(compact).hexdigest() in vonage_payload_hashes(pretty, {})
    # A GET carries its parameters in the query.
    query = {"to": "447700900001", "from": "447700900000", "uuid": "u-1"}
    expected = hashlib.sha256(json.dumps(query, separators=(",", ":")).encode()).hexdigest()
    assert vonage_payload_hashes(b"", query) == [expected]


# ---------------------------------------------------------------- through the server


async def test_signed_event_is_accepted(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    body = json.dumps(EVENT, separators=(",", ":")).encode()
    assert await post_event(base, body, mint(claims_for(body))) == 204


async def test_bad_signed_events_are_refused_with_401_and_logged(
    base: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    body = json.dumps(EVENT, separators=(",", ":")).encode()
    tampered = body.replace(b"447700900001", b"447700900666")
    now = int(time.time())
    none_header = b64url(b'{"alg":"none","typ":"JWT"}')
    cases = {
        "payload_hash does not match": (tampered, mint(claims_for(body))),
        "signature mismatch": (body, mint(claims_for(body), secret="someone-elses-secret")),
        "too old": (body, mint(claims_for(body, iat=now - 3600))),
        "in the future": (body, mint(claims_for(body, iat=now + 3600))),
        "no iat": (body, mint({k: v for k, v in claims_for(body).items() if k != "iat"})),
        "is not HS256": (body, f"{none_header}.{b64url(json.dumps(claims_for(body)).encode())}."),
        "issuer is not Vonage": (body, mint(claims_for(body, iss="Mallory"))),
        "no payload_hash": (body, mint({k: v for k, v in claims_for(body).items() if k != "payload_hash"})),
        "expired": (body, mint(claims_for(body, exp=now - 600))),
    }
    for reason, (payload, token) in cases.items():
        caplog.clear()
        assert await post_event(base, payload, token) == 401, reason
        assert reason in caplog.text, (reason, caplog.text)
        assert SECRET not in caplog.text
    # Bad input survived: a good request still goes through.
    assert await post_event(base, body, mint(claims_for(body))) == 204


async def test_claims_must_match_the_configured_account(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    monkeypatch.setenv("VONAGE_API_KEY", "a1b2c3d")
    body = json.dumps(EVENT).encode()
    assert await post_event(base, body, mint(claims_for(body))) == 204
    assert await post_event(base, body, mint(claims_for(body, api_key="zzz999"))) == 401


async def test_unsigned_requests(
    base: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    # An event Vonage signs must carry a signature.
    assert await post_event(base, json.dumps(EVENT).encode(), None) == 401
    async with ClientSession() as http:
        bearer = {"Authorization": "Basic dXNlcjpwYXNz"}
        async with http.post(base + "/vonage/event", json=EVENT, headers=bearer) as r:
            assert r.status == 401
        # Vonage does not sign other events, nor the answer webhook (developer preview): let through.
        assert await post_event(base, json.dumps({**EVENT, "status": "disconnected"}).encode(), None) == 204
        params = {"to": "447700900001", "from": "447700900000", "uuid": "u-42", "conversation_uuid": "CON-1"}
        for _ in range(2):
            async with http.get(base + "/vonage/answer", params=params) as r:
                assert r.status == 200
                ncco = json.loads(await r.text())
                assert ncco[0]["endpoint"][0]["headers"] == {"call_uuid": "u-42"}
        assert caplog.text.count("letting unsigned webhooks to /vonage/answer through") == 1
        # ... unless every webhook must be signed.
        monkeypatch.setenv("VONAGE_REQUIRE_SIGNED_WEBHOOKS", "1")
        async with http.get(base + "/vonage/answer", params=params) as r:
            assert r.status == 401
        # A signed answer (GET: payload_hash over the query's JSON) is accepted.
        digest = hashlib.sha256(json.dumps(params, separators=(",", ":")).encode()).hexdigest()
        token = mint(claims_for(b"", payload_hash=digest))
        async with http.get(
            base + "/vonage/answer", params=params, headers={"Authorization": "Bearer " + token}
        ) as r:
            assert r.status == 200 and "websocket" in await r.text()


async def test_without_a_secret_nothing_is_checked_and_that_is_noted_once(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(EVENT).encode()
    assert await post_event(base, body, None) == 204
    assert await post_event(base, body, "not-even-a-jwt") == 204
    assert caplog.text.count("VONAGE_SIGNATURE_SECRET is not set") == 1


# ---------------------------------------------------------------- the media upgrade (NCCO authorization: vonage)

ENGINES = ["aiohttp", "picows"]


def upgrade_claims(**over: Any) -> dict[str, Any]:
    """Claims of an upgrade token: the webhook claim set without a body to hash."""
    claims = {k: v for k, v in claims_for(b"").items() if k != "payload_hash"}
    claims.update(over)
    return claims


async def ws_status(port: int, headers: dict[str, str], path: str = "/vonage/ws") -> int:
    """101 if the upgrade was accepted (then closed again), else the refusal's status."""
    async with ClientSession() as http:
        try:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}{path}", headers=headers)
        except WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


async def test_answer_ncco_asks_for_the_vonage_jwt_only_when_a_secret_is_set(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ClientSession() as http:
        async with http.get(base + "/vonage/answer", params={"uuid": "u-1"}) as r:
            endpoint = json.loads(await r.text())[0]["endpoint"][0]
        assert "authorization" not in endpoint
        monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
        async with http.get(base + "/vonage/answer", params={"uuid": "u-1"}) as r:
            assert r.status == 200
            endpoint = json.loads(await r.text())[0]["endpoint"][0]
    assert endpoint == {
        "type": "websocket",
        "uri": "wss://bot.example.test/vonage/ws",
        "content-type": "audio/l16;rate=16000",
        "headers": {"call_uuid": "u-1"},
        "authorization": {"type": "vonage"},
    }


def test_upgrade_payload_hash_must_be_that_of_an_empty_payload() -> None:
    now = time.time()

    def check(claims: dict[str, Any], query: dict[str, str] | None = None) -> str | None:
        return vonage_auth.check_upgrade(mint(claims), SECRET, query or {}, now=now)[0]

    assert check(upgrade_claims()) is None  # no payload_hash: nothing to compare
    assert check(upgrade_claims(payload_hash=hashlib.sha256(b"").hexdigest())) is None
    assert check(upgrade_claims(payload_hash=hashlib.sha256(b"{}").hexdigest().upper())) is None
    query = {"call": "8f3c"}
    assert check(upgrade_claims(payload_hash=hashlib.sha256(b'{"call":"8f3c"}').hexdigest()), query) is None
    # A webhook's token covers that webhook's body: it cannot open a media socket.
    body = json.dumps(EVENT, separators=(",", ":")).encode()
    assert "empty payload" in str(check(claims_for(body)))
    assert "empty payload" in str(check(upgrade_claims(payload_hash=12)))
    assert "issuer is not Vonage" in str(check(upgrade_claims(iss="Mallory")))


@pytest.mark.parametrize("engine", ENGINES)
async def test_upgrade_with_a_valid_jwt_is_accepted(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    async with genesys_tests.media_server(engine) as port:
        assert await ws_status(port, bearer(mint(upgrade_claims()))) == 101
        empty = hashlib.sha256(b"").hexdigest()
        assert await ws_status(port, bearer(mint(upgrade_claims(payload_hash=empty)))) == 101


@pytest.mark.parametrize("engine", ENGINES)
async def test_bad_upgrades_are_refused_with_401_and_logged_without_the_token(
    engine: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    monkeypatch.setenv("VONAGE_API_KEY", "a1b2c3d")
    now = int(time.time())
    body = json.dumps(EVENT, separators=(",", ":")).encode()
    none_header = b64url(b'{"alg":"none","typ":"JWT"}')
    cases: list[tuple[str, dict[str, str]]] = [
        ("no Authorization: Bearer token", {}),
        ("no Authorization: Bearer token", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("signature mismatch", bearer(mint(upgrade_claims(), secret="someone-elses-secret"))),
        ("expired", bearer(mint(upgrade_claims(exp=now - 600)))),
        ("too old", bearer(mint(upgrade_claims(iat=now - 3600)))),
        ("in the future", bearer(mint(upgrade_claims(iat=now + 3600)))),
        ("is not HS256", bearer(f"{none_header}.{b64url(json.dumps(upgrade_claims()).encode())}.")),
        ("not a compact JWS", bearer("not-even-a-jwt")),
        ("empty payload", bearer(mint(claims_for(body)))),  # a webhook's token
        ("api_key claim does not match", bearer(mint(upgrade_claims(api_key="zzz999")))),
    ]
    async with genesys_tests.media_server(engine) as port:
        for reason, headers in cases:
            caplog.clear()
            assert await ws_status(port, headers) == 401, reason
            refusals = [r.getMessage() for r in caplog.records if r.name == "flowcat.serializers"]
            assert len(refusals) == 1 and reason in refusals[0], (reason, caplog.text)
            token = headers.get("Authorization", "").partition(" ")[2]
            assert SECRET not in caplog.text and (not token or token not in caplog.text)
        # Bad input survived: a good upgrade still goes through.
        assert await ws_status(port, bearer(mint(upgrade_claims()))) == 101


@pytest.mark.parametrize("engine", ENGINES)
async def test_upgrade_without_a_secret_or_with_no_verify_is_let_through(
    engine: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with genesys_tests.media_server(engine) as port:
        assert await ws_status(port, {}) == 101
        assert await ws_status(port, bearer("not-even-a-jwt")) == 101
    assert caplog.text.count("media upgrades not checked") == 1
    # --no-verify: the secret is set but no check runs (and nothing is refused).
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    async with genesys_tests.media_server(engine, verify_signatures=False) as port:
        assert await ws_status(port, {}) == 101
        assert await ws_status(port, bearer(mint(upgrade_claims(), secret="someone-elses-secret"))) == 101
    assert "refused" not in caplog.text
