"""Genesys AudioHook upgrade authentication: X-API-KEY, the HTTP Message Signature, the organization id.

Anchored on two published vectors (RFC 9421 appendix B.2.5, hmac-sha256 with
``test-shared-secret``; the signed upgrade request of Genesys's AudioHook
specification), then exercised through real servers on 127.0.0.1 on both media
engines (aiohttp and picows): a good upgrade is accepted and the call opens, every
kind of bad one is refused with 401 and logged with its reason, never the secret.
``@authority`` is checked in its RFC 9421 form (default port dropped, the scheme
taken from X-Forwarded-Proto or the connection) and as sent. An ``open`` whose
``organizationId`` contradicts the upgrade's ``Audiohook-Organization-Id`` gets
``disconnect`` (``unauthorized``), then ``close`` → ``closed`` and the socket closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from _helpers import require
from flowcat.serializers import GenesysCarrier
from flowcat.serializers import _audiohook_auth as auth
from flowcat.serializers._http_signatures import normalize_authority, verify_hmac_sha256
from flowcat.serializers._sfv import SFVError, parse_dictionary, serialize_inner_list
from flowcat.server import ServerConfig, create_app

# The signed example of Genesys's AudioHook specification ("Establishing connection").
DOC_API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
DOC_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
DOC_HEADERS = {
    "Host": "audiohook.example.com",
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "X-API-KEY": DOC_API_KEY,
    "Signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "Signature-Input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
DOC_TARGET = "/api/v1/voicebiometrics/ws"
DOC_CREATED = 1641013200

API_KEY = "flowcat-test-api-key-0123456789"
SECRET_RAW = b"flowcat test client secret, 32b!"
SECRET = base64.b64encode(SECRET_RAW).decode()
ORG = "d7934305-0972-4844-938e-9060eef73d05"  # the Audiohook-Organization-Id that sign() puts on upgrades
OPEN_FIXTURE = json.loads((Path(__file__).parent / "fixtures/carriers/genesys_open.json").read_text())


def open_messages(organization_id: str | None = ORG) -> list[str]:
    """The fixture's ``open`` with ``parameters.organizationId`` set (None: left out)."""
    msgs = json.loads(json.dumps(OPEN_FIXTURE))
    for m in msgs:
        if m["type"] == "open":
            m["parameters"].pop("organizationId", None)
            if organization_id is not None:
                m["parameters"]["organizationId"] = organization_id
    return [json.dumps(m) for m in msgs]


OPEN = open_messages()


@pytest.fixture(autouse=True)
def fresh_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty replay cache (it is process-wide)."""
    monkeypatch.setattr(auth, "NONCES", auth.NonceCache())
    for name in ("GENESYS_API_KEY", "GENESYS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


class FakeUpgrade:
    """The parts of an upgrade request the check reads."""

    def __init__(self, headers: dict[str, str], raw_path: str) -> None:
        self.headers = CIMultiDict(headers)
        self.raw_path = raw_path
        self.url = URL(f"http://{headers.get('Host', 'localhost')}{raw_path}", encoded=True)
        self.remote = "192.0.2.7"


def sign(
    target: str,
    authority: str,
    *,
    api_key: str = API_KEY,
    secret: bytes = SECRET_RAW,
    created: int | None = None,
    expires_in: int = 30,
    nonce: str = "",
    covered: tuple[str, ...] = auth.REQUIRED_COMPONENTS,
    keyid: str | None = None,
    session: str = "30b0e395-84d3-4570-ac13-9a62d8f514c0",
) -> dict[str, str]:
    """Headers of an upgrade signed the way the AudioHook specification describes."""
    created = int(time.time()) if created is None else created
    nonce = (
        nonce
        or base64.b64encode(
            hashlib.sha256(f"{created}{time.perf_counter_ns()}".encode()).digest()[:18]
        ).decode()
    )
    headers = {
        "Audiohook-Organization-Id": ORG,
        "Audiohook-Session-Id": session,
        "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "X-API-KEY": api_key,
        "User-Agent": "GenesysCloud-AudioHook-Client",
    }
    values = {
        "@request-target": target,
        "@authority": authority,
        **{k.lower(): v for k, v in headers.items()},
    }
    params = (
        f';keyid="{keyid or api_key}";nonce="{nonce}";alg="hmac-sha256";created={created};'
        f"expires={created + expires_in}"
    )
    inner = "(" + " ".join(f'"{c}"' for c in covered) + ")" + params
    base = "\n".join(f'"{c}": {values[c]}' for c in covered) + f'\n"@signature-params": {inner}'
    mac = base64.b64encode(hmac.new(secret, base.encode(), hashlib.sha256).digest()).decode()
    return {**headers, "Signature-Input": f"sig1={inner}", "Signature": f"sig1=:{mac}:"}


# ---------------------------------------------------------------- published vectors


def test_rfc9421_b25_hmac_sha256_vector() -> None:
    key = base64.b64decode(
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
    )
    headers = CIMultiDict(
        {
            "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
            "Content-Type": "application/json",
            "Signature-Input": 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"',
            "Signature": "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
        }
    )
    check = verify_hmac_sha256(headers, key, derived={"@authority": "example.com"})
    assert check.ok and check.label == "sig-b25" and check.covered == ("date", "@authority", "content-type")
    assert check.params == {"created": 1618884473, "keyid": "test-shared-secret"}
    headers["Content-Type"] = "application/json; charset=utf-8"
    assert (
        verify_hmac_sha256(headers, key, derived={"@authority": "example.com"}).reason == "signature mismatch"
    )
    assert not verify_hmac_sha256(headers, key, derived={}).ok  # @authority cannot be vouched for


def test_genesys_documentation_example_verifies() -> None:
    req = FakeUpgrade(DOC_HEADERS, DOC_TARGET)
    opts: dict[str, Any] = {"api_key": DOC_API_KEY, "client_secret": DOC_SECRET}
    assert GenesysCarrier.verify_websocket(req, now=DOC_CREATED + 2, **opts)
    assert not GenesysCarrier.verify_websocket(req, now=DOC_CREATED + 3, **opts)  # same nonce: replay


def test_signing_helper_reproduces_the_documentation_example() -> None:
    """The test's own signer matches Genesys's published signature, so what it signs is the spec's base."""
    headers = sign(
        DOC_TARGET,
        "audiohook.example.com",
        api_key=DOC_API_KEY,
        secret=base64.b64decode(DOC_SECRET),
        created=DOC_CREATED,
        expires_in=3282026430 - DOC_CREATED,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
    )
    assert headers["Signature"] == DOC_HEADERS["Signature"]
    assert headers["Signature-Input"] == DOC_HEADERS["Signature-Input"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"X-API-KEY": "someone-else"}, "X-API-KEY does not match"),
        ({"Audiohook-Session-Id": "00000000-0000-0000-0000-000000000000"}, "signature mismatch"),
        ({"Host": "evil.example.com"}, "signature mismatch"),
        ({"Signature": "sig1=:AAAA:"}, "signature mismatch"),
        ({"Signature-Input": DOC_HEADERS["Signature-Input"].replace("sig1=", "sig2=")}, "no byte-sequence"),
        ({"Signature-Input": DOC_HEADERS["Signature-Input"] + ";unknown=1"}, "unknown signature parameter"),
        (
            {"Signature-Input": DOC_HEADERS["Signature-Input"].replace('"hmac-sha256"', '"rsa-pss-sha512"')},
            "algorithm",
        ),
        ({"Signature-Input": 'sig1=("@request-target"', "Signature": DOC_HEADERS["Signature"]}, "malformed"),
    ],
)
def test_documentation_example_tampered_is_refused(
    change: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    req = FakeUpgrade({**DOC_HEADERS, **change}, DOC_TARGET)
    assert not GenesysCarrier.verify_websocket(
        req, api_key=DOC_API_KEY, client_secret=DOC_SECRET, now=DOC_CREATED + 1
    )
    refused = [r.getMessage() for r in caplog.records if "upgrade refused" in r.getMessage()]
    assert len(refused) == 1 and reason in refused[0], refused
    assert "192.0.2.7" in refused[0] and DOC_TARGET in refused[0]
    assert DOC_SECRET not in caplog.text and "MySuperSecret" not in caplog.text


def test_policy_thresholds() -> None:
    secret = SECRET_RAW
    now = 1_700_000_000

    def check(**kw: Any) -> str | None:
        headers = sign("/genesys/ws", "bot.example.com", created=kw.pop("created", now), **kw)
        return auth.check_audiohook_upgrade(
            CIMultiDict(headers),
            request_target="/genesys/ws",
            authority="bot.example.com",
            api_key=API_KEY,
            client_secret=secret,
            now=now,
            nonces=auth.NonceCache(),
        )

    assert check() is None
    assert check(created=now - 15) is None  # 10 s max age + 5 s skew
    assert "too old" in str(check(created=now - 16))
    assert check(created=now + 5) is None
    assert "in the future" in str(check(created=now + 6))
    assert "expired" in str(check(created=now - 12, expires_in=6))  # expired 6 s ago, beyond the 5 s skew
    assert "shorter than 22" in str(check(nonce="x" * 21))
    assert check(nonce="x" * 22) is None
    assert "keyid does not match" in str(check(keyid="another-key"))
    uncovered = tuple(c for c in auth.REQUIRED_COMPONENTS if c != "audiohook-correlation-id")
    assert "does not cover audiohook-correlation-id" in str(check(covered=uncovered))


def test_nonce_cache_is_bounded_and_forgets_expired_entries() -> None:
    cache = auth.NonceCache(max_entries=3)
    assert not cache.seen("a", 10.0, 0.0)
    assert cache.seen("a", 10.0, 1.0)
    assert not cache.seen("a", 30.0, 11.0)  # expired, so no longer a replay
    for n in "bcd":
        assert not cache.seen(n, 100.0, 12.0)
    assert len(cache._until) <= 3


@pytest.mark.parametrize(
    "text",
    [
        'sig1=("a" "b"',
        'sig1=("a")x',
        'sig1=("a");created=1.2.3',
        "Sig1=:AAAA:",
        "sig1=:not base64!:",
        'a="x\\y"',
        "a=1,",
    ],
)
def test_structured_field_parser_rejects_malformed_values(text: str) -> None:
    with pytest.raises(SFVError):
        parse_dictionary(text)


def test_structured_field_round_trip_of_the_signature_params() -> None:
    text = DOC_HEADERS["Signature-Input"]
    member = parse_dictionary(text)["sig1"]
    assert isinstance(member[0], list)
    assert "sig1=" + serialize_inner_list((member[0], member[1])) == text


# ---------------------------------------------------------------- through the servers


@contextlib.asynccontextmanager
async def media_server(engine: str, **config: Any) -> AsyncIterator[int]:
    """The worker's media routes on 127.0.0.1 (aiohttp app, or the picows engine); yields the port.

    ``config``: more :class:`~flowcat.server.ServerConfig` fields (``verify_signatures=False``).
    """
    if engine == "aiohttp":
        cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000, **config)
        server = TestServer(create_app(cfg), host="127.0.0.1")
        await server.start_server()
        try:
            yield server.port  # type: ignore[misc]
        finally:
            await server.close()
    else:
        pw = require("test_picows_engine")
        async with pw.engine(**config) as e:
            yield e.port


async def upgrade(port: int, target: str, headers: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(URL(f"http://127.0.0.1:{port}{target}", encoded=True), headers=headers)
    except BaseException:
        await session.close()
        raise
    ws._flowcat_session = session  # type: ignore[attr-defined]
    return ws


async def close(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.close()
    await ws._flowcat_session.close()  # type: ignore[attr-defined]


async def refused(port: int, target: str, headers: dict[str, str]) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        ws = await upgrade(port, target, headers)
        await close(ws)
    return err.value.status


ENGINES = ["aiohttp", "picows"]
TARGET = "/genesys/ws?tenant=acme%7E1"  # %7E stays as sent: the signature covers the raw target


@pytest.mark.parametrize("engine", ENGINES)
async def test_signed_upgrade_is_accepted_and_the_session_opens(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENESYS_API_KEY", API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", SECRET)
    async with media_server(engine) as port:
        headers = sign(TARGET, f"127.0.0.1:{port}")
        ws = await upgrade(port, TARGET, headers)
        try:
            for msg in OPEN:
                await ws.send_str(msg)
            reply = await asyncio.wait_for(ws.receive(), 5.0)
            assert reply.type == aiohttp.WSMsgType.TEXT
            assert json.loads(reply.data)["type"] == "opened"
        finally:
            await close(ws)
        # The same signed request again is a replay.
        assert await refused(port, TARGET, headers) == 401


@pytest.mark.parametrize("engine", ENGINES)
async def test_bad_upgrades_are_refused_with_401_and_logged(
    engine: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GENESYS_API_KEY", API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", SECRET)
    async with media_server(engine) as port:
        authority = f"127.0.0.1:{port}"
        now = int(time.time())
        uncovered = tuple(c for c in auth.REQUIRED_COMPONENTS if c != "audiohook-session-id")
        good = sign(TARGET, authority)
        cases = {
            "X-API-KEY does not match": sign(TARGET, authority, api_key="wrong-key-0123456789"),
            "no X-API-KEY header": {k: v for k, v in good.items() if k != "X-API-KEY"},
            "signature mismatch": sign(TARGET, authority, secret=b"another secret"),
            "unsigned": {k: v for k, v in good.items() if not k.startswith("Signature")},
            "too old": sign(TARGET, authority, created=now - 120),
            "in the future": sign(TARGET, authority, created=now + 120),
            "does not cover audiohook-session-id": sign(TARGET, authority, covered=uncovered),
            "shorter than 22": sign(TARGET, authority, nonce="short-nonce"),
        }
        for reason, headers in cases.items():
            caplog.clear()
            assert await refused(port, TARGET, headers) == 401, reason
            assert reason in caplog.text, (reason, caplog.text)
            assert SECRET not in caplog.text
        # Signed for another path: the request target is covered.
        assert await refused(port, "/genesys/ws", good) == 401
        # After all that, a good upgrade still goes through: bad input was survived.
        ws = await upgrade(port, TARGET, sign(TARGET, authority))
        await close(ws)


@pytest.mark.parametrize("engine", ENGINES)
async def test_api_key_alone_without_a_client_secret(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_API_KEY", API_KEY)
    async with media_server(engine) as port:
        assert await refused(port, "/genesys/ws", {"X-API-KEY": "nope"}) == 401
        ws = await upgrade(port, "/genesys/ws", {"X-API-KEY": API_KEY})
        await close(ws)


async def test_without_an_api_key_upgrades_are_let_through_and_that_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flowcat.serializers import genesys

    monkeypatch.setattr(genesys, "_warned_open", False)
    async with media_server("aiohttp") as port:
        for _ in range(2):
            ws = await upgrade(port, "/genesys/ws", {})
            await close(ws)
    assert caplog.text.count("GENESYS_API_KEY is not set") == 1


async def test_a_client_secret_that_is_not_base64_refuses_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GENESYS_API_KEY", API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "not base64!")
    async with media_server("aiohttp") as port:
        assert await refused(port, "/genesys/ws", sign("/genesys/ws", f"127.0.0.1:{port}")) == 401
    assert "GENESYS_CLIENT_SECRET is not valid base64" in caplog.text


# ---------------------------------------------------------------- @authority with default ports


@pytest.mark.parametrize(
    ("given", "secure", "expected"),
    [
        ("Bot.Example.COM:443", True, "bot.example.com"),
        ("bot.example.com:443", False, "bot.example.com:443"),
        ("bot.example.com:80", False, "bot.example.com"),
        ("bot.example.com:80", True, "bot.example.com:80"),
        ("bot.example.com:8443", True, "bot.example.com:8443"),
        ("bot.example.com:", True, "bot.example.com"),
        (" bot.example.com ", True, "bot.example.com"),
        ("[2001:DB8::1]:443", True, "[2001:db8::1]"),
        ("[2001:db8::1]:8080", False, "[2001:db8::1]:8080"),
        ("[2001:db8::1]", True, "[2001:db8::1]"),
    ],
)
def test_normalize_authority(given: str, secure: bool, expected: str) -> None:
    assert normalize_authority(given, secure=secure) == expected


def check_host(
    host: str, signed_authority: str, *, forwarded: str | None = None, secure_connection: bool = False
) -> str | None:
    """The check's verdict on an upgrade with ``Host: host`` whose signature covers ``signed_authority``."""
    headers = CIMultiDict(sign("/genesys/ws", signed_authority, created=1_700_000_000))
    headers["Host"] = host
    if forwarded is not None:
        headers["X-Forwarded-Proto"] = forwarded
    authorities = auth.upgrade_authorities(headers, secure_connection=secure_connection)
    return auth.check_audiohook_upgrade(
        headers,
        request_target="/genesys/ws",
        authority=authorities,
        api_key=API_KEY,
        client_secret=SECRET_RAW,
        now=1_700_000_000,
        nonces=auth.NonceCache(),
    )


def test_authority_signed_without_the_default_port() -> None:
    # RFC 9421 section 2.2.3: a client that reached wss://bot.example.com signs "bot.example.com",
    # whether or not its Host header spells out :443.
    assert check_host("bot.example.com", "bot.example.com") is None
    assert check_host("bot.example.com:443", "bot.example.com", secure_connection=True) is None
    assert check_host("Bot.Example.com:443", "bot.example.com", forwarded="https") is None
    assert check_host("bot.example.com:443", "bot.example.com", forwarded="wss") is None
    assert (
        check_host("bot.example.com:443", "bot.example.com", forwarded="https, http") is None
    )  # first hop wins
    assert check_host("bot.example.com:80", "bot.example.com") is None  # ws/http: 80 is the default
    assert check_host("bot.example.com:80", "bot.example.com", forwarded="http") is None
    # The default port is the one of the scheme the client used.
    assert check_host("bot.example.com:80", "bot.example.com", forwarded="https") == "signature mismatch"
    assert check_host("bot.example.com:443", "bot.example.com", forwarded="http") == "signature mismatch"
    # Behind a TLS-terminating proxy that does not say so, :443 cannot be known to be the default.
    assert check_host("bot.example.com:443", "bot.example.com") == "signature mismatch"
    assert check_host("bot.example.com:443", "bot.example.com", forwarded="gopher") == "signature mismatch"
    # A non-default port is part of the authority.
    assert check_host("bot.example.com:8443", "bot.example.com", forwarded="https") == "signature mismatch"
    assert check_host("bot.example.com:8443", "bot.example.com:8443", forwarded="https") is None


def test_authority_signed_with_the_port_as_sent() -> None:
    # A client that signs its Host header verbatim (what Genesys's reference server compares) verifies too.
    assert check_host("bot.example.com:443", "bot.example.com:443", forwarded="https") is None
    assert check_host("bot.example.com:443", "bot.example.com:443", secure_connection=True) is None
    # ... but a port that was not sent cannot be signed.
    assert check_host("bot.example.com", "bot.example.com:443", forwarded="https") == "signature mismatch"
    assert check_host("bot.example.com:443", "other.example.com", forwarded="https") == "signature mismatch"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("signed", ["bot.example.com", "bot.example.com:443"])
async def test_upgrade_behind_a_tls_proxy_with_port_443_in_host(
    engine: str, signed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host ``bot.example.com:443`` forwarded as https: signatures over either form open the session."""
    monkeypatch.setenv("GENESYS_API_KEY", API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", SECRET)
    async with media_server(engine) as port:
        proxied = {"Host": "bot.example.com:443", "X-Forwarded-Proto": "https"}
        ws = await upgrade(port, TARGET, {**sign(TARGET, signed), **proxied})
        try:
            assert await next_message(ws, OPEN) == "opened"
        finally:
            await close(ws)
        # Without X-Forwarded-Proto our plain connection makes :443 a non-default port.
        if signed == "bot.example.com":
            assert await refused(port, TARGET, {**sign(TARGET, signed), "Host": "bot.example.com:443"}) == 401


# ---------------------------------------------------------------- Audiohook-Organization-Id vs open


async def next_message(ws: aiohttp.ClientWebSocketResponse, send: list[str]) -> str:
    """Send ``send``, then the type of the next text message (bounded wait)."""
    for msg in send:
        await ws.send_str(msg)
    reply = await asyncio.wait_for(ws.receive(), 5.0)
    assert reply.type == aiohttp.WSMsgType.TEXT, reply
    return str(json.loads(reply.data)["type"])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("header", "claimed"),
    [
        (ORG, ORG),
        (ORG.upper(), ORG),  # UUIDs compare case-insensitively
        (None, ORG),  # no header: nothing to compare
        (ORG, None),  # open without organizationId: nothing to compare
    ],
)
async def test_organization_ids_that_agree_open_the_session(
    engine: str, header: str | None, claimed: str | None
) -> None:
    async with media_server(engine) as port:
        headers = {} if header is None else {"Audiohook-Organization-Id": header}
        ws = await upgrade(port, "/genesys/ws", headers)
        try:
            assert await next_message(ws, open_messages(claimed)) == "opened"
        finally:
            await close(ws)


@pytest.mark.parametrize("engine", ENGINES)
async def test_mismatched_organization_id_ends_the_session_cleanly(
    engine: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GENESYS_API_KEY", API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", SECRET)
    async with media_server(engine) as port:
        # The upgrade itself is authentic (signed, header covered); only open contradicts it.
        ws = await upgrade(port, TARGET, sign(TARGET, f"127.0.0.1:{port}"))
        try:
            for msg in open_messages("00000000-0000-0000-0000-00000000beef"):
                await ws.send_str(msg)
            reply = await asyncio.wait_for(ws.receive(), 5.0)
            assert reply.type == aiohttp.WSMsgType.TEXT
            assert json.loads(reply.data) == {
                "version": "2",
                "type": "disconnect",
                "seq": 1,
                "clientseq": 1,
                "id": "30b0e395-0001",
                "parameters": {
                    "reason": "unauthorized",
                    "info": "organizationId does not match the Audiohook-Organization-Id header",
                },
            }
            # Genesys answers with close; we reply closed and the socket is closed.
            close_msg = {"version": "2", "type": "close", "seq": 2, "serverseq": 1, "id": "30b0e395-0001"}
            await ws.send_str(json.dumps({**close_msg, "position": "PT0S", "parameters": {"reason": "end"}}))
            reply = await asyncio.wait_for(ws.receive(), 5.0)
            assert reply.type == aiohttp.WSMsgType.TEXT
            assert json.loads(reply.data) == {
                "version": "2",
                "type": "closed",
                "seq": 2,
                "clientseq": 2,
                "id": "30b0e395-0001",
                "parameters": {},
            }
            end = await asyncio.wait_for(ws.receive(), 5.0)
            assert end.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), end
        finally:
            await close(ws)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert "00000000-0000-0000-0000-00000000beef" in refusals[0] and ORG in refusals[0]
