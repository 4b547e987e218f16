"""SDP offer/answer (RFC 3264, RFC 4566) for one narrowband audio stream.

What is answered: the first ``m=audio`` line of the offer over RTP/AVP, with G.711
(PCMU payload type 0, PCMA 8, with or without ``a=rtpmap``) and telephone-event
(RFC 4733) at **whatever payload type the offer gives it** (101, 120, …; pjsip
uses 120). The codec is the first one of the offer's list that ``codecs`` allows
(the offerer's preference). A telephone-event whose ``fmtp`` lists only some
events (sipp offers ``0-11,16``) is still taken: only the events received are
reported. The answer's direction mirrors the offer's (``sendonly`` → ``recvonly``,
``inactive`` → ``inactive``; an old-style hold, ``c=0.0.0.0``, is ``inactive``),
its ptime is 20 ms and its connection address is the configured public address.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SDPError

__all__ = ["MediaOffer", "Negotiated", "build_answer", "build_offer", "negotiate", "parse_offer"]

STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


@dataclass
class MediaOffer:
    """The audio stream of an SDP offer."""

    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, tuple[str, int]]
    direction: str = "sendrecv"
    ptime: int | None = None
    session_id: str = ""


@dataclass
class Negotiated:
    """What both sides agreed on for the call's RTP."""

    codec: str
    """``"PCMU"`` or ``"PCMA"``."""
    payload_type: int
    telephone_event_pt: int | None
    remote: tuple[str, int]
    """Where the offer asked media to be sent (before symmetric-RTP latching)."""
    direction: str
    """This side's direction (what the answer says)."""
    remote_ptime: int | None = None

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")


def _number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes '²' and other digits ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def parse_offer(body: bytes | str) -> MediaOffer:
    """The first audio stream of an SDP body. Raises :class:`SDPError` if there is none."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    session_addr = ""
    session_dir = "sendrecv"
    session_id = ""
    media: MediaOffer | None = None
    in_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if media is not None:
                break  # only the first audio stream
            parts = value.split()
            in_audio = len(parts) >= 4 and parts[0] == "audio"
            if in_audio:
                port = parts[1].split("/")[0]
                if not _number(port) or int(port) > 65535 or "RTP/AVP" not in parts[2].upper():
                    raise SDPError(f"unsupported audio media line {line[:60]!r}", line)
                pts = [int(p) for p in parts[3:] if _number(p) and int(p) < 128]
                media = MediaOffer(session_addr, int(parts[1].split("/")[0]), pts, {}, session_dir)
            continue
        if kind == "o" and media is None:
            fields = value.split()
            session_id = fields[1] if len(fields) > 1 else ""
        elif kind == "c":
            fields = value.split()
            addr = fields[2].split("/")[0] if len(fields) >= 3 else ""
            if media is None:
                session_addr = addr
            elif in_audio:
                media.address = addr
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in _ANSWER_DIRECTION:
                if media is None:
                    session_dir = name
                elif in_audio:
                    media.direction = name
            elif in_audio and media is not None and name == "rtpmap":
                pt, _, enc = arg.partition(" ")
                enc_name, _, rate = enc.strip().partition("/")
                rate = rate.split("/")[0]
                if _number(pt) and _number(rate):
                    media.rtpmap[int(pt)] = (enc_name.strip(), int(rate))
            elif in_audio and media is not None and name == "ptime" and _number(arg.strip()):
                media.ptime = int(arg.strip())
    if media is None:
        raise SDPError("the offer has no audio stream", text[:200])
    if not media.address:
        raise SDPError("the offer's audio stream has no connection address", text[:200])
    media.session_id = session_id
    return media


def negotiate(offer: MediaOffer, codecs: tuple[str, ...] = ("PCMU", "PCMA")) -> Negotiated:
    """Pick the codec and telephone-event payload type. Raises :class:`SDPError` when no
    codec of ``codecs`` is offered (answer 488)."""
    allowed = {c.upper() for c in codecs}
    chosen: tuple[str, int] | None = None
    te: int | None = None
    for pt in offer.payload_types:
        name, rate = offer.rtpmap.get(pt) or STATIC.get(pt, ("", 0))
        upper = name.upper()
        if upper == "TELEPHONE-EVENT" and rate == 8000 and te is None:
            te = pt
        elif chosen is None and rate == 8000 and upper in allowed:
            chosen = (upper, pt)
    if chosen is None:
        raise SDPError(f"no common codec in the offer (payload types {offer.payload_types})", offer)
    direction = _ANSWER_DIRECTION.get(offer.direction, "sendrecv")
    if offer.address in ("0.0.0.0", "::") or offer.port == 0:  # noqa: S104 - a comparison with the wildcard address, not a bind
        direction = "inactive"
    return Negotiated(chosen[0], chosen[1], te, (offer.address, offer.port), direction, offer.ptime)


def build_answer(
    neg: Negotiated, address: str, port: int, *, session_id: int, version: int, direction: str | None = None
) -> bytes:
    """The SDP answer: one audio stream at ``address:port`` with the negotiated codec."""
    ip = "IP6" if ":" in address else "IP4"
    pts = [neg.payload_type] + ([neg.telephone_event_pt] if neg.telephone_event_pt is not None else [])
    lines = [
        "v=0",
        f"o=flowcat {session_id} {version} IN {ip} {address}",
        "s=flowcat",
        f"c=IN {ip} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in pts)}",
        f"a=rtpmap:{neg.payload_type} {neg.codec}/8000",
    ]
    if neg.telephone_event_pt is not None:
        lines.append(f"a=rtpmap:{neg.telephone_event_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{neg.telephone_event_pt} 0-15")
    lines.append("a=ptime:20")
    lines.append(f"a={direction or neg.direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(
    address: str,
    port: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    *,
    telephone_event_pt: int = 101,
    session_id: int,
    version: int = 1,
) -> bytes:
    """An SDP offer (outbound calls): one ``sendrecv`` audio stream at ``address:port``
    with ``codecs`` in preference order and telephone-event. The answer is read with
    :func:`parse_offer` and :func:`negotiate` (it names the codec chosen)."""
    ip = "IP6" if ":" in address else "IP4"
    static = {"PCMU": 0, "PCMA": 8}
    pts = [static[c.upper()] for c in codecs] + [telephone_event_pt]
    lines = [
        "v=0",
        f"o=flowcat {session_id} {version} IN {ip} {address}",
        "s=flowcat",
        f"c=IN {ip} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in pts)}",
    ]
    lines += [f"a=rtpmap:{static[c.upper()]} {c.upper()}/8000" for c in codecs]
    lines += [f"a=rtpmap:{telephone_event_pt} telephone-event/8000", f"a=fmtp:{telephone_event_pt} 0-15"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()
