"""HTTP Message Signatures (RFC 9421), verification with ``hmac-sha256`` only.

How a signature base is built (RFC 9421 section 2.5): one line per covered
component, in the order ``Signature-Input`` lists them, ``"<name>": <value>``, then
a last line ``"@signature-params": <the Inner List re-serialized>``; lines are joined
by a bare LF with none after the last. Header components take the field's values,
each trimmed, joined by ``", "``; derived components (``@authority``,
``@request-target``, ``@method``, …) are supplied by the caller, who knows the
request as it arrived. The signature is HMAC-SHA256 of the base's bytes.

What is refused (each with its reason): a missing or unparsable ``Signature`` /
``Signature-Input``, a label without a signature, a component with parameters
(``;sf``, ``;bs``, ``;key``, ``;req`` are not supported), an unknown derived
component, a covered header that is absent, a duplicate component, a required
component not covered, a parameter other than ``alg``/``created``/``expires``/
``keyid``/``nonce``/``tag`` or of the wrong type, an ``alg`` other than
``hmac-sha256``, and a signature that does not match. Freshness, nonces and key
ids are the caller's policy (see :mod:`flowcat.serializers._audiohook_auth`).
:func:`normalize_authority` gives ``@authority`` its section 2.2.3 form.

Specs:
    https://www.rfc-editor.org/rfc/rfc9421 (sections 2, 2.2.3, 3.2; test vector B.2.5)
    https://www.rfc-editor.org/rfc/rfc3986 (section 6.2.3, scheme-based normalization)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._sfv import InnerList, SFVError, Token, parse_dictionary, serialize_inner_list

__all__ = ["SignatureCheck", "field_value", "normalize_authority", "signature_base", "verify_hmac_sha256"]

_PARAM_TYPES: dict[str, type] = {
    "alg": str,
    "created": int,
    "expires": int,
    "keyid": str,
    "nonce": str,
    "tag": str,
}


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of a signature check.

    Attributes:
        ok: Whether the signature verified.
        reason: Why it did not ("" when it did); safe to log (no key material).
        unsigned: The request carried neither ``Signature`` nor ``Signature-Input``.
        label: The signature label that was checked.
        params: The signature parameters (``created``, ``expires``, ``keyid``, ``nonce``, ``alg``).
        covered: The covered component names, in order.
    """

    ok: bool
    reason: str = ""
    unsigned: bool = False
    label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    covered: tuple[str, ...] = ()


def field_value(headers: Any, name: str) -> str | None:
    """A header's value as RFC 9421 covers it: each line trimmed, joined by ``", "``.

    ``headers`` is a multidict (``getall``) or a plain mapping; None if absent.
    """
    getall = getattr(headers, "getall", None)
    values: Iterable[str]
    if getall is not None:
        values = getall(name, [])
    else:
        one = headers.get(name)
        if one is None:
            one = next((v for k, v in headers.items() if k.lower() == name), None)
        values = [] if one is None else [one]
    parts = [v.strip() for v in values]
    return ", ".join(parts) if parts else None


def normalize_authority(authority: str, *, secure: bool) -> str:
    """``@authority`` as RFC 9421 section 2.2.3 derives it from a ``Host`` value.

    Lower-cased, surrounding whitespace removed, and the port dropped when it is
    the scheme's default (443 when ``secure``, i.e. ``wss``/``https``; 80 for
    ``ws``/``http``) or empty (RFC 3986 section 6.2.3). An IPv6 literal keeps its
    brackets (``[::1]:443`` → ``[::1]``). Any other port is kept.
    """
    value = authority.strip().lower()
    if value.startswith("["):
        host, sep, rest = value.partition("]")
        host += sep
        port = rest[1:] if rest.startswith(":") else None
    else:
        host, sep, port_s = value.rpartition(":")
        host, port = (host, port_s) if sep and ":" not in host else (value, None)
    if port is None or (port and port != ("443" if secure else "80")):
        return value
    return host


def signature_base(components: Iterable[tuple[str, str]], signature_params: str) -> str:
    """The signature base for ``(name, value)`` components and the serialized params."""
    lines = [f'"{name}": {value}' for name, value in components]
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines)


def _fail(reason: str, **kw: Any) -> SignatureCheck:
    return SignatureCheck(ok=False, reason=reason, **kw)


def verify_hmac_sha256(
    headers: Any,
    key: bytes,
    *,
    derived: Mapping[str, str],
    required: Iterable[str] = (),
) -> SignatureCheck:
    """Verify the first signature of ``Signature-Input`` with HMAC-SHA256 under ``key``.

    Args:
        headers: The request headers (multidict or mapping; names case-insensitive).
        key: The shared secret (raw bytes).
        derived: Values of the derived components the caller can vouch for, by name
            (``"@authority"``, ``"@request-target"``, …). Others are refused.
        required: Component names the signature must cover.

    Returns:
        A :class:`SignatureCheck`; ``ok`` only when everything above holds.
    """
    raw_input = field_value(headers, "signature-input")
    raw_sig = field_value(headers, "signature")
    if raw_input is None and raw_sig is None:
        return _fail("unsigned (no Signature or Signature-Input header)", unsigned=True)
    if raw_input is None or raw_sig is None:
        return _fail("Signature and Signature-Input must come together")
    try:
        inputs = parse_dictionary(raw_input)
        sigs = parse_dictionary(raw_sig)
    except SFVError as exc:
        return _fail(f"malformed signature header: {exc}")
    if not inputs:
        return _fail("empty Signature-Input")
    label = next(iter(inputs))
    member = inputs[label]
    sig_item = sigs.get(label)
    if sig_item is None or not isinstance(sig_item[0], bytes):
        return _fail(f"no byte-sequence Signature for label {label!r}", label=label)
    if not isinstance(member[0], list):
        return _fail(f"Signature-Input member {label!r} is not an inner list", label=label)
    inner: InnerList = (member[0], member[1])
    params: dict[str, Any] = {}
    for name, value in inner[1]:
        want = _PARAM_TYPES.get(name)
        if want is None:
            return _fail(f"unknown signature parameter {name!r}", label=label)
        if isinstance(value, bool) or not isinstance(value, want) or isinstance(value, Token):
            return _fail(f"signature parameter {name!r} has the wrong type", label=label)
        params[name] = value
    covered: list[str] = []
    lines: list[tuple[str, str]] = []
    for value, comp_params in inner[0]:
        if not isinstance(value, str) or isinstance(value, Token):
            return _fail("covered components must be strings", label=label, params=params)
        if comp_params:
            return _fail(f"component parameters are not supported ({value!r})", label=label, params=params)
        if value != value.lower() or value == "@signature-params" or value in covered:
            return _fail(f"invalid or duplicate component {value!r}", label=label, params=params)
        if value.startswith("@"):
            resolved = derived.get(value)
            if resolved is None:
                return _fail(f"unsupported derived component {value!r}", label=label, params=params)
        else:
            resolved = field_value(headers, value)
            if resolved is None:
                return _fail(f"covered header {value!r} is absent", label=label, params=params)
        covered.append(value)
        lines.append((value, resolved))
    failed = SignatureCheck(ok=False, label=label, params=params, covered=tuple(covered))
    missing = [c for c in required if c not in covered]
    if missing:
        return replace(failed, reason="signature does not cover " + ", ".join(missing))
    alg = params.get("alg", "hmac-sha256")
    if alg != "hmac-sha256":
        return replace(failed, reason=f"algorithm {alg!r} is not supported")
    base = signature_base(lines, serialize_inner_list(inner))
    expected = hmac.new(key, base.encode("utf-8"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, sig_item[0]):
        return replace(failed, reason="signature mismatch")
    return replace(failed, ok=True)
