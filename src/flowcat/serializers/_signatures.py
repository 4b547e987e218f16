"""Request-signature checks for carrier webhooks and WebSocket upgrades.

All comparisons are constant-time. Each function documents the algorithm it
implements and where it comes from; see ``docs/carriers.md`` for what is unconfirmed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = [
    "plivo_v3_signature",
    "tokens_equal",
    "twilio_signature",
    "validate_plivo_v3",
    "validate_telnyx_ed25519",
    "validate_twilio",
]

logger = logging.getLogger("flowcat.serializers")

Params = Mapping[str, str] | Iterable[tuple[str, str]]


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
    the POST form parameters (none for GET or the WebSocket upgrade), sorted by name.
    """
    data = url + "".join(k + v for k, v in sorted(_pairs(params)))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_twilio(url: str, params: Params | None, signature: str | None, auth_token: str) -> bool:
    """Whether ``signature`` is Twilio's signature of this request."""
    if not signature:
        return False
    return tokens_equal(twilio_signature(url, params, auth_token), signature)


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


def validate_telnyx_ed25519(
    payload: bytes,
    signature_b64: str | None,
    timestamp: str | None,
    public_key_b64: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool | None:
    """Check Telnyx's ``telnyx-signature-ed25519`` over ``timestamp|payload``.

    Returns:
        True/False, or None when the ``cryptography`` package is not installed (the
        check is then skipped; install ``cryptography`` to enforce it).
    """
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
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
