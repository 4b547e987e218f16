"""Signatures that only almost match, and parameters that do not arrive sorted (issue 12 §5).

For every carrier that signs (Twilio, Plivo, Vobiz, Vonage, Genesys, Telnyx): a valid
signature passes, the same signature with its last byte changed, cut short, or cut to
its first four bytes is refused; a check that compared only a prefix of the signature
fails here. Twilio and Plivo sign their parameters sorted, and carriers do not send
them sorted: requests here carry them out of order (and Twilio's with a repeated
name), so a validator that forgot to sort fails here. Requests go through the worker
app on 127.0.0.1; signatures are made by independent signers (the official ``twilio``
SDK, Plivo's and Vobiz's algorithms written out below, the JWT and RFC 9421 helpers of
the carrier-auth tests, ``cryptography`` for Ed25519).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator
from yarl import URL

import test_carrier_auth_genesys as genesys_tests
import test_carrier_auth_public_url as pub
import test_carrier_auth_vonage as vonage_tests
from _helpers import require
from flowcat.serializers._signatures import twilio_signature, validate_plivo_v3

PUBLIC = pub.PUBLIC


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TWILIO_AUTH_TOKEN",
        "PLIVO_AUTH_TOKEN",
        "VOBIZ_AUTH_TOKEN",
        "TELNYX_PUBLIC_KEY",
        "VONAGE_SIGNATURE_SECRET",
        "VONAGE_REQUIRE_SIGNED_WEBHOOKS",
        "VONAGE_API_KEY",
        "VONAGE_APPLICATION_ID",
        "GENESYS_API_KEY",
        "GENESYS_CLIENT_SECRET",
        "FLOWCAT_PUBLIC_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(genesys_tests.auth, "NONCES", genesys_tests.auth.NonceCache())


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with pub.worker(public_url=PUBLIC) as url:
        yield url


def _flip_last(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


def b64_variants(sig: str, encode: Callable[[bytes], str], decode: Callable[[str], bytes]) -> dict[str, str]:
    """The signature with its last byte changed, its first byte changed, cut by one byte, cut to 4 bytes."""
    raw = decode(sig)
    return {
        "last byte changed": encode(_flip_last(raw)),
        "first byte changed": encode(bytes([raw[0] ^ 0x80]) + raw[1:]),
        "one byte short": encode(raw[:-1]),
        "first 4 bytes only": encode(raw[:4]),
        "one byte longer": encode(raw + b"\x00"),
        "empty": "",
    }


def std_b64(sig: str) -> dict[str, str]:
    return b64_variants(sig, lambda b: base64.b64encode(b).decode(), base64.b64decode)


def url_b64(sig: str) -> dict[str, str]:
    return b64_variants(
        sig,
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode(),
        lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)),
    )


# ---------------------------------------------------------------- Twilio

# Names out of order, and a repeated name whose values are out of order too.
TW_FORM = [
    ("To", "+15550002"),
    ("Digits", "9"),
    ("CallSid", "CA77"),
    ("From", "+15550001"),
    ("Digits", "1"),
    ("AccountSid", "AC1"),
]


def tw_sign(url: str, form: list[tuple[str, str]], token: str = "tw-token") -> str:
    return RequestValidator(token).compute_signature(url, MultiDict(form))


async def test_twilio_parameters_out_of_order(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tw-token")
    path = "/twilio/answer?z=26&a=1"
    sig = tw_sign(PUBLIC + path, TW_FORM)
    assert (await pub.post(base, path, TW_FORM, {"X-Twilio-Signature": sig}))[0] == 200
    assert (await pub.post(base, path, list(reversed(TW_FORM)), {"X-Twilio-Signature": sig}))[0] == 200
    # The signed string is sorted by name, then value; a different value is still caught.
    swapped = [(k, "1" if v == "9" else "9" if v == "1" else v) for k, v in TW_FORM]
    assert swapped != TW_FORM and sorted(swapped) == sorted(TW_FORM)
    assert (await pub.post(base, path, swapped, {"X-Twilio-Signature": sig}))[0] == 200
    moved = [(k, "+15550001" if k == "To" else "+15550002" if k == "From" else v) for k, v in TW_FORM]
    assert (await pub.post(base, path, moved, {"X-Twilio-Signature": sig}))[0] == 403
    # The same computation, directly.
    assert twilio_signature(PUBLIC + path, TW_FORM, "tw-token") == sig


async def test_twilio_corrupted_and_truncated_signatures(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tw-token")
    path = "/twilio/answer"
    sig = tw_sign(PUBLIC + path, TW_FORM)
    variants = {**std_b64(sig), "last character changed": sig[:-2] + ("B" if sig[-2] == "A" else "A") + "="}
    for what, bad in variants.items():
        assert (await pub.post(base, path, TW_FORM, {"X-Twilio-Signature": bad}))[0] == 403, what
    ws_sig = tw_sign("wss://bot.example.com/twilio/ws", [])
    for what, bad in std_b64(ws_sig).items():
        assert await pub.upgrade_status(base, "/twilio/ws", {"X-Twilio-Signature": bad}) == 403, what
    assert (await pub.post(base, path, TW_FORM, {"X-Twilio-Signature": sig}))[0] == 200


# ---------------------------------------------------------------- Plivo and Vobiz

PL_FORM = [("To", "+15550002"), ("From", "+15550001"), ("CallUUID", "c-1"), ("Direction", "inbound")]
PL_PATH = "/plivo/answer?zeta=1&alpha=2&mid=3"


async def test_plivo_parameters_out_of_order(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", "pl-token")
    sig = pub.plivo_v3("POST", PUBLIC + PL_PATH, PL_FORM, "nonce-7", "pl-token")
    headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": "nonce-7"}
    assert (await pub.post(base, PL_PATH, PL_FORM, headers))[0] == 200
    get_path = "/plivo/answer?To=%2B15550002&From=%2B15550001&CallUUID=c-1"
    get_sig = pub.plivo_v3("GET", PUBLIC + get_path, [], "nonce-8", "pl-token")
    assert validate_plivo_v3("GET", PUBLIC + get_path, None, "nonce-8", get_sig, "pl-token")
    # For GET, parameters given apart from the URL are sorted in with the query's.
    extra = [("zulu", "1"), ("alpha", "2")]
    both = pub.plivo_v3("GET", PUBLIC + "/plivo/answer?mike=3", extra, "nonce-9", "pl-token")
    assert validate_plivo_v3("GET", PUBLIC + "/plivo/answer?mike=3", extra, "nonce-9", both, "pl-token")
    async with aiohttp.ClientSession() as http:
        got = await http.get(
            URL(base + get_path, encoded=True),
            headers={"X-Plivo-Signature-V3": get_sig, "X-Plivo-Signature-V3-Nonce": "nonce-8"},
        )
        assert got.status == 200


async def test_plivo_corrupted_and_truncated_signatures(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", "pl-token")
    sig = pub.plivo_v3("POST", PUBLIC + PL_PATH, PL_FORM, "nonce-7", "pl-token")
    for what, bad in std_b64(sig).items():
        for header in (bad, f"{bad},{bad[:8]}"):
            headers = {"X-Plivo-Signature-V3": header, "X-Plivo-Signature-V3-Nonce": "nonce-7"}
            assert (await pub.post(base, PL_PATH, PL_FORM, headers))[0] == 403, what
    other_nonce = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": "nonce-8"}
    assert (await pub.post(base, PL_PATH, PL_FORM, other_nonce))[0] == 403
    good = {
        "X-Plivo-Signature-V3": f"{std_b64(sig)['last byte changed']}, {sig}",
        "X-Plivo-Signature-V3-Nonce": "nonce-7",
    }
    assert (await pub.post(base, PL_PATH, PL_FORM, good))[0] == 200


async def test_vobiz_parameters_out_of_order_and_corrupted_signatures(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOBIZ_AUTH_TOKEN", "vb-token")
    path = "/vobiz/answer?zeta=1&alpha=2"
    v3 = pub.plivo_v3("POST", PUBLIC + path, PL_FORM, "n-3", "vb-token")
    assert (
        await pub.post(base, path, PL_FORM, {"X-Vobiz-Signature-V3": v3, "X-Vobiz-Signature-V3-Nonce": "n-3"})
    )[0] == 200
    v2 = pub.vobiz_v2(PUBLIC + path, "n-2", "vb-token")
    for sig, version, nonce in ((v3, 3, "n-3"), (v2, 2, "n-2")):
        for what, bad in std_b64(sig).items():
            headers = {f"X-Vobiz-Signature-V{version}": bad, f"X-Vobiz-Signature-V{version}-Nonce": nonce}
            assert (await pub.post(base, path, PL_FORM, headers))[0] == 403, (version, what)


# ---------------------------------------------------------------- Vonage (HS256 JWT)


async def test_vonage_jwt_with_a_corrupted_or_truncated_signature(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", vonage_tests.SECRET)
    body = json.dumps(vonage_tests.EVENT, separators=(",", ":")).encode()
    token = vonage_tests.mint(vonage_tests.claims_for(body))
    head, claims, sig = token.split(".")
    for what, bad in url_b64(sig).items():
        assert await vonage_tests.post_event(base, body, f"{head}.{claims}.{bad}") == 401, what
    # The upgrade's token too.
    up = vonage_tests.mint(vonage_tests.upgrade_claims())
    uh, uc, us = up.split(".")
    for what, bad in url_b64(us).items():
        status = await pub.upgrade_status(base, "/vonage/ws", {"Authorization": f"Bearer {uh}.{uc}.{bad}"})
        assert status == 401, what
    assert await vonage_tests.post_event(base, body, token) == 204
    assert await pub.upgrade_status(base, "/vonage/ws", {"Authorization": "Bearer " + up}) == 101


# ---------------------------------------------------------------- Genesys (RFC 9421)


def _with_signature(headers: dict[str, str], mac_b64: str) -> dict[str, str]:
    return {**headers, "Signature": f"sig1=:{mac_b64}:"}


async def test_genesys_corrupted_truncated_and_reordered_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    g = genesys_tests
    monkeypatch.setenv("GENESYS_API_KEY", g.API_KEY)
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", g.SECRET)
    target = "/genesys/ws"
    async with pub.worker(public_url="https://audiohook.example.com") as base:
        for what in std_b64("AAAA"):
            signed = g.sign(target, "audiohook.example.com")  # a fresh nonce each time: no replay
            bad_mac = std_b64(signed["Signature"][6:-1])[what]
            assert await pub.upgrade_status(base, target, _with_signature(signed, bad_mac)) == 401, what
        assert await pub.upgrade_status(base, target, g.sign(target, "audiohook.example.com")) == 101
        # The components signed in another order than usual: the base follows Signature-Input.
        reordered = tuple(reversed(g.auth.REQUIRED_COMPONENTS))
        assert (
            await pub.upgrade_status(base, target, g.sign(target, "audiohook.example.com", covered=reordered))
            == 101
        )
        # The same MAC under another order of the same components does not verify.
        signed = g.sign(target, "audiohook.example.com")
        swapped = signed["Signature-Input"].replace(
            '"@request-target" "@authority"', '"@authority" "@request-target"'
        )
        assert swapped != signed["Signature-Input"]
        assert await pub.upgrade_status(base, target, {**signed, "Signature-Input": swapped}) == 401


# ---------------------------------------------------------------- Telnyx (Ed25519)


async def test_telnyx_corrupted_and_truncated_signatures(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    key = ed.Ed25519PrivateKey.generate()
    monkeypatch.setenv("TELNYX_PUBLIC_KEY", base64.b64encode(key.public_key().public_bytes_raw()).decode())
    body = b'{"data":{"event_type":"call.initiated","payload":{"call_control_id":"v2:abc"}}}'
    ts = str(int(time.time()))
    sig = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()

    async def status(signature: str) -> int:
        headers: dict[str, Any] = {
            "telnyx-signature-ed25519": signature,
            "telnyx-timestamp": ts,
            "Content-Type": "application/json",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(base + "/telnyx/answer", data=body, headers=headers) as r,
        ):
            return r.status

    for what, bad in std_b64(sig).items():
        assert await status(bad) == 403, what
    assert await status(sig) == 200
