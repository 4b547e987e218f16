"""Carrier signatures behind TLS termination or a reverse proxy (issue 12 §1.3).

Carriers that sign a URL sign the one *they* called (``https://bot.example.com/...``),
not the one the server sees (``http://127.0.0.1:PORT/...``). The server checks against
``--public-url`` or, with ``--trust-proxy``, the ``X-Forwarded-*`` headers. Twilio's
requests are signed here by the official SDK (``twilio.request_validator.RequestValidator``)
and sent to the real worker app (``create_app``, as ``flowcat serve`` runs it) on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from twilio.request_validator import RequestValidator
from yarl import URL

from _helpers import require
from flowcat.server import ServerConfig, create_app

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://bot.example.com"
FORM = [("CallSid", "CA1234"), ("From", "+15550001"), ("To", "+15550002"), ("AccountSid", "AC9")]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_AUTH_TOKEN", "PLIVO_AUTH_TOKEN", "VOBIZ_AUTH_TOKEN", "FLOWCAT_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)


@contextlib.asynccontextmanager
async def worker(engine: str = "aiohttp", **config: Any) -> AsyncIterator[str]:
    """The worker's routes on 127.0.0.1 (aiohttp app, or the picows media engine); yields its base URL."""
    opts: dict[str, Any] = {"audio_in_sample_rate": 8000, "audio_out_sample_rate": 8000, **config}
    if engine == "picows":
        pw = require("test_picows_engine")
        async with pw.engine(**opts) as e:
            yield e.url("")
        return
    server = TestServer(create_app(ServerConfig(**opts)), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def twilio_sign(url: str, params: Any = None, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params or {})


async def post(base: str, path: str, form: list[tuple[str, str]], headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(URL(base + path, encoded=True), data=form, headers=headers) as r:
            return r.status, await r.text()


async def upgrade_status(base: str, path: str, headers: dict[str, str]) -> int:
    """101 when the upgrade is accepted (the socket is then closed), else the refusal status."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(URL(base + path, encoded=True), headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


# ---------------------------------------------------------------- Twilio, --public-url


async def test_twilio_answer_behind_public_url_verifies_with_the_official_signer() -> None:
    async with worker(public_url=PUBLIC) as base:
        path = "/twilio/answer?tenant=acme%7E1&b=2"
        url = PUBLIC + path
        validator = RequestValidator(TOKEN)
        sig = twilio_sign(url, dict(FORM))
        assert validator.validate(url, dict(FORM), sig)  # the oracle agrees with itself
        status, body = await post(base, path, FORM, {"X-Twilio-Signature": sig})
        assert status == 200
        assert '<Stream url="wss://bot.example.com/twilio/ws"/>' in body
        # Twilio's validators accept the URL with its default port too.
        sig443 = twilio_sign("https://bot.example.com:443" + path, dict(FORM))
        assert (await post(base, path, FORM, {"X-Twilio-Signature": sig443}))[0] == 200
        # What the server sees is not what Twilio signed.
        local = twilio_sign(base + path, dict(FORM))
        assert (await post(base, path, FORM, {"X-Twilio-Signature": local}))[0] == 403
        # Wrong token, tampered parameter, wrong scheme, missing signature.
        assert (await post(base, path, FORM, {"X-Twilio-Signature": twilio_sign(url, dict(FORM), "x")}))[
            0
        ] == 403
        tampered = [*FORM[:-1], ("AccountSid", "AC0")]
        assert (await post(base, path, tampered, {"X-Twilio-Signature": sig}))[0] == 403
        http_sig = twilio_sign("http://bot.example.com" + path, dict(FORM))
        assert (await post(base, path, FORM, {"X-Twilio-Signature": http_sig}))[0] == 403
        assert (await post(base, path, FORM, {}))[0] == 403


@pytest.mark.parametrize("engine", ["aiohttp", "picows"])
async def test_twilio_media_upgrade_behind_public_url_is_signed_over_wss(engine: str) -> None:
    async with worker(engine, public_url=PUBLIC) as base:
        path = "/twilio/ws"
        good = twilio_sign("wss://bot.example.com/twilio/ws")
        assert await upgrade_status(base, path, {"X-Twilio-Signature": good}) == 101
        with_port = twilio_sign("wss://bot.example.com:443/twilio/ws")
        assert await upgrade_status(base, path, {"X-Twilio-Signature": with_port}) == 101
        for wrong in (
            twilio_sign("https://bot.example.com/twilio/ws"),  # the https URL is not what Twilio dials
            twilio_sign("ws://" + base.partition("://")[2] + path),  # the URL the server sees
            twilio_sign("wss://bot.example.com/twilio/ws", token="wrong-token"),
            good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1],
            good[:4],
        ):
            assert await upgrade_status(base, path, {"X-Twilio-Signature": wrong}) == 403
        assert await upgrade_status(base, path, {}) == 403


# ---------------------------------------------------------------- Twilio, behind a proxy


PROXIED = {"Host": "bot.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


async def test_twilio_answer_behind_a_trusted_proxy() -> None:
    async with worker(trusted_proxies=1) as base:
        path = "/twilio/answer"
        sig = twilio_sign("https://bot.example.com/twilio/answer", dict(FORM))
        status, body = await post(base, path, FORM, {**PROXIED, "X-Twilio-Signature": sig})
        assert status == 200
        # The stream URL comes from the forwarded headers too.
        assert '<Stream url="wss://bot.example.com/twilio/ws"/>' in body
        wrong = twilio_sign("https://bot.example.com/twilio/answer", dict(FORM), "wrong-token")
        assert (await post(base, path, FORM, {**PROXIED, "X-Twilio-Signature": wrong}))[0] == 403


@pytest.mark.parametrize("engine", ["aiohttp", "picows"])
async def test_twilio_media_upgrade_behind_a_trusted_proxy(engine: str) -> None:
    async with worker(engine, trusted_proxies=1) as base:
        sig = twilio_sign("wss://bot.example.com/twilio/ws")
        assert await upgrade_status(base, "/twilio/ws", {**PROXIED, "X-Twilio-Signature": sig}) == 101
        wrong = twilio_sign("wss://bot.example.com/twilio/ws", token="wrong-token")
        assert await upgrade_status(base, "/twilio/ws", {**PROXIED, "X-Twilio-Signature": wrong}) == 403


async def test_forwarded_host_and_port_and_a_value_the_client_forged() -> None:
    async with worker(trusted_proxies=1) as base:
        path = "/twilio/answer"
        headers = {
            "Host": "10.0.0.7:8765",
            # The client sent its own X-Forwarded-Host; the proxy appended the real one.
            "X-Forwarded-Host": "evil.example, bot.example.com",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Port": "8443",
        }
        sig = twilio_sign("https://bot.example.com:8443/twilio/answer", dict(FORM))
        assert (await post(base, path, FORM, {**headers, "X-Twilio-Signature": sig}))[0] == 200
        forged = twilio_sign("https://evil.example:8443/twilio/answer", dict(FORM))
        assert (await post(base, path, FORM, {**headers, "X-Twilio-Signature": forged}))[0] == 403


async def test_forwarded_headers_are_not_trusted_by_default() -> None:
    async with worker() as base:  # trusted_proxies=0, no public URL
        sig = twilio_sign("https://bot.example.com/twilio/answer", dict(FORM))
        status, body = await post(base, "/twilio/answer", FORM, {**PROXIED, "X-Twilio-Signature": sig})
        assert status == 403
        ws_sig = twilio_sign("wss://bot.example.com/twilio/ws")
        assert await upgrade_status(base, "/twilio/ws", {**PROXIED, "X-Twilio-Signature": ws_sig}) == 403
        # Direct requests still verify against the URL the server sees.
        local = twilio_sign(base + "/twilio/answer", dict(FORM))
        status, body = await post(base, "/twilio/answer", FORM, {"X-Twilio-Signature": local})
        assert status == 200
        assert f'<Stream url="ws://{base.partition("://")[2]}/twilio/ws"/>' in body


async def test_public_url_wins_over_forwarded_headers() -> None:
    async with worker(public_url=PUBLIC + "/", trusted_proxies=1) as base:
        headers = {"Host": "other.example", "X-Forwarded-Proto": "http"}
        sig = twilio_sign(PUBLIC + "/twilio/answer", dict(FORM))
        assert (await post(base, "/twilio/answer", FORM, {**headers, "X-Twilio-Signature": sig}))[0] == 200


async def test_no_verify_skips_the_check_in_the_answer_too() -> None:
    async with worker(public_url=PUBLIC, verify_signatures=False) as base:
        status, body = await post(base, "/twilio/answer", FORM, {"X-Twilio-Signature": "AAAA"})
        assert status == 200 and "<Stream" in body


# ---------------------------------------------------------------- Plivo and Vobiz


def plivo_v3(method: str, url: str, form: list[tuple[str, str]], nonce: str, token: str) -> str:
    """Plivo's V3 string to sign, written from Plivo's SDK validator (test side)."""
    parts = urlsplit(url)
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    if method == "GET":
        query, form = sorted(query + form), []
    if query:
        text += "?" + "&".join(f"{k}={v}" for k, v in query)
        if form:
            text += "."
    text += "".join(k + v for k, v in sorted(form))
    mac = hmac.new(token.encode(), f"{text}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


async def test_plivo_answer_behind_public_url_and_behind_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", "plivo-token")
    form = [("To", "+15550002"), ("From", "+15550001"), ("CallUUID", "c-1")]
    path = "/plivo/answer?z=1&a=2"
    sig = plivo_v3("POST", PUBLIC + path, form, "nonce-1", "plivo-token")
    headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": "nonce-1"}
    async with worker(public_url=PUBLIC) as base:
        assert (await post(base, path, form, headers))[0] == 200
        local = plivo_v3("POST", base + path, form, "nonce-1", "plivo-token")
        assert (await post(base, path, form, {**headers, "X-Plivo-Signature-V3": local}))[0] == 403
    async with worker(trusted_proxies=1) as base:
        assert (await post(base, path, form, {**headers, **PROXIED}))[0] == 200
    async with worker() as base:
        assert (await post(base, path, form, {**headers, **PROXIED}))[0] == 403


def vobiz_v2(url: str, nonce: str, token: str, sep: str = "") -> str:
    """Vobiz V2 (``sep=""``) and V3 as its page words it (``sep="."``): the URL without query."""
    parts = urlsplit(url)
    text = f"{parts.scheme}://{parts.netloc}{parts.path}{sep}{nonce}"
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha256).digest()).decode()


async def test_vobiz_answer_is_checked_against_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOBIZ_AUTH_TOKEN", "vobiz-token")
    form = [("CallUUID", "v-1"), ("From", "+15550001")]
    path = "/vobiz/answer?x=1"
    async with worker(public_url=PUBLIC) as base:
        v2 = vobiz_v2(PUBLIC + path, "n2", "vobiz-token")
        assert (
            await post(base, path, form, {"X-Vobiz-Signature-V2": v2, "X-Vobiz-Signature-V2-Nonce": "n2"})
        )[0] == 200
        v3 = vobiz_v2(PUBLIC + path, "n3", "vobiz-token", ".")
        assert (
            await post(base, path, form, {"X-Vobiz-Signature-V3": v3, "X-Vobiz-Signature-V3-Nonce": "n3"})
        )[0] == 200
        v3p = plivo_v3("POST", PUBLIC + path, form, "n3", "vobiz-token")  # the Plivo-style V3
        assert (
            await post(base, path, form, {"X-Vobiz-Signature-V3": v3p, "X-Vobiz-Signature-V3-Nonce": "n3"})
        )[0] == 200
        local = vobiz_v2(base + path, "n2", "vobiz-token")
        assert (
            await post(base, path, form, {"X-Vobiz-Signature-V2": local, "X-Vobiz-Signature-V2-Nonce": "n2"})
        )[0] == 403
        wrong = vobiz_v2(PUBLIC + path, "n2", "other-token")
        assert (
            await post(base, path, form, {"X-Vobiz-Signature-V2": wrong, "X-Vobiz-Signature-V2-Nonce": "n2"})
        )[0] == 403
        assert (await post(base, path, form, {}))[0] == 403


# ---------------------------------------------------------------- Genesys


async def test_genesys_upgrade_signed_for_the_public_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    g = require("test_carrier_auth_genesys")
    monkeypatch.setattr(g.auth, "NONCES", g.auth.NonceCache())
    monkeypatch.setenv("GENESYS_API_KEY", g.API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", g.SECRET)
    target = "/genesys/ws?tenant=acme%7E1"
    # The proxy rewrote Host to an internal name; Genesys signed the public one.
    internal = {"Host": "flowcat.internal:8765"}
    async with worker(public_url="https://audiohook.example.com") as base:
        signed = g.sign(target, "audiohook.example.com")
        assert await upgrade_status(base, target, {**signed, **internal}) == 101
        other = g.sign(target, "elsewhere.example.com")
        assert await upgrade_status(base, target, {**other, **internal}) == 401
    async with worker() as base:  # without the public URL the internal Host is all we know
        signed = g.sign(target, "audiohook.example.com")
        assert await upgrade_status(base, target, {**signed, **internal}) == 401


# ---------------------------------------------------------------- the URL rebuilt


class _Req:
    def __init__(self, headers: dict[str, str], raw_path: str = "/twilio/answer?a=%7E") -> None:
        self.headers = CIMultiDict(headers)
        self.raw_path = raw_path
        self.url = URL(f"http://{headers.get('Host', 'localhost')}{raw_path}", encoded=True)


@pytest.mark.parametrize(
    ("headers", "trusted", "expected"),
    [
        ({"Host": "10.0.0.7:8765"}, 1, "http://10.0.0.7:8765"),
        ({"Host": "10.0.0.7:8765", "X-Forwarded-Proto": "https"}, 0, "http://10.0.0.7:8765"),
        ({"Host": "bot.example.com", "X-Forwarded-Proto": "https"}, 1, "https://bot.example.com"),
        (
            {"Host": "x", "X-Forwarded-Proto": "wss", "X-Forwarded-Host": "Bot.Example.com"},
            1,
            "https://Bot.Example.com",
        ),
        ({"Host": "x:1", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}, 1, "https://x"),
        ({"Host": "x", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443"}, 1, "https://x:8443"),
        ({"Host": "[::1]:9", "X-Forwarded-Port": "80"}, 1, "http://[::1]"),
        # Two proxies: the value the nearer one set is right-most; the first is the outer one's.
        ({"Host": "x", "X-Forwarded-Proto": "https, http"}, 1, "http://x"),
        ({"Host": "x", "X-Forwarded-Proto": "https, http"}, 2, "https://x"),
        ({"Host": "x", "X-Forwarded-Proto": "https"}, 2, "http://x"),  # fewer values than proxies: ignored
    ],
)
def test_request_origin_from_forwarded_headers(headers: dict[str, str], trusted: int, expected: str) -> None:
    from flowcat.server._public_url import signed_url

    req = _Req(headers)
    assert signed_url(req, public_url=None, trusted_proxies=trusted) == expected + "/twilio/answer?a=%7E"


def test_configured_public_url_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcat.server._public_url import forwarded_origin, signed_url

    req = _Req({"Host": "10.0.0.7", "X-Forwarded-Proto": "http"})
    assert signed_url(req, public_url="https://a.example/prefix/", trusted_proxies=1) == (
        "https://a.example/prefix/twilio/answer?a=%7E"
    )
    assert signed_url(req, public_url="wss://a.example", trusted_proxies=0).startswith("https://a.example/")
    monkeypatch.setenv("FLOWCAT_PUBLIC_URL", "https://env.example")
    assert signed_url(req, public_url=None, trusted_proxies=0).startswith("https://env.example/twilio/")
    assert forwarded_origin(req.headers, 0, scheme="http", host="h") is None


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], 0), (["--trust-proxy"], 1), (["--trust-proxy", "2"], 2), (["--trust-proxy", "0"], 0)],
)
def test_serve_trust_proxy_option_reaches_the_workers(
    argv: list[str], expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowcat.server
    from flowcat.cli import main

    seen: list[Any] = []
    monkeypatch.setattr(flowcat.server, "supervise", lambda opts: seen.append(opts) or 0)
    assert main(["serve", "--public-url", "https://p.example", *argv, "--port", "9"]) == 0
    assert seen[0].trusted_proxies == expected and seen[0].public_url == "https://p.example"


def test_serve_trust_proxy_refuses_a_negative_count(capsys: pytest.CaptureFixture[str]) -> None:
    from flowcat.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--trust-proxy", "-1"])
    assert "--trust-proxy" in capsys.readouterr().err


async def test_cloudonix_upgrade_is_not_held_to_twilios_signature() -> None:
    """Cloudonix speaks Twilio's wire format but signs nothing; TWILIO_AUTH_TOKEN is not its secret."""
    async with worker(public_url=PUBLIC) as base:
        assert await upgrade_status(base, "/cloudonix/ws", {}) == 101
        assert await upgrade_status(base, "/twilio/ws", {}) == 403


URLS = [
    "https://a.example/x",
    "https://a.example:443/x",
    "https://a.example:8443/x",
    "http://a.example/x?y=1&b=%7E",
    "http://a.example:80/x?y=1&b=%7E",
    "https://A.example/x",
]


@pytest.mark.parametrize("signed", URLS)
def test_twilio_port_tolerance_agrees_with_the_official_validator(signed: str) -> None:
    """Our check accepts exactly the (signed URL, URL checked) pairs Twilio's SDK accepts."""
    from flowcat.serializers._signatures import validate_twilio

    sdk = RequestValidator(TOKEN)
    sig = sdk.compute_signature(signed, dict(FORM))
    for checked in URLS:
        assert validate_twilio(checked, FORM, sig, TOKEN) == sdk.validate(checked, dict(FORM), sig), checked


async def test_twilio_signed_without_the_port_a_public_url_has() -> None:
    async with worker(public_url="https://bot.example.com:443") as base:
        sig = twilio_sign("https://bot.example.com/twilio/answer", dict(FORM))
        assert (await post(base, "/twilio/answer", FORM, {"X-Twilio-Signature": sig}))[0] == 200


async def test_twilio_upgrade_with_a_query_both_signing_forms() -> None:
    """ConversationRelay URLs may carry a query: signed in the URL, or (as Twilio's own server
    code validates it) the URL without the query and its parameters appended like form fields."""
    async with worker(public_url=PUBLIC) as base:
        path = "/twilio/ws?tenant=acme&lang=en"
        in_url = twilio_sign("wss://bot.example.com" + path)
        as_params = twilio_sign("wss://bot.example.com/twilio/ws", {"tenant": "acme", "lang": "en"})
        assert await upgrade_status(base, path, {"X-Twilio-Signature": in_url}) == 101
        assert await upgrade_status(base, path, {"X-Twilio-Signature": as_params}) == 101
        other = twilio_sign("wss://bot.example.com/twilio/ws", {"tenant": "other", "lang": "en"})
        assert await upgrade_status(base, path, {"X-Twilio-Signature": other}) == 403
