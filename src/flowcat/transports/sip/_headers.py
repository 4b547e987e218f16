"""Header values a UA needs to read: name-addr (From, To, Contact, Route), Via and SIP URIs.

Every function raises :class:`~flowcat.errors.SIPParseError` on malformed input, never
another exception.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ...errors import SIPParseError

__all__ = ["NameAddr", "SipUri", "Via", "new_branch", "new_tag", "parse_name_addr", "parse_uri", "parse_via"]

BRANCH_MAGIC = "z9hG4bK"


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


@dataclass
class SipUri:
    """A ``sip:``/``sips:`` URI: ``user@host:port;params``."""

    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    def address(self, default_port: int = 5060) -> tuple[str, int]:
        """(host, port) to send to (``maddr`` is not honoured)."""
        return self.host, self.port or default_port


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise SIPParseError(f"bad port {text[:10]!r}", raw)
    return int(text)


def _hostport(text: str, raw: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SIPParseError(f"bad IPv6 reference in {raw[:60]!r}", raw)
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SIPParseError(f"bad host:port in {raw[:60]!r}", raw)
        return host, _port(rest[1:], raw) if rest else None
    host, colon, port = text.partition(":")
    if not host or any(c in host for c in ' <>"'):
        raise SIPParseError(f"bad host in {raw[:60]!r}", raw)
    return host, _port(port, raw) if colon else None


def parse_uri(uri: str) -> SipUri:
    """Parse a SIP URI (``sip:alice@example.com:5070;transport=udp``)."""
    scheme, colon, rest = uri.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise SIPParseError(f"not a SIP URI: {uri[:60]!r}", uri)
    rest = rest.split("?", 1)[0]
    main, _, params = rest.partition(";")
    user, at, hostport = main.rpartition("@")
    host, port = _hostport(hostport if at else main, uri)
    return SipUri(scheme, user if at else "", host, port, _params(params))


@dataclass
class NameAddr:
    """``"Display" <uri>;params`` (or a bare ``uri;params``)."""

    display: str
    uri: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact/Route value."""
    value = value.strip()
    if "<" in value:
        lt = value.find("<")
        gt = value.find(">", lt)
        if gt < 0:
            raise SIPParseError(f"unclosed '<' in {value[:60]!r}", value)
        display = value[:lt].strip().strip('"')
        uri = value[lt + 1 : gt].strip()
        params = _params(value[gt + 1 :])
    else:
        uri, _, rest = value.partition(";")
        uri = uri.strip()
        display = ""
        params = _params(rest)
    if ":" not in uri and uri != "*":
        raise SIPParseError(f"bad URI in {value[:60]!r}", value)
    return NameAddr(display, uri, params)


@dataclass
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")


def parse_via(value: str) -> Via:
    proto, _, rest = value.strip().partition(" ")
    parts = proto.split("/")
    if len(parts) != 3 or parts[0].upper() != "SIP" or not rest.strip():
        raise SIPParseError(f"bad Via {value[:60]!r}", value)
    sent_by, _, params = rest.strip().partition(";")
    host, port = _hostport(sent_by.strip(), value)
    return Via(parts[2].upper(), host, port, _params(params))
