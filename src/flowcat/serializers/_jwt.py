"""HS256 JSON Web Tokens, verified with the standard library only.

A token is ``base64url(header) "." base64url(claims) "." base64url(signature)``
(JWS compact serialization, no padding). We accept exactly one algorithm: the
header's ``alg`` must be ``"HS256"`` (so ``none``, ``RS256`` with a public key used
as an HMAC secret, and every other downgrade are refused before any signature
work), ``crit`` is refused, and the signature must be HMAC-SHA256 of the first two
segments' ASCII under the key, compared in constant time. Time claims are checked
separately by :func:`check_times`.

Specs:
    https://www.rfc-editor.org/rfc/rfc7519 (JWT)
    https://www.rfc-editor.org/rfc/rfc7515 (JWS, section 7.1 compact serialization)
    https://www.rfc-editor.org/rfc/rfc8725 (JWT best practices: algorithm verification)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from ..errors import JWTError

__all__ = ["JWTError", "check_times", "verify_hs256"]

_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64url_decode(segment: str, what: str) -> bytes:
    if not segment or not set(segment) <= _B64URL or len(segment) % 4 == 1:
        raise JWTError(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise JWTError(f"{what} is not base64url") from None


def _json_object(segment: str, what: str) -> dict[str, Any]:
    raw = _b64url_decode(segment, what)
    try:
        value = json.loads(raw)
    except ValueError:
        raise JWTError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise JWTError(f"{what} is not a JSON object")
    return value


def verify_hs256(token: str, key: bytes) -> dict[str, Any]:
    """Verify an HS256 token and return its claims.

    Args:
        token: The compact token (``xxx.yyy.zzz``).
        key: The HMAC key (raw bytes).

    Returns:
        The claims object.

    Raises:
        JWTError: Malformed, another algorithm, ``crit`` present, or a bad signature.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("not a compact JWS (expected three segments)")
    header_b64, claims_b64, sig_b64 = parts
    header = _json_object(header_b64, "header")
    alg = header.get("alg")
    if alg != "HS256":
        raise JWTError(f"algorithm {str(alg)[:20]!r} is not HS256")
    if "crit" in header:
        raise JWTError("critical header parameters are not supported")
    signature = _b64url_decode(sig_b64, "signature")
    expected = hmac.new(key, f"{header_b64}.{claims_b64}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise JWTError("signature mismatch")
    return _json_object(claims_b64, "claims")


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JWTError(f"claim {name!r} is not a number")
    return float(value)


def check_times(claims: dict[str, Any], *, now: float, max_age_s: float, leeway_s: float) -> None:
    """Check ``iat`` (required), ``exp`` and ``nbf`` (when present) against ``now``.

    Raises:
        JWTError: ``iat`` missing, in the future (beyond ``leeway_s``) or older than
            ``max_age_s`` + ``leeway_s``; ``exp`` passed; ``nbf`` not reached.
    """
    iat = _number(claims, "iat")
    if iat is None:
        raise JWTError("no iat claim")
    if iat > now + leeway_s:
        raise JWTError(f"issued {iat - now:.0f} s in the future")
    if now - iat > max_age_s + leeway_s:
        raise JWTError(f"token too old (issued {now - iat:.0f} s ago)")
    exp = _number(claims, "exp")
    if exp is not None and now > exp + leeway_s:
        raise JWTError(f"token expired {now - exp:.0f} s ago")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + leeway_s < nbf:
        raise JWTError("token not yet valid (nbf)")
