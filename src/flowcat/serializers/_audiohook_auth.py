"""Authentication of Genesys AudioHook WebSocket upgrades (API key + HTTP Message Signature).

Genesys opens the AudioHook socket with ``X-API-KEY`` (the integration's API key)
and, when the integration has a client secret, an HTTP Message Signature: the
``Signature``/``Signature-Input`` headers, ``alg="hmac-sha256"``, keyed with the
base64-decoded client secret, ``keyid`` equal to the API key, covering
``@request-target``, ``@authority``, ``audiohook-organization-id``,
``audiohook-session-id``, ``audiohook-correlation-id`` and ``x-api-key``, with
``nonce``, ``created`` and ``expires`` parameters.

Our policy, in the order checked:

1. ``X-API-KEY`` equals the configured key (constant time).
2. Without a client secret nothing more is required.
3. With one, the request must be signed and the signature must verify
   (:func:`~flowcat.serializers._http_signatures.verify_hmac_sha256`) and cover
   every component listed above.
4. ``keyid`` equals ``X-API-KEY``.
5. ``nonce`` has at least :data:`MIN_NONCE_LENGTH` (22) characters: 16 random bytes
   in base64, as Genesys's reference server requires.
6. ``created`` is present, at most :data:`CLOCK_SKEW_S` (5 s) in the future and at
   most :data:`MAX_AGE_S` + :data:`CLOCK_SKEW_S` (10 + 5 s) in the past (Genesys's
   reference server allows 10 s); ``expires``, when present, is not more than
   :data:`CLOCK_SKEW_S` in the past.
7. The nonce was not seen in this process while its signature could still be fresh
   (a replay inside the window is refused; other worker processes keep their own).

``@authority`` (:func:`upgrade_authorities`): RFC 9421 section 2.2.3 derives it from
the target URI's authority, lower-cased, with the scheme's default port left out.
We take the ``Host`` header, lower-case it and drop ``:443`` when the scheme the
client used was ``wss``/``https`` (``:80`` for ``ws``/``http``). That scheme is the
first value of ``X-Forwarded-Proto`` when present (a TLS-terminating proxy in front
of us sees ``wss`` while we see plain HTTP), else our own connection's (TLS or not).
Trusting the header is safe here: it only picks which default port is dropped from
a value the request itself carries, and the signature must still match. The
``Host`` value as sent (lower-cased) is tried second when it differs, because
Genesys's reference server compares exactly that, so a client that signs what it
sends verifies either way.

Docs:
    https://developer.genesys.cloud/devapps/audiohook (the protocol specification)
    https://developer.genesys.cloud/devapps/audiohook/session-walkthrough#establishing-connection
      (the signed example request; our test vector)
    https://developer.genesys.cloud/forum/t/audiohook-http-signature/15595
    https://github.com/purecloudlabs/audiohook-reference-implementation (app/src/authenticator.ts)
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from ._http_signatures import SignatureCheck, field_value, normalize_authority, verify_hmac_sha256

__all__ = [
    "CLOCK_SKEW_S",
    "MAX_AGE_S",
    "MIN_NONCE_LENGTH",
    "REQUIRED_COMPONENTS",
    "NonceCache",
    "check_audiohook_upgrade",
    "forwarded_secure",
    "public_target_authority",
    "upgrade_authorities",
]

REQUIRED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
"""Components an AudioHook upgrade signature must cover."""

MIN_NONCE_LENGTH = 22
"""Shortest accepted ``nonce`` (characters)."""

MAX_AGE_S = 10.0
"""Oldest accepted signature (s after ``created``), before the clock-skew allowance."""

CLOCK_SKEW_S = 5.0
"""Allowed difference (s) between Genesys's clock and ours, either way."""


class NonceCache:
    """Nonces seen recently, each kept until its signature can no longer be fresh.

    Bounded: past ``max_entries`` the oldest entries go first (a flood of valid,
    distinct signatures cannot grow it without limit).
    """

    def __init__(self, max_entries: int = 16384) -> None:
        self.max_entries = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()

    def seen(self, nonce: str, keep_until: float, now: float) -> bool:
        """Record ``nonce``; True if it was already recorded and still live."""
        until = self._until
        while until:
            oldest, expiry = next(iter(until.items()))
            if expiry > now and len(until) < self.max_entries:
                break
            del until[oldest]
        if nonce in until:
            return True
        until[nonce] = keep_until
        return False


NONCES = NonceCache()
"""The process-wide nonce cache used by :func:`check_audiohook_upgrade`."""


def forwarded_secure(headers: Any) -> bool | None:
    """Whether ``X-Forwarded-Proto`` (first value) says the client used TLS; None if absent or unknown."""
    value = field_value(headers, "x-forwarded-proto")
    proto = (value or "").split(",")[0].strip().lower()
    if proto in ("https", "wss"):
        return True
    if proto in ("http", "ws"):
        return False
    return None


def upgrade_authorities(headers: Any, *, secure_connection: bool, fallback: str = "") -> tuple[str, ...]:
    """The ``@authority`` values an upgrade's signature may cover, the RFC 9421 form first.

    Args:
        headers: The upgrade request's headers.
        secure_connection: Whether the request reached us over TLS (used when
            ``X-Forwarded-Proto`` says nothing).
        fallback: The authority to use when there is no ``Host`` header.

    Returns:
        The normalised ``Host`` (see the module docstring), then the ``Host`` as
        sent, lower-cased, when that differs.
    """
    host = (field_value(headers, "host") or fallback).strip().lower()
    secure = forwarded_secure(headers)
    normal = normalize_authority(host, secure=secure_connection if secure is None else secure)
    return (normal,) if normal == host else (normal, host)


def public_target_authority(url: str) -> tuple[str, str]:
    """``(@request-target, @authority)`` of a full URL (the public URL Genesys called)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    secure = parts.scheme.lower() in ("https", "wss")
    return target, normalize_authority(parts.netloc.rpartition("@")[2], secure=secure)


def _verify(
    headers: Any, key: bytes, request_targets: tuple[str, ...], authorities: tuple[str, ...]
) -> SignatureCheck:
    """The first candidate (target, ``@authority``) that verifies, else the first candidate's failure."""
    failed: list[SignatureCheck] = []
    for request_target in request_targets:
        for authority in authorities or ("",):
            derived = {"@request-target": request_target, "@authority": authority, "@method": "GET"}
            check = verify_hmac_sha256(headers, key, derived=derived, required=REQUIRED_COMPONENTS)
            if check.ok:
                return check
            failed.append(check)
    return failed[0]


def check_audiohook_upgrade(
    headers: Any,
    *,
    request_target: str | tuple[str, ...],
    authority: str | tuple[str, ...],
    api_key: str,
    client_secret: bytes | None,
    now: float | None = None,
    nonces: NonceCache | None = None,
) -> str | None:
    """Check an AudioHook upgrade request; None if it is authentic, else the reason.

    Args:
        headers: The upgrade request's headers (multidict or mapping).
        request_target: The request target as received (path and query), or
            candidates tried in order (the public URL's first).
        authority: The request's ``@authority``, or candidates tried in order
            (:func:`upgrade_authorities`).
        api_key: The configured API key.
        client_secret: The decoded client secret, or None when none is configured.
        now: The current Unix time (default: the wall clock).
        nonces: Replay cache (default: the process-wide :data:`NONCES`).

    Returns:
        None when the request passes; otherwise a reason safe to log (it names the
        failed check, never a key or secret).
    """
    sent_key = field_value(headers, "x-api-key")
    if not sent_key:
        return "no X-API-KEY header"
    if not hmac.compare_digest(sent_key.encode(), api_key.encode()):
        return "X-API-KEY does not match the configured API key"
    if client_secret is None:
        return None
    authorities = (authority,) if isinstance(authority, str) else authority
    targets = (request_target,) if isinstance(request_target, str) else request_target
    check = _verify(headers, client_secret, targets, authorities)
    if not check.ok:
        return check.reason
    params = check.params
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or not hmac.compare_digest(keyid.encode(), sent_key.encode()):
        return "signature keyid does not match X-API-KEY"
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_LENGTH:
        return f"nonce missing or shorter than {MIN_NONCE_LENGTH} characters"
    t = time.time() if now is None else now
    created = params.get("created")
    if not isinstance(created, int):
        return "no created parameter"
    if created > t + CLOCK_SKEW_S:
        return f"created is {created - t:.0f} s in the future"
    if t - created > MAX_AGE_S + CLOCK_SKEW_S:
        return f"signature too old (created {t - created:.0f} s ago)"
    expires = params.get("expires")
    if isinstance(expires, int) and expires < t - CLOCK_SKEW_S:
        return f"signature expired {t - expires:.0f} s ago"
    cache = NONCES if nonces is None else nonces
    if cache.seen(nonce, created + MAX_AGE_S + CLOCK_SKEW_S, t):
        return "nonce replayed"
    return None
