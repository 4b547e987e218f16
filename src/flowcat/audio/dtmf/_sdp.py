"""Finding the telephone-event payload type in an SDP body (never assume 101)."""

from __future__ import annotations

import re

__all__ = ["parse_telephone_event_pt", "telephone_event_codes"]

_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+telephone-event/(\d+)", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+)\s+(.*)$", re.IGNORECASE)
_DTMF_CODES = frozenset(range(16))


def telephone_event_codes(fmtp: str) -> frozenset[int]:
    """Event codes listed by a telephone-event fmtp value such as ``"0-15,66,70"``.

    Unparseable parts are skipped.
    """
    codes: set[int] = set()
    for part in fmtp.replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                codes.update(range(int(lo), int(hi) + 1))
            elif lo:
                codes.add(int(lo))
        except ValueError:
            continue
    return frozenset(codes)


def parse_telephone_event_pt(sdp: str, clock_rate: int = 8000) -> int | None:
    """The payload type of ``telephone-event/<clock_rate>`` in the audio section of ``sdp``.

    Reads ``a=rtpmap:<pt> telephone-event/<rate>`` lines in ``m=audio`` sections (or
    anywhere when the body has no ``m=`` line). A payload type whose
    ``a=fmtp:<pt>`` range does not cover all 16 DTMF codes (0–15) is skipped; no
    fmtp means 0–15 (RFC 4733 default). Payload types listed on the ``m=`` line
    are preferred, in their order.

    Args:
        sdp: The SDP body (CRLF or LF line ends).
        clock_rate: Wanted RTP clock rate, Hz (8000 for narrowband calls, 48000 for Opus).

    Returns:
        The payload type, or None when the peer offers no usable telephone-event.
    """
    in_audio = "m=" not in sdp
    listed: list[int] = []
    found: list[int] = []  # telephone-event PTs at the wanted rate, in SDP order
    fmtp: dict[int, str] = {}
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            in_audio = line.startswith("m=audio")
            if in_audio:
                listed.extend(int(t) for t in line.split()[3:] if t.isdigit())
            continue
        if not in_audio:
            continue
        m = _RTPMAP.match(line)
        if m is not None:
            if int(m.group(2)) == clock_rate:
                found.append(int(m.group(1)))
            continue
        m = _FMTP.match(line)
        if m is not None:
            fmtp[int(m.group(1))] = m.group(2)
    usable = [pt for pt in found if pt not in fmtp or _DTMF_CODES <= telephone_event_codes(fmtp[pt])]
    for pt in listed:
        if pt in usable:
            return pt
    return usable[0] if usable else None
