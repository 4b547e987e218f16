"""Authentication of Vonage media WebSocket upgrades (the NCCO's ``authorization: {"type": "vonage"}``).

Also which webhooks Vonage signs (:data:`SIGNED_EVENTS`, :func:`signed_event_kind`);
the webhook check itself is :meth:`~flowcat.serializers.VonageCarrier.verify_request`.

When a ``connect`` action's ``websocket`` endpoint carries
``"authorization": {"type": "vonage"}``, Vonage opens the socket with
``Authorization: Bearer <JWT>``: the same HS256 token, keyed with the account's
signature secret, as its signed webhooks. :func:`check_upgrade` verifies it with
the webhook rules (:func:`~flowcat.serializers._signatures.check_vonage_webhook`),
except for ``payload_hash``, which is about a body an upgrade does not have:

* absent: accepted;
* present: it must be the hash of an *empty* payload, i.e. SHA-256 of no bytes, or
  of the upgrade's parameters as compact JSON the way webhooks are hashed (its
  query parameters; ``{}`` when there are none). Any other value is refused, so a
  token minted for a webhook, whose hash covers that webhook's body, cannot be
  replayed to open a media socket.

The claim set Vonage puts in the upgrade's token is not documented beyond "the same
JWT as signed webhooks"; no live upgrade has been checked.

Docs:
    https://developer.vonage.com/en/voice/voice-api/concepts/websockets (authorization)
    https://developer.vonage.com/en/voice/voice-api/ncco-reference (websocket endpoint)
    https://developer.vonage.com/en/voice/voice-api/guides/signed-webhooks
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from ._jwt import JWTError, check_times, verify_hs256
from ._signatures import VONAGE_MAX_AGE_S, VONAGE_SKEW_S, tokens_equal, vonage_payload_hashes

__all__ = ["SIGNED_EVENTS", "bearer_token", "check_upgrade", "empty_payload_hashes", "signed_event_kind"]

SIGNED_EVENTS = frozenset(
    ("started", "ringing", "answered", "completed", "busy", "cancelled", "unanswered", "rejected", "failed")
)
"""Event ``status`` values Vonage signs in its developer preview (plus ``record``)."""


def signed_event_kind(body: bytes) -> str | None:
    """The event kind if this webhook body is one Vonage signs (a status in SIGNED_EVENTS, or record)."""
    try:
        msg = json.loads(body) if body else None
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    status = msg.get("status")
    if isinstance(status, str) and status in SIGNED_EVENTS:
        return status
    return "record" if "recording_url" in msg else None


def bearer_token(headers: Any) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None (absent, another scheme, empty)."""
    scheme, _, token = str(headers.get("Authorization", "")).strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def empty_payload_hashes(query: dict[str, str]) -> list[str]:
    """The hex SHA-256 digests an upgrade's ``payload_hash`` may be: no bytes, or the query's compact JSON."""
    out = [hashlib.sha256(b"").hexdigest()]
    out.extend(h for h in vonage_payload_hashes(b"", query) if h not in out)
    return out


def check_upgrade(
    token: str,
    secret: str,
    query: dict[str, str],
    *,
    now: float | None = None,
    api_key: str | None = None,
    application_id: str | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Check the bearer JWT of a media upgrade.

    Args:
        token: The compact JWT from ``Authorization: Bearer``.
        secret: The account's signature secret (its UTF-8 bytes are the HMAC key).
        query: The upgrade's query parameters (what ``payload_hash`` may cover).
        now: The current Unix time (default: the wall clock).
        api_key: When given, an ``api_key`` claim must equal it.
        application_id: When given, an ``application_id`` claim must equal it.

    Returns:
        ``(None, claims)`` when the token is good, else ``(reason, claims or {})``;
        the reason is safe to log (never the token or the secret).

    The token must be HS256 under ``secret``, issued (``iat``) at most
    :data:`~flowcat.serializers._signatures.VONAGE_MAX_AGE_S` ago (±
    :data:`~flowcat.serializers._signatures.VONAGE_SKEW_S`), not past ``exp`` nor
    before ``nbf`` when present, with ``iss`` ``"Vonage"`` when present; see the
    module docstring for ``payload_hash``.
    """
    try:
        claims = verify_hs256(token, secret.encode("utf-8"))
        t = time.time() if now is None else now
        check_times(claims, now=t, max_age_s=VONAGE_MAX_AGE_S, leeway_s=VONAGE_SKEW_S)
    except JWTError as exc:
        return str(exc), {}
    if claims.get("iss", "Vonage") != "Vonage":
        return "issuer is not Vonage", claims
    claimed = claims.get("payload_hash")
    if claimed is not None:
        digest = claimed.lower().encode() if isinstance(claimed, str) else b""
        if not any(hmac.compare_digest(digest, h.encode()) for h in empty_payload_hashes(query)):
            return "payload_hash is not that of an empty payload (an upgrade has no body)", claims
    for name, want in (("api_key", api_key), ("application_id", application_id)):
        got = claims.get(name)
        if want and got is not None and not tokens_equal(str(got), want):
            return f"{name} claim does not match the configured one", claims
    return None, claims
