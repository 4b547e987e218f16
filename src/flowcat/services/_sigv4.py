"""AWS Signature Version 4 (SigV4) request signing, with no AWS SDK.

Follows "Create a signed AWS API request" and "Elements of an AWS API request signature"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html ,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-signing-elements.html) and is
checked against AWS's SigV4 test suite (``tests/fixtures/sigv4/``):

1. **canonical request**: ``METHOD\\nCanonicalURI\\nCanonicalQuery\\nCanonicalHeaders\\n
   SignedHeaders\\nhex(SHA256(payload))``. The URI is the request path URI-encoded (every
   byte outside ``A-Za-z0-9-._~`` and ``/`` as ``%XX``). The path given is the one sent on
   the wire, already percent-encoded, so for every service but S3 this encodes it a second
   time (``%3A`` in a Bedrock model id is signed as ``%253A``); S3 signs the wire path as it
   is (``double_encode=False``). With ``normalize`` (not S3) ``.``/``..`` segments and
   repeated slashes are removed first. Query parameters are decoded, re-encoded and sorted
   by key, then value. Headers: lowercase names, sorted; values trimmed with inner
   whitespace runs collapsed; repeated headers joined with ``,`` in order.
2. **string to sign**: ``AWS4-HMAC-SHA256\\n<amz date>\\n<date>/<region>/<service>/aws4_request\\n
   hex(SHA256(canonical request))``.
3. **signing key**: HMAC-SHA256 chain ``"AWS4"+secret`` → date → region → service →
   ``aws4_request``; the signature is ``hex(HMAC(key, string to sign))``.
4. headers added: ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary credentials),
   ``X-Amz-Content-Sha256`` (when asked: S3 and some others) and ``Authorization:
   AWS4-HMAC-SHA256 Credential=<akid>/<scope>, SignedHeaders=<names>, Signature=<hex>``.

**Event streams** (HTTP/2 input streams: Transcribe, Bedrock's
``InvokeModelWithBidirectionalStream``): the request is signed with the payload hash
``STREAMING-AWS4-HMAC-SHA256-EVENTS`` (also sent as ``X-Amz-Content-Sha256``); then each
event-stream message sent is wrapped in a signed envelope (:class:`EventSigner`): a message
whose payload is the encoded inner message and whose headers are ``:date`` (a timestamp,
whole seconds) and ``:chunk-signature`` (the 32 raw signature bytes). Its string to sign is
``AWS4-HMAC-SHA256-PAYLOAD\n<amz date>\n<scope>\n<prior signature>\n
hex(SHA256(encoded :date header))\nhex(SHA256(inner message))``, the prior signature being
the previous envelope's, the request's for the first one; an envelope with an empty payload
ends the stream. See "Setting up a streaming session"
(https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html) and "Signing
event stream messages" (https://docs.aws.amazon.com/transcribe/latest/dg/how-streaming.html);
checked against the string-to-sign vector of AWS's Rust SDK (``aws-sigv4``'s
``event_stream.rs`` test).

Credentials come from the arguments or ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``; the region from the argument, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``.
The secret and the token are held as :class:`~flowcat.services.Secret` and never logged.
Only static credentials: no profiles, no instance metadata, no STS (use an SDK to obtain
temporary credentials and pass them in).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from ..errors import ConfigError
from ._eventstream import encode_headers, frame_message
from ._secrets import Secret

__all__ = [
    "STREAMING_EVENTS",
    "AWSCredentials",
    "EventSigner",
    "SignedRequest",
    "amz_date",
    "canonical_headers",
    "canonical_query",
    "canonical_uri",
    "event_string_to_sign",
    "resolve_aws_credentials",
    "resolve_aws_region",
    "sign_request",
    "signing_key",
]

ALGORITHM = "AWS4-HMAC-SHA256"
STREAMING_EVENTS = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
"""The payload hash of a request whose body is a signed event stream."""
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"  # with A-Za-z0-9, which quote() never encodes


@dataclass(frozen=True)
class AWSCredentials:
    """Static AWS credentials (``repr`` shows the key id only)."""

    access_key_id: str
    secret_access_key: Secret = field(repr=False)
    session_token: Secret | None = field(default=None, repr=False)


def resolve_aws_credentials(
    access_key_id: str | None = None,
    secret_access_key: str | Secret | None = None,
    session_token: str | Secret | None = None,
) -> AWSCredentials:
    """The credentials given, else those of the environment (the three ``AWS_*`` variables).

    The key id and the secret are taken together from one source (a key id given with no
    secret does not pick up the environment's secret).

    Raises:
        ConfigError: No key id or no secret (the message names the variables, never a value).
    """
    if access_key_id or secret_access_key:
        akid, secret, token = access_key_id, secret_access_key, session_token
    else:
        akid = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        token = session_token or os.environ.get("AWS_SESSION_TOKEN")
    if not akid or not secret:
        raise ConfigError(
            "aws: no credentials: pass the access key id and secret access key, or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)"
        )
    return AWSCredentials(
        akid,
        secret if isinstance(secret, Secret) else Secret(secret),
        None if not token else token if isinstance(token, Secret) else Secret(token),
    )


def resolve_aws_region(region: str | None = None, default: str | None = None) -> str:
    """``region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``default``.

    Raises:
        ConfigError: None of them is set.
    """
    found = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or default
    if not found:
        raise ConfigError("aws: no region: pass region= or set AWS_REGION")
    return found


def amz_date(now: dt.datetime) -> str:
    """``YYYYMMDD'T'HHMMSS'Z'`` in UTC (naive datetimes are taken as UTC)."""
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str | Secret, date: str, region: str, service: str) -> bytes:
    """The derived key for ``date`` (``YYYYMMDD``), ``region`` and ``service``."""
    value = secret.reveal() if isinstance(secret, Secret) else secret
    k = _hmac(("AWS4" + value).encode(), date)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    return k


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    return quote(text, safe=_UNRESERVED + ("/" if keep_slash else ""), encoding="utf-8", errors="strict")


def _normalize_path(path: str) -> str:
    # RFC 3986 dot-segment removal, and empty segments (repeated slashes) dropped.
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    trailing = path.endswith(("/", "/.", "/.."))
    joined = "/" + "/".join(out)
    if trailing and out:
        joined += "/"
    return joined


def canonical_uri(path: str, *, double_encode: bool = True, normalize: bool = True) -> str:
    """The canonical URI of ``path`` (the path as sent on the wire).

    Args:
        path: The request path (``/model/us.amazon.nova-micro-v1%3A0/converse-stream``).
        double_encode: URI-encode the path (every service but S3). False: signed as given.
        normalize: Remove ``.``/``..`` segments and repeated slashes first (not S3).
    """
    path = path or "/"
    if normalize:
        path = _normalize_path(path)
    return _uri_encode(path, keep_slash=True) if double_encode else path


def canonical_query(query: str) -> str:
    """The canonical query string of a raw query (``a=1&B=2``): decoded, re-encoded, sorted."""
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((_uri_encode(unquote(key), keep_slash=False), _uri_encode(unquote(value), keep_slash=False)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """``(canonical headers block, signed header names)`` for ``(name, value)`` pairs.

    The block ends with a newline after each header (so the canonical request shows an
    empty line after it); repeated names are joined with ``,`` in the order given.
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


@dataclass(frozen=True)
class SignedRequest:
    """What signing produced: the headers to add, and the intermediate texts (tests).

    Attributes:
        headers: Headers to send with the request, in the order AWS's examples add them
            (``X-Amz-Date``, ``X-Amz-Security-Token``, ``X-Amz-Content-Sha256``, ``Authorization``).
        canonical_request: Step 1.
        string_to_sign: Step 2.
        signature: The hex signature.
    """

    headers: dict[str, str]
    canonical_request: str
    string_to_sign: str
    signature: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return self.headers["Authorization"]


def sign_request(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    credentials: AWSCredentials,
    region: str,
    service: str,
    now: dt.datetime | None = None,
    double_encode: bool = True,
    normalize: bool = True,
    content_sha256_header: bool = False,
    sign_session_token: bool = True,
    payload_hash: str | None = None,
) -> SignedRequest:
    """Sign one request (header-based SigV4).

    Args:
        method: ``GET``, ``POST``...
        url: The full URL as sent (scheme, host, percent-encoded path and query).
        headers: The headers to sign, as ``(name, value)`` pairs (``Host`` is taken from
            ``url`` when absent). Sign only headers the client will send unchanged.
        body: The payload (hashed into the canonical request).
        credentials: Who signs.
        region: The region of the endpoint (``us-east-1``).
        service: The signing name (``bedrock`` for ``bedrock-runtime``, ``s3``...).
        now: The signing time (default: the current UTC time).
        double_encode: See :func:`canonical_uri` (False for S3).
        normalize: See :func:`canonical_uri` (False for S3).
        content_sha256_header: Also send and sign ``X-Amz-Content-Sha256``.
        sign_session_token: Sign ``X-Amz-Security-Token`` (a few services want it added after).
        payload_hash: Sign this instead of the body's hash (:data:`STREAMING_EVENTS` for an
            event stream, whose body is not known yet).

    Returns:
        The :class:`SignedRequest`; send ``headers`` plus its :attr:`SignedRequest.headers`.
    """
    parts = urlsplit(url)
    when = amz_date(now if now is not None else dt.datetime.now(dt.UTC))
    date = when[:8]
    if payload_hash is None:
        payload_hash = hashlib.sha256(body).hexdigest()
    added: dict[str, str] = {"X-Amz-Date": when}
    token = credentials.session_token.reveal() if credentials.session_token else None
    if token:
        added["X-Amz-Security-Token"] = token
    if content_sha256_header:
        added["X-Amz-Content-Sha256"] = payload_hash
    to_sign = [(n, v) for n, v in headers]
    if not any(n.lower() == "host" for n, _ in to_sign):
        to_sign.append(("host", parts.netloc))
    to_sign += [(n, v) for n, v in added.items() if sign_session_token or n != "X-Amz-Security-Token"]
    block, signed = canonical_headers(to_sign)
    creq = "\n".join((
        method.upper(),
        canonical_uri(parts.path, double_encode=double_encode, normalize=normalize),
        canonical_query(parts.query),
        block,
        signed,
        payload_hash,
    ))
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join((ALGORITHM, when, scope, hashlib.sha256(creq.encode()).hexdigest()))
    signature = hmac.new(signing_key(credentials.secret_access_key, date, region, service), sts.encode(),
                         hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return SignedRequest(added, creq, sts, signature)


# ------------------------------------------------------------------ event streams


def _date_header(when: dt.datetime) -> bytes:
    return encode_headers([(":date", when)])


def event_string_to_sign(payload: bytes, prior_signature: str, when: dt.datetime, region: str,
                         service: str) -> str:
    """The string to sign of one event-stream envelope (``when`` in whole seconds, UTC)."""
    stamp = amz_date(when)
    return "\n".join((
        "AWS4-HMAC-SHA256-PAYLOAD", stamp, f"{stamp[:8]}/{region}/{service}/aws4_request", prior_signature,
        hashlib.sha256(_date_header(when)).hexdigest(), hashlib.sha256(payload).hexdigest(),
    ))


class EventSigner:
    """Signs the messages of an input event stream, each chained to the one before.

    Args:
        credentials: Who signs (the request's signer).
        region: The region of the scope.
        service: The signing name (``bedrock``, ``transcribe``).
        seed_signature: The signature of the request that opened the stream.
    """

    __slots__ = ("_keys", "_second", "credentials", "prior", "region", "service")

    def __init__(self, credentials: AWSCredentials, region: str, service: str, seed_signature: str) -> None:
        self.credentials = credentials
        self.region = region
        self.service = service
        self.prior = seed_signature
        self._keys: tuple[str, bytes] | None = None  # (date, signing key): derived once a day
        # (epoch second, encoded :date header, its SHA-256 hex, the lines before the prior
        # signature, the date): computed once a second
        self._second: tuple[int, bytes, str, str, str] | None = None

    def _key(self, date: str) -> bytes:
        if self._keys is None or self._keys[0] != date:
            self._keys = (date, signing_key(self.credentials.secret_access_key, date, self.region, self.service))
        return self._keys[1]

    def _date(self, when: dt.datetime) -> tuple[int, bytes, str, str, str]:
        second = int(when.timestamp())
        cached = self._second
        if cached is None or cached[0] != second:
            header = _date_header(when)
            stamp = amz_date(when)
            head = f"AWS4-HMAC-SHA256-PAYLOAD\n{stamp}\n{stamp[:8]}/{self.region}/{self.service}/aws4_request\n"
            cached = self._second = (second, header, hashlib.sha256(header).hexdigest(), head, stamp[:8])
        return cached

    def sign(self, payload: bytes, now: dt.datetime | None = None) -> bytes:
        """The envelope carrying ``payload`` (an encoded message; ``b""`` ends the stream)."""
        when = (now if now is not None else dt.datetime.now(dt.UTC)).replace(microsecond=0)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        _, date_header, date_hash, head, date = self._date(when)
        # event_string_to_sign(), with what changes once a second cached
        sts = f"{head}{self.prior}\n{date_hash}\n{hashlib.sha256(payload).hexdigest()}"
        signature = hmac.new(self._key(date), sts.encode(), hashlib.sha256).digest()
        self.prior = signature.hex()
        return frame_message(_SIG_HEADER + signature + date_header, payload)


_SIG_HEADER = encode_headers([(":chunk-signature", b"\0" * 32)])[:-32]  # name, type 6, length 32
