"""Shared parsing of JSON carrier messages: malformed input is reported, never raised."""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..frames import Frame
    from ._base import FrameSerializer

__all__ = ["decode_media_payload", "dispatch_event", "parse_json_object"]


def parse_json_object(
    ser: FrameSerializer, data: str | bytes, *, text_only: bool = False
) -> dict[str, Any] | None:
    """``data`` as a JSON object, or None (reported through ``ser.bad_input``).

    Args:
        ser: The serializer reporting bad input.
        data: The WebSocket message.
        text_only: Reject binary messages (carriers that send JSON text only).
    """
    if text_only and not isinstance(data, str):
        ser.bad_input("binary message (JSON text expected)", data)
        return None
    try:
        msg = json.loads(data)
    except ValueError:
        ser.bad_input("invalid JSON", data)
        return None
    if not isinstance(msg, dict):
        ser.bad_input("JSON that is not an object", data)
        return None
    return msg


def decode_media_payload(ser: FrameSerializer, msg: dict[str, Any], data: str | bytes) -> bytes | None:
    """The base64 ``media.payload`` of a media event, or None (reported)."""
    media = msg.get("media")
    payload = media.get("payload") if isinstance(media, dict) else None
    if not isinstance(payload, str):
        ser.bad_input("media without payload", data)
        return None
    try:
        return b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        ser.bad_input("media payload that is not base64", data)
        return None


def dispatch_event(
    ser: FrameSerializer, events: dict[str, str], event: object, msg: dict[str, Any], data: str | bytes
) -> Frame | None:
    """Call the ``ser`` method ``events`` names for ``event`` with ``(msg, data)``; an unknown event is reported."""
    handler = events.get(event) if isinstance(event, str) else None
    if handler is None:
        ser.bad_input(f"unknown event {event!r}", data)
        return None
    result: Frame | None = getattr(ser, handler)(msg, data)
    return result

