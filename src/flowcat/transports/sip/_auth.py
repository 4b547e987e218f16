"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

A ``401`` carries ``WWW-Authenticate`` (answered with ``Authorization``), a ``407``
``Proxy-Authenticate`` (answered with ``Proxy-Authorization``). Algorithms: ``MD5``
(the default when none is named), ``SHA-256``, and their ``-sess`` variants; with
``qop=auth`` the response covers a client nonce (``cnonce``) and a nonce count
(``nc``, incremented for every request that reuses the same nonce). ``qop=auth-int``
alone is not supported (:class:`~flowcat.errors.SIPAuthError`).

The password is only ever hashed here: it is never logged or put in an exception.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from ...errors import SIPAuthError

__all__ = ["Challenge", "DigestCredentials", "parse_challenge"]

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass
class Challenge:
    """One ``Digest`` challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False
    """From a ``407`` (answer with ``Proxy-Authorization``)."""

    @property
    def header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def _split_params(text: str) -> dict[str, str]:
    """``a=b, c="d, e"`` → dict (quoted values may hold commas)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,\t":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            end = i + 1
            buf = []
            while end < n and text[end] != '"':
                if text[end] == "\\" and end + 1 < n:
                    end += 1
                buf.append(text[end])
                end += 1
            value = "".join(buf)
            i = end + 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        out[key] = value
    return out


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse a ``WWW-Authenticate``/``Proxy-Authenticate`` value. Raises
    :class:`~flowcat.errors.SIPAuthError` when it is not a usable Digest challenge."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SIPAuthError(f"unsupported authentication scheme {scheme[:20]!r}")
    p = _split_params(rest)
    if "realm" not in p or "nonce" not in p:
        raise SIPAuthError("digest challenge without realm or nonce")
    algorithm = p.get("algorithm", "MD5").upper()
    base = algorithm.removesuffix("-SESS")
    if base not in _HASHES:
        raise SIPAuthError(f"unsupported digest algorithm {algorithm[:20]!r}")
    qop = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
    if qop and "auth" not in qop:
        raise SIPAuthError(f"unsupported qop {p.get('qop', '')[:30]!r} (only auth)")
    return Challenge(
        realm=p["realm"],
        nonce=p["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
        proxy=proxy,
    )


class DigestCredentials:
    """A username and password that answer digest challenges (the password stays private)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.__password = password
        self._nonce = ""
        self._nc = 0

    def __repr__(self) -> str:
        return f"DigestCredentials({self.username!r}, password=***)"

    def authorization(self, challenge: Challenge, method: str, uri: str, *, cnonce: str | None = None) -> str:
        """The ``Authorization``/``Proxy-Authorization`` value for ``method uri``."""
        h = _HASHES[challenge.algorithm.removesuffix("-SESS")]

        def hx(s: str) -> str:
            return h(s.encode()).hexdigest()

        if challenge.nonce != self._nonce:
            self._nonce, self._nc = challenge.nonce, 0
        self._nc += 1
        nc = f"{self._nc:08x}"
        cnonce = cnonce or secrets.token_hex(8)
        ha1 = hx(f"{self.username}:{challenge.realm}:{self.__password}")
        if challenge.algorithm.endswith("-SESS"):
            ha1 = hx(f"{ha1}:{challenge.nonce}:{cnonce}")
        ha2 = hx(f"{method}:{uri}")
        if "auth" in challenge.qop:
            response = hx(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")
        else:
            response = hx(f"{ha1}:{challenge.nonce}:{ha2}")
        parts = [
            f'Digest username="{self.username}"',
            f'realm="{challenge.realm}"',
            f'nonce="{challenge.nonce}"',
            f'uri="{uri}"',
            f'response="{response}"',
            f"algorithm={challenge.algorithm}",
        ]
        if challenge.opaque is not None:
            parts.append(f'opaque="{challenge.opaque}"')
        if "auth" in challenge.qop:
            parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        return ", ".join(parts)
