"""Field readers for the typed carrier control messages (``_*_messages.py``).

Each reader takes a decoded JSON object, a key and the message name, and returns the
field with its type checked, or raises :class:`~flowcat.errors.ProtocolError` naming the
message and field. ``None`` and an absent key are the same: "not sent". The serializers
catch the error and report it through their bad-input path (logged, rate-limited,
survived). Media messages are not typed: they stay raw dict reads on the hot path.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProtocolError

__all__ = ["need_object", "opt_int", "opt_object", "opt_str", "opt_str_list", "start_parts"]


def need_object(obj: object, what: str) -> dict[str, Any]:
    """``obj`` itself, checked to be a JSON object."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} that is not a JSON object", obj)
    return obj


def opt_object(obj: dict[str, Any], key: str, what: str) -> dict[str, Any] | None:
    """``obj[key]`` if it is an object, None if not sent; anything else raises."""
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise ProtocolError(f"{what} whose {key} is not an object", obj)


def opt_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    """``obj[key]`` if it is a string, None if not sent; anything else raises."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError(f"{what} whose {key} is not a string", obj)


def opt_int(obj: dict[str, Any], key: str, what: str) -> int | None:
    """``obj[key]`` as an int (a JSON integer or a decimal string), None if not sent."""
    value = obj.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ProtocolError(f"{what} whose {key} is not an integer", obj)


def opt_str_list(obj: dict[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    """``obj[key]`` as a tuple of strings, None if not sent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ProtocolError(f"{what} whose {key} is not a list of strings", obj)


def start_parts(obj: object, format_key: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """A ``start`` message's parts: the message, its ``start`` object and the media-format object
    under ``format_key`` (None if not sent); a message without a ``start`` object raises."""
    msg = need_object(obj, "start")
    start = msg.get("start")
    if not isinstance(start, dict):
        raise ProtocolError("start without a start object", obj)
    return msg, start, opt_object(start, format_key, "start")
