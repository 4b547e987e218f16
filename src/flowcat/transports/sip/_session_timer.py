"""RFC 4028 session timers: keep a call alive by refreshing it, hang up one whose peer vanished.

Placeholder: settings only (the negotiation follows).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SessionTimers"]


@dataclass(frozen=True)
class SessionTimers:
    """Session timer settings of a :class:`~flowcat.transports.sip.SIPServer`.

    Args:
        session_expires: Interval (s) put in the 200 OK when the caller asked none.
        min_se: Shortest interval accepted (s); a shorter ``Session-Expires`` gets ``422``
            with this ``Min-SE`` (RFC 4028 §5: at least 90 in production).
        refresh_method: ``"UPDATE"`` or ``"INVITE"``: how this side refreshes as the refresher.
    """

    session_expires: int = 1800
    min_se: int = 90
    refresh_method: str = "UPDATE"
