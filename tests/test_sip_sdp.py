"""SDP offer/answer: codec choice, telephone-event payload type from the offer, directions."""

from __future__ import annotations

import pytest

from flowcat.errors import SDPError
from flowcat.transports.sip import build_answer, negotiate, parse_offer


def offer(m: str, *attrs: str, c: str = "c=IN IP4 192.0.2.10") -> str:
    return "\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", c, "t=0 0", m, *attrs]) + "\r\n"


def test_pjsip_offer_pcma_first_and_telephone_event_on_120() -> None:
    """Gotcha 5: pjsip lists PCMA first and uses PT 120 for telephone-event; never assume 101."""
    o = parse_offer(
        offer(
            "m=audio 4000 RTP/AVP 8 0 120",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:120 telephone-event/8000",
            "a=fmtp:120 0-16",
        )
    )
    neg = negotiate(o)
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("PCMA", 8, 120)
    assert neg.remote == ("192.0.2.10", 4000)
    answer = build_answer(neg, "203.0.113.7", 10002, session_id=5, version=1).decode()
    assert "m=audio 10002 RTP/AVP 8 120\r\n" in answer
    assert "a=rtpmap:120 telephone-event/8000\r\n" in answer
    assert "c=IN IP4 203.0.113.7\r\n" in answer
    assert "a=ptime:20\r\n" in answer and "a=sendrecv\r\n" in answer


def test_sipp_offer_with_partial_event_range_still_gets_dtmf() -> None:
    """sipp offers fmtp 0-11,16 (no A-D): the digits still come through, so take the PT."""
    neg = negotiate(
        parse_offer(
            offer("m=audio 6000 RTP/AVP 8 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-11,16")
        )
    )
    assert (neg.codec, neg.telephone_event_pt) == ("PCMA", 101)


def test_static_payload_types_without_rtpmap_and_allowed_codecs() -> None:
    o = parse_offer(offer("m=audio 6000 RTP/AVP 0 8"))
    assert negotiate(o).codec == "PCMU"
    assert negotiate(o, ("PCMA",)).codec == "PCMA"
    assert negotiate(o).telephone_event_pt is None
    with pytest.raises(SDPError, match="no common codec"):
        negotiate(parse_offer(offer("m=audio 6000 RTP/AVP 9 18")))


@pytest.mark.parametrize(
    ("attr", "conn", "expected", "sending"),
    [
        ("a=sendrecv", "c=IN IP4 192.0.2.10", "sendrecv", True),
        ("a=sendonly", "c=IN IP4 192.0.2.10", "recvonly", False),
        ("a=recvonly", "c=IN IP4 192.0.2.10", "sendonly", True),
        ("a=inactive", "c=IN IP4 192.0.2.10", "inactive", False),
        ("a=sendrecv", "c=IN IP4 0.0.0.0", "inactive", False),
    ],
)
def test_direction_is_mirrored(attr: str, conn: str, expected: str, sending: bool) -> None:
    neg = negotiate(parse_offer(offer("m=audio 6000 RTP/AVP 0", attr, c=conn)))
    assert neg.direction == expected and neg.sending is sending
    assert f"a={expected}\r\n" in build_answer(neg, "127.0.0.1", 1, session_id=1, version=2).decode()


def test_media_level_connection_overrides_session_and_first_audio_stream_only() -> None:
    body = (
        offer("m=audio 6000 RTP/AVP 0", "c=IN IP4 198.51.100.1", "a=ptime:30") + "m=audio 7000 RTP/AVP 8\r\n"
    )
    o = parse_offer(body)
    assert (o.address, o.port, o.payload_types, o.ptime) == ("198.51.100.1", 6000, [0], 30)


@pytest.mark.parametrize(
    "body",
    [
        "v=0\r\n",
        "m=video 5000 RTP/AVP 96\r\n",
        "v=0\r\nm=audio 5000 RTP/AVP 0\r\n",
        "m=audio x RTP/AVP 0\r\nc=IN IP4 1.2.3.4",
    ],
)
def test_bad_offers_raise_sdp_error(body: str) -> None:
    with pytest.raises(SDPError):
        parse_offer(body)
