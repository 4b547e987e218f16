"""Call metadata from a carrier handshake, wire types and small parsing helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..frames import InputDTMFFrame, KeypadEntry

__all__ = ["CallInfo", "Wire", "WireOut", "dtmf_frame", "truncate"]

Wire = str | bytes
"""One WebSocket message: ``str`` is sent as a text frame, ``bytes`` as a binary frame."""

WireOut = Wire | list[Wire] | None
"""What :meth:`FrameSerializer.serialize` returns."""


def truncate(raw: object, limit: int = 200) -> str:
    """A short printable form of a raw message, for logs."""
    if isinstance(raw, bytes | bytearray | memoryview):
        b = bytes(raw)
        return f"<{len(b)} bytes> {b[:limit]!r}"
    text = str(raw)
    if len(text) > limit:
        return f"{text[:limit]!r}… ({len(text)} chars)"
    return repr(text)


_KEYS = {k.value: k for k in KeypadEntry}


def dtmf_frame(digit: object) -> InputDTMFFrame | None:
    """The :class:`InputDTMFFrame` for a digit string, or None if it is not a keypad key."""
    key = _KEYS.get(str(digit).upper()) if digit is not None else None
    return InputDTMFFrame(button=key) if key is not None else None


@dataclass(slots=True)
class CallInfo:
    """What is known about a call: what the carrier's connect/start messages said, and where
    the server accepted it. The one description of a call: serializers return it from the
    handshake, the server completes it and hands it to the app factory (``--app``).

    Attributes:
        carrier: Carrier name (``"twilio"``, ``"genesys"``, …).
        stream_id: The carrier's id for this media stream (Twilio ``streamSid``, …).
        call_id: The id to use with the carrier's REST API (Twilio ``callSid``,
            Telnyx ``call_control_id``, Plivo ``callId``, Genesys ``conversationId``).
        codec: Caller audio codec: ``"PCMU"``, ``"PCMA"`` or ``"L16"`` (little-endian).
        sample_rate: Caller audio sample rate (Hz).
        custom_parameters: Per-call values passed through the carrier (TwiML
            ``<Parameter>``, Exotel query parameters, Genesys ``inputVariables``, …).
        account_id: The carrier account, where sent.
        from_number: Caller number, where sent.
        to_number: Called number, where sent.
        extra: Anything else carrier-specific (session tokens, tracks, …).
        remote: The peer's address, as the server saw it (set by the server).
        path: The URL path the call's WebSocket was opened on (set by the server).
        query: That URL's query parameters (set by the server).
        agent: The agent the caller asked for, where the route names one (the WebRTC
            playground's ``agent``); None: the server's default app.
    """

    carrier: str
    stream_id: str | None = None
    call_id: str | None = None
    codec: str = "PCMU"
    sample_rate: int = 8000
    custom_parameters: dict[str, Any] = field(default_factory=dict)
    account_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold session tokens
    remote: str | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
