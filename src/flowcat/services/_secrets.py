"""API keys: where they come from, and keeping them out of logs and errors.

A key is read from the constructor argument or from ``<VENDOR>_API_KEY`` in the
environment. It is held in a :class:`Secret`, whose ``repr``/``str`` never show it;
every text that may echo it (a vendor's error body, an exception message) goes
through :func:`redact` before it is logged, raised or put in an ``ErrorFrame``.
"""

from __future__ import annotations

import os
import re

from ..errors import ConfigError

__all__ = ["Secret", "redact", "resolve_api_key"]

_MASK = "***"


class Secret:
    """A credential that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The clear value, for the one place that sends it (a header, a query)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve_api_key(vendor: str, api_key: str | Secret | None = None, *, required: bool = True) -> Secret:
    """The key given, else ``<VENDOR>_API_KEY`` from the environment.

    Args:
        vendor: Vendor name (``"openai"`` reads ``OPENAI_API_KEY``).
        api_key: An explicit key (wins over the environment).
        required: Raise when no key is found (else an empty secret).

    Raises:
        ConfigError: No key and ``required`` (the message names the variable, never a value).
    """
    if isinstance(api_key, Secret):
        return api_key
    if api_key:
        return Secret(api_key)
    var = re.sub(r"[^A-Z0-9]+", "_", vendor.upper()).strip("_") + "_API_KEY"
    value = os.environ.get(var, "")
    if not value and required:
        raise ConfigError(f"{vendor}: no API key: pass api_key= or set {var}")
    return Secret(value)


def redact(text: str, *secrets: Secret | str | None) -> str:
    """``text`` with every occurrence of each secret (and of its long fragments) masked.

    Vendors sometimes echo a key back partially ("Incorrect API key provided:
    sk-abc...xyz"); any run of 8 or more of the key's characters is masked too.
    """
    for s in secrets:
        if s is None:
            continue
        value = s.reveal() if isinstance(s, Secret) else s
        if not value:
            continue
        if value in text:
            text = text.replace(value, _MASK)
        if len(value) >= 12:
            # Partial echoes: head and tail fragments.
            for frag in (value[:8], value[-8:]):
                if frag in text:
                    text = text.replace(frag, _MASK)
    return text
