"""Request-signature checks for carrier webhooks and WebSocket upgrades.

All comparisons are constant-time. Each function documents the algorithm it
implements and where it comes from; see ``docs/carriers.md`` for what is unconfirmed.
Genesys's HTTP Message Signatures live in :mod:`._audiohook_auth` (over
:mod:`._http_signatures`); JWT verification in :mod:`._jwt`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import require_extra
from ._jwt import JWTError, check_times, verify_hs256

__all__ = [
    "VONAGE_MAX_AGE_S",
    "VONAGE_SKEW_S",
    "check_vonage_webhook",
    "note_unchecked",
    "plivo_v3_signature",
    "tokens_equal",
    "twilio_body_hash_ok",
    "twilio_signature",
    "twilio_url_variants",
    "validate_plivo_v3",
    "validate_telnyx_ed25519",
    "validate_twilio",
    "validate_vobiz",
    "vobiz_signatures",
    "vonage_payload_hashes",
]

logger = logging.getLogger("flowcat.serializers")

Params = Mapping[str, str] | Iterable[tuple[str, str]]

_unchecked: set[str] = set()


def note_unchecked(carrier: str, setting: str) -> None:
    """Warn, once per process, that ``carrier``'s webhooks go unchecked (``setting`` is unset).

    Called on each request that would have been checked: the operator learns it at the
    first one, without a warning line per request.
    """
    if carrier not in _unchecked:
        _unchecked.add(carrier)
        logger.warning(
            "%s: %s is not set; webhook signatures are not checked (said once)", carrier, setting
        )


def _pairs(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v)) for k, v in items]


def tokens_equal(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False if either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def twilio_signature(url: str, params: Params | None, auth_token: str) -> str:
    """Twilio's ``X-Twilio-Signature``: base64(HMAC-SHA1(auth_token, url + sorted name+value)).

    ``url`` is the full URL Twilio requested (query string included); ``params`` are
    the POST form parameters (none for GET or the WebSocket upgrade), sorted by name
    then value, a repeated identical pair counted once (as Twilio's SDK validators do).
    """
    data = url + "".join(k + v for k, v in sorted(set(_pairs(params))))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def twilio_url_variants(url: str) -> list[str]:
    """``url`` without its port and with its scheme's default port when it had none.

    Twilio's SDK validators accept a signature over either form ("signature generation
    on the back end is inconsistent"): they strip any port, or add ``:443`` (https) /
    ``:80`` when none is given. We add ``:443`` for ``wss`` too (the SDK adds ``:80``
    to anything but https, a port Media Streams never use).
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    userinfo, at, hostport = parts.netloc.rpartition("@")
    prefix = userinfo + at
    host = hostport if port is None else hostport[: hostport.rindex(":")]  # case kept, as Twilio's SDK does
    if port is not None:
        return [urlunsplit(parts._replace(netloc=prefix + host)), url]
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))]


def validate_twilio(url: str, params: Params | None, signature: str | None, auth_token: str) -> bool:
    """Whether ``signature`` is Twilio's signature of this request.

    The URL is tried without a port and with the scheme's default port
    (:func:`twilio_url_variants`), as Twilio's own validators do.
    """
    if not signature:
        return False
    pairs = _pairs(params)
    return any(
        tokens_equal(twilio_signature(u, pairs, auth_token), signature) for u in twilio_url_variants(url)
    )


def twilio_body_hash_ok(url: str, body: bytes) -> bool | None:
    """For a JSON webhook: whether the ``bodySHA256`` query parameter is the body's hex SHA-256.

    None when the URL has no ``bodySHA256`` (a form webhook: its parameters are signed instead).
    """
    values = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == "bodySHA256"]
    if not values:
        return None
    return hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), values[0].lower().encode())


def plivo_v3_signature(method: str, url: str, params: Params | None, nonce: str, auth_token: str) -> str:
    """Plivo's ``X-Plivo-Signature-V3``: base64(HMAC-SHA256(auth_token, base + "." + nonce)).

    ``base`` is the URL without its query, then ``?`` and the query parameters sorted
    as ``k=v`` joined by ``&`` (if any); for POST, a ``.`` when both query and form
    parameters exist, then the form parameters sorted by name as ``name+value``.
    This is the algorithm of Plivo's published SDK validators (``validate_v3_signature``);
    not yet checked against a live Plivo request.
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    if method.upper() == "GET":
        query = sorted(query + _pairs(params))
        form: list[tuple[str, str]] = []
    else:
        form = sorted(_pairs(params))
    if query:
        base += "?" + "&".join(f"{k}={v}" for k, v in query)
        if form:
            base += "."
    base += "".join(k + v for k, v in form)
    digest = hmac.new(auth_token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_plivo_v3(
    method: str, url: str, params: Params | None, nonce: str | None, signature: str | None, auth_token: str
) -> bool:
    """Whether one of the comma-separated ``signature`` values is Plivo's V3 signature."""
    if not signature or not nonce:
        return False
    expected = plivo_v3_signature(method, url, params, nonce, auth_token)
    return any(tokens_equal(expected, s.strip()) for s in signature.split(","))


def _hmac_sha256_b64(key: str, data: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), data.encode(), hashlib.sha256).digest()).decode("ascii")


def vobiz_signatures(
    version: int, method: str, url: str, params: Params | None, nonce: str, auth_token: str
) -> list[str]:
    """The values a Vobiz ``X-Vobiz-Signature-V2``/``-V3`` header may hold for this request.

    Vobiz's page "Validating callbacks" defines V2 as base64(HMAC-SHA256(auth_token,
    base URL without query + nonce)) and V3 as the same with the nonce joined by a
    ``.``. Vobiz's headers are Plivo's renamed, so V3 may instead cover the query and
    parameters as Plivo's V3 does (:func:`plivo_v3_signature`); which one Vobiz sends
    is unconfirmed, so for V3 both are returned.
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if version == 2:
        return [_hmac_sha256_b64(auth_token, base + nonce)]
    return [
        _hmac_sha256_b64(auth_token, f"{base}.{nonce}"),
        plivo_v3_signature(method, url, params, nonce, auth_token),
    ]


def validate_vobiz(
    headers: Mapping[str, str], method: str, url: str, params: Params | None, auth_token: str
) -> bool:
    """Whether the request's Vobiz V3 signature (else its V2) matches; False when unsigned.

    The account's (``X-Vobiz-Signature-V3``) and the main account's (``-MA-V3``)
    headers are both tried with ``auth_token``; each may hold comma-separated values.
    """
    for version in (3, 2):
        nonce = headers.get(f"X-Vobiz-Signature-V{version}-Nonce")
        sent = [headers.get(f"X-Vobiz-Signature-V{version}"), headers.get(f"X-Vobiz-Signature-MA-V{version}")]
        values = [v.strip() for h in sent if h for v in h.split(",") if v.strip()]
        if nonce and values:
            expected = vobiz_signatures(version, method, url, params, nonce, auth_token)
            return any(tokens_equal(e, v) for e in expected for v in values)
    return False


def validate_telnyx_ed25519(
    payload: bytes,
    signature_b64: str | None,
    timestamp: str | None,
    public_key_b64: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check Telnyx's ``telnyx-signature-ed25519`` over ``timestamp|payload``.

    Raises:
        MissingExtraError: The ``cryptography`` package is not installed
            (``pip install 'flowcat[telnyx]'``).
    """
    require_extra(
        "cryptography.hazmat.primitives.asymmetric.ed25519", "Checking Telnyx webhook signatures", "telnyx"
    )
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not signature_b64 or not timestamp:
        return False
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), timestamp.encode() + b"|" + payload)
    except (InvalidSignature, ValueError):
        return False
    return True


VONAGE_MAX_AGE_S = 300.0
"""Oldest accepted Vonage webhook token (s after ``iat``; Vonage's tokens carry no ``exp``)."""

VONAGE_SKEW_S = 30.0
"""Allowed clock difference (s) for Vonage's ``iat``, either way."""


def vonage_payload_hashes(body: bytes, query: Mapping[str, str], *, form: bool = False) -> list[str]:
    """The SHA-256 hex digests a Vonage ``payload_hash`` may equal for this request.

    Vonage hashes the JSON of the request's parameters: the query parameters, then
    the body's fields, serialized with no whitespace in arrival order (its own
    verifier does ``sha256(JSON.stringify(Object.assign(query, body)))``). That is
    the raw body for a compact JSON POST and the query for a GET; both candidates
    (the raw body's digest and the rebuilt JSON's) are returned.
    """
    out: list[str] = []
    if body:
        out.append(hashlib.sha256(body).hexdigest())
    merged: dict[str, Any] = dict(query)
    if body:
        parsed: Any = None
        try:
            if form:
                parsed = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            else:
                parsed = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            parsed = None
        if not isinstance(parsed, dict):
            return out
        merged.update(parsed)
    rebuilt = json.dumps(merged, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    digest = hashlib.sha256(rebuilt).hexdigest()
    if digest not in out:
        out.append(digest)
    return out


def check_vonage_webhook(
    token: str,
    secret: str,
    payload_hashes: Iterable[str],
    *,
    now: float | None = None,
    api_key: str | None = None,
    application_id: str | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Check a Vonage signed-webhook JWT (``Authorization: Bearer <token>``).

    The token must be HS256 under the signature secret (UTF-8), issued (``iat``) at
    most :data:`VONAGE_MAX_AGE_S` ago (± :data:`VONAGE_SKEW_S`), with ``iss`` —
    when present — ``"Vonage"``, and a ``payload_hash`` equal to one of
    ``payload_hashes``. When ``api_key``/``application_id`` are given, the claims of
    the same name must match them.

    Returns:
        ``(None, claims)`` when valid, else ``(reason, claims or {})``; the reason
        never contains the secret.
    """
    try:
        claims = verify_hs256(token, secret.encode("utf-8"))
        check_times(
            claims,
            now=time.time() if now is None else now,
            max_age_s=VONAGE_MAX_AGE_S,
            leeway_s=VONAGE_SKEW_S,
        )
    except JWTError as exc:
        return str(exc), {}
    if claims.get("iss", "Vonage") != "Vonage":
        return "issuer is not Vonage", claims
    claimed = claims.get("payload_hash")
    if not isinstance(claimed, str) or not claimed:
        return "no payload_hash claim", claims
    if not any(hmac.compare_digest(claimed.lower().encode(), h.encode()) for h in payload_hashes):
        return "payload_hash does not match the request", claims
    for name, want in (("api_key", api_key), ("application_id", application_id)):
        got = claims.get(name)
        if want and got is not None and not tokens_equal(str(got), want):
            return f"{name} claim does not match the configured one", claims
    return None, claims
