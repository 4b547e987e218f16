"""Structured Field Values (RFC 8941): the subset HTTP Message Signatures use.

``Signature-Input`` and ``Signature`` (RFC 9421) are Dictionaries: each member is an
Inner List of component names with parameters, or a Byte Sequence. This module
parses Dictionaries, Inner Lists, Items and Parameters (Integers, Decimals, Strings,
Tokens, Byte Sequences, Booleans) and serializes Inner Lists back, which is how the
``@signature-params`` line of a signature base is rebuilt from what was received.
Anything outside the grammar raises :class:`SFVError`; nothing is guessed.

Spec: https://www.rfc-editor.org/rfc/rfc8941 (sections 3 and 4).
"""

from __future__ import annotations

import base64
import binascii
import string
from typing import Union

from ..errors import SFVError

__all__ = ["BareItem", "InnerList", "Item", "Params", "SFVError", "Token", "parse_dictionary", "serialize_inner_list"]


class Token(str):
    """An RFC 8941 Token (unquoted), as opposed to a String."""

    __slots__ = ()


BareItem = Union[int, float, str, bytes, bool]  # noqa: UP007 (a runtime alias)
Params = list[tuple[str, BareItem]]
Item = tuple[BareItem, Params]
InnerList = tuple[list[Item], Params]

_LCALPHA = frozenset(string.ascii_lowercase)
_KEY_REST = _LCALPHA | frozenset(string.digits + "_-.*")
_TOKEN_FIRST = frozenset(string.ascii_letters + "*")
_TCHAR = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_B64 = frozenset(string.ascii_letters + string.digits + "+/=")


class _Parser:
    __slots__ = ("i", "s")

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _fail(self, what: str) -> SFVError:
        return SFVError(f"{what} at offset {self.i}")

    def _skip(self, chars: str) -> None:
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1

    def dictionary(self) -> dict[str, Item | InnerList]:
        out: dict[str, Item | InnerList] = {}
        self._skip(" ")
        while self.i < len(self.s):
            key = self.key()
            if self._peek() == "=":
                self.i += 1
                out[key] = self.member()
            else:
                out[key] = (True, self.params())
            self._skip(" \t")
            if self.i >= len(self.s):
                return out
            if self._peek() != ",":
                raise self._fail("expected ',' between dictionary members")
            self.i += 1
            self._skip(" \t")
            if self.i >= len(self.s):
                raise self._fail("trailing ',' in dictionary")
        return out

    def member(self) -> Item | InnerList:
        if self._peek() == "(":
            return self.inner_list()
        return (self.bare_item(), self.params())

    def inner_list(self) -> InnerList:
        self.i += 1  # "("
        items: list[Item] = []
        while self.i < len(self.s):
            self._skip(" ")
            if self._peek() == ")":
                self.i += 1
                return items, self.params()
            items.append((self.bare_item(), self.params()))
            if self._peek() not in (" ", ")"):
                raise self._fail("expected ' ' or ')' in inner list")
        raise self._fail("unterminated inner list")

    def params(self) -> Params:
        out: Params = []
        while self._peek() == ";":
            self.i += 1
            self._skip(" ")
            key = self.key()
            value: BareItem = True
            if self._peek() == "=":
                self.i += 1
                value = self.bare_item()
            out = [(k, v) for k, v in out if k != key]  # a repeated key overrides
            out.append((key, value))
        return out

    def key(self) -> str:
        start = self.i
        if self._peek() not in _LCALPHA and self._peek() != "*":
            raise self._fail("expected a key")
        self.i += 1
        while self._peek() and self._peek() in _KEY_REST:
            self.i += 1
        return self.s[start : self.i]

    def bare_item(self) -> BareItem:
        c = self._peek()
        if c == "-" or c.isdigit():
            return self.number()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c and c in _TOKEN_FIRST:
            start = self.i
            self.i += 1
            while self._peek() and self._peek() in _TCHAR:
                self.i += 1
            return Token(self.s[start : self.i])
        raise self._fail("expected an item")

    def number(self) -> int | float:
        start = self.i
        if self._peek() == "-":
            self.i += 1
        digits_start = self.i
        while self._peek().isdigit() or self._peek() == ".":
            self.i += 1
        text = self.s[digits_start : self.i]
        if not text or not text[0].isdigit():
            raise self._fail("expected a digit")
        if "." not in text:
            if len(text) > 15:
                raise self._fail("integer longer than 15 digits")
            return int(self.s[start : self.i])
        whole, _, frac = text.partition(".")
        if "." in frac or not frac or len(whole) > 12 or len(frac) > 3:
            raise self._fail("malformed decimal")
        return float(self.s[start : self.i])

    def string(self) -> str:
        self.i += 1  # opening quote
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                nxt = self._peek()
                if nxt not in ('"', "\\"):
                    raise self._fail("bad escape in string")
                out.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise self._fail("non-printable character in string")
            else:
                out.append(c)
        raise self._fail("unterminated string")

    def byte_sequence(self) -> bytes:
        end = self.s.find(":", self.i + 1)
        if end < 0:
            raise self._fail("unterminated byte sequence")
        body = self.s[self.i + 1 : end]
        if not set(body) <= _B64:
            raise self._fail("bad character in byte sequence")
        try:
            value = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise self._fail("bad base64 in byte sequence") from None
        self.i = end + 1
        return value

    def boolean(self) -> bool:
        value = self.s[self.i + 1 : self.i + 2]
        if value not in ("0", "1"):
            raise self._fail("bad boolean")
        self.i += 2
        return value == "1"


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """Parse a Dictionary field value (members in order; a repeated key keeps the last).

    Raises:
        SFVError: The value does not follow RFC 8941.
    """
    parser = _Parser(text.strip(" "))
    return parser.dictionary()


def _serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0")  # at most three fractional digits, at least one
        return text + "0" if text.endswith(".") else text
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_params(params: Params) -> str:
    return "".join(f";{k}" if v is True else f";{k}={_serialize_bare(v)}" for k, v in params)


def serialize_inner_list(value: InnerList) -> str:
    """The canonical RFC 8941 serialization of an Inner List with its parameters."""
    items, params = value
    inner = " ".join(_serialize_bare(v) + _serialize_params(p) for v, p in items)
    return f"({inner}){_serialize_params(params)}"
