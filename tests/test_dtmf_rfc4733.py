"""RFC 4733 telephone-event: payload codec, decoder robustness, encoder, SDP payload type."""

from __future__ import annotations

import pytest

from flowcat.audio.dtmf import (
    TelephoneEventDecoder,
    TelephoneEventEncoder,
    build_telephone_event,
    parse_telephone_event,
    parse_telephone_event_pt,
    telephone_event_codes,
)
from flowcat.frames import KeypadEntry

Pkt = tuple[int, bool, int, int, bytes]  # (pt, marker, timestamp, sequence, payload)


def press(pt: int, code: int, ts: int, seq: int, updates: int = 5, ends: int = 3) -> list[Pkt]:
    """A sender's packet train for one press: marker first, growing duration, then E ×ends."""
    pkts: list[Pkt] = []
    for i in range(updates):
        pkts.append(
            (pt, i == 0, ts, (seq + i) & 0xFFFF, build_telephone_event(code, False, 10, 160 * (i + 1)))
        )
    for j in range(ends):
        pkts.append(
            (
                pt,
                False,
                ts,
                (seq + updates + j) & 0xFFFF,
                build_telephone_event(code, True, 10, 160 * updates),
            )
        )
    return pkts


def decode(dec: TelephoneEventDecoder, pkts: list[Pkt]) -> str:
    out = []
    for p in pkts:
        key = dec.feed(*p)
        if key is not None:
            out.append(key.value)
    return "".join(out)


def seq_of(pt: int, digits: str, ts0: int = 1000, seq0: int = 100, step: int = 2000, **kw: int) -> list[Pkt]:
    codes = {"*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
    pkts: list[Pkt] = []
    for i, d in enumerate(digits):
        code = codes.get(d, None)
        code = int(d) if code is None else code
        pkts += press(pt, code, (ts0 + i * step) & 0xFFFFFFFF, (seq0 + i * 20) & 0xFFFF, **kw)
    return pkts


def test_payload_round_trip_and_bits() -> None:
    raw = build_telephone_event(11, end=True, volume=10, duration=800)
    assert raw == bytes([11, 0x80 | 10, 0x03, 0x20])
    ev = parse_telephone_event(raw)
    assert ev is not None
    assert (ev.event, ev.end, ev.reserved, ev.volume, ev.duration) == (11, True, False, 10, 800)
    ev = parse_telephone_event(bytes([5, 0x40 | 63, 0xFF, 0xFF]))
    assert ev is not None and (ev.end, ev.reserved, ev.volume, ev.duration) == (False, True, 63, 65535)
    assert parse_telephone_event(b"\x01\x02\x03") is None
    with pytest.raises(ValueError):
        build_telephone_event(1, volume=64)


@pytest.mark.parametrize("pt", [101, 120])
def test_sequence_all_keys_reported_once(pt: int) -> None:
    dec = TelephoneEventDecoder(pt)
    assert decode(dec, seq_of(pt, "0123456789*#ABCD")) == "0123456789*#ABCD"


def test_other_payload_types_ignored_and_interleaved_audio() -> None:
    dec = TelephoneEventDecoder(120)
    pkts: list[Pkt] = []
    audio_seq = 5000
    for p in seq_of(101, "42#"):  # a PT-101 train is not ours when 120 was negotiated
        pkts.append(p)
    assert decode(dec, pkts) == ""
    mixed: list[Pkt] = []
    for i, p in enumerate(seq_of(120, "42#")):
        mixed.append((0, False, 90000 + 160 * i, audio_seq + i, b"\xff" * 160))  # PCMU audio
        mixed.append(p)
    assert decode(TelephoneEventDecoder(120), mixed) == "42#"


def test_first_packet_lost_reported_once_on_next() -> None:
    pkts = seq_of(101, "159")
    lossy = [p for i, p in enumerate(pkts) if i % 8 != 0]  # every press loses its marker packet
    assert decode(TelephoneEventDecoder(101), lossy) == "159"


def test_middle_and_end_packets_lost() -> None:
    pkts = seq_of(101, "159")
    no_middle = [p for i, p in enumerate(pkts) if i % 8 not in (2, 3)]
    assert decode(TelephoneEventDecoder(101), no_middle) == "159"
    no_end = [p for i, p in enumerate(pkts) if i % 8 < 5]
    assert decode(TelephoneEventDecoder(101), no_end) == "159"
    only_end = [p for i, p in enumerate(pkts) if i % 8 >= 5]
    assert decode(TelephoneEventDecoder(101), only_end) == "159"
    only_last = [p for i, p in enumerate(pkts) if i % 8 == 7]
    assert decode(TelephoneEventDecoder(101), only_last) == "159"


def test_duplicated_end_packets_not_reported_again() -> None:
    pkts = press(101, 7, 4000, 10)
    dup = pkts + pkts[-3:] * 4 + [pkts[0]]  # retransmissions, late marker duplicate
    dec = TelephoneEventDecoder(101)
    assert decode(dec, dup) == "7"
    assert dec.last_ended
    assert dec.last_duration_ms == pytest.approx(100.0)


def test_missing_end_packets_back_to_back_same_digit() -> None:
    """Two presses of 5 without end packets (baresip at hang-up): two reports, timestamps differ."""
    pkts = press(101, 5, 8000, 1, updates=6, ends=0) + press(101, 5, 9600, 7, updates=6, ends=0)
    dec = TelephoneEventDecoder(101)
    assert decode(dec, pkts) == "55"
    assert not dec.last_ended


def test_reordering_within_event_and_late_old_packets() -> None:
    a = press(101, 1, 1000, 50)
    b = press(101, 2, 3000, 58)
    shuffled_a = [a[2], a[0], a[4], a[1], a[3], a[7], a[5], a[6]]
    late = [b[0], a[6], b[1], a[7], b[2]] + b[3:]
    assert decode(TelephoneEventDecoder(101), shuffled_a + late) == "12"


def test_late_packet_of_an_event_older_than_the_stale_window_is_not_a_new_press() -> None:
    # "1" at ts 1000, "2" 11 s later (past the 10 s stale window at 8 kHz); then a
    # late packet of "1" arrives. Only the memory of already reported timestamps
    # tells it apart from a new press ("121").
    a = press(101, 1, 1000, 50)
    b = press(101, 2, 1000 + 11 * 8000, 58)
    assert decode(TelephoneEventDecoder(101), a[:-1] + b + [a[-1]]) == "12"
    # Reordered so that the straggler also carries the marker bit.
    assert decode(TelephoneEventDecoder(101), a[1:] + b + [a[0]]) == "12"


def test_marker_packet_of_an_unseen_older_timestamp_is_a_new_press() -> None:
    """sipp replays DTMF pcaps verbatim: digit '2' (seq 8042, ts 23200) after '4' (seq 8121,
    ts 37120), same SSRC. A new (SSRC, timestamp) starting with a marker is a new press."""
    four = press(101, 4, 37120, 8121)
    two = press(101, 2, 23200, 8042)
    assert decode(TelephoneEventDecoder(101), four + two) == "42"


def test_sequence_and_timestamp_wrap() -> None:
    pkts = seq_of(101, "1234", ts0=0xFFFFFFFF - 3000, seq0=0xFFFF - 12)
    assert decode(TelephoneEventDecoder(101), pkts) == "1234"


def test_non_dtmf_events_and_garbage_ignored() -> None:
    dec = TelephoneEventDecoder(101)
    pkts = press(101, 66, 500, 1) + [(101, True, 900, 20, b"\x01")] + press(101, 3, 2500, 30)
    assert decode(dec, pkts) == "3"


def test_long_event_continuation_segment_is_not_a_new_press() -> None:
    enc = TelephoneEventEncoder(101)
    pkts = enc.encode("9", duration_ms=9000)
    assert {p.timestamp_offset for p in pkts} == {0, 65535}
    assert sum(p.marker for p in pkts) == 1
    dec = TelephoneEventDecoder(101)
    got = [dec.feed(101, p.marker, 7000 + p.timestamp_offset, i, p.payload) for i, p in enumerate(pkts)]
    assert [k for k in got if k is not None] == [KeypadEntry.NINE]


@pytest.mark.parametrize("pt", [101, 120])
def test_encoder_train_shape(pt: int) -> None:
    enc = TelephoneEventEncoder(pt, ptime_ms=20)
    pkts = enc.encode("#", duration_ms=100, volume=10)
    events = [parse_telephone_event(p.payload) for p in pkts]
    assert all(e is not None and e.event == 11 and e.volume == 10 for e in events)
    assert [p.marker for p in pkts] == [True] + [False] * (len(pkts) - 1)
    assert [e.duration for e in events if e and not e.end] == [160, 320, 480, 640]
    ends = pkts[-3:]
    assert all(p.end for p in ends) and len({p.payload for p in ends}) == 1
    assert parse_telephone_event(ends[0].payload) == (11, True, False, 10, 800)
    assert not any(p.end for p in pkts[:-3])
    assert [p.send_offset_ms for p in pkts] == [0, 20, 40, 60, 80, 100, 120]
    assert all(p.timestamp_offset == 0 for p in pkts)


def test_encoder_short_press_and_wideband_clock() -> None:
    pkts = TelephoneEventEncoder(101).encode("1", duration_ms=10)
    assert len(pkts) == 3 and pkts[0].marker and all(p.end for p in pkts)
    wide = TelephoneEventEncoder(101, clock_rate=48000).encode("1", duration_ms=100)
    last = parse_telephone_event(wide[-1].payload)
    assert last is not None and last.duration == 4800


@pytest.mark.parametrize("pt", [101, 120])
def test_encode_decode_round_trip(pt: int) -> None:
    enc = TelephoneEventEncoder(pt)
    dec = TelephoneEventDecoder(pt)
    got = []
    ts, seq = 123456, 65530
    for d in "0123456789*#ABCD55":
        for p in enc.encode(d, duration_ms=120):
            key = dec.feed(pt, p.marker, (ts + p.timestamp_offset) & 0xFFFFFFFF, seq & 0xFFFF, p.payload)
            seq += 1
            if key is not None:
                got.append(key.value)
        ts += 8000 * 200 // 1000
    assert "".join(got) == "0123456789*#ABCD55"


SDP_PJSIP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=pjmedia\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 120\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:120 telephone-event/8000\r\na=fmtp:120 0-16\r\n"
)
SDP_SIPP = "v=0\nm=audio 6000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"


def test_parse_pt_from_sdp() -> None:
    assert parse_telephone_event_pt(SDP_PJSIP) == 120
    assert parse_telephone_event_pt(SDP_SIPP) == 101
    assert parse_telephone_event_pt("m=audio 1 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n") is None
    opus = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 126 101\na=rtpmap:111 opus/48000/2\n"
        "a=rtpmap:126 telephone-event/48000\na=rtpmap:101 telephone-event/8000\n"
    )
    assert parse_telephone_event_pt(opus) == 101
    assert parse_telephone_event_pt(opus, clock_rate=48000) == 126
    # fmtp without the digits: unusable; video sections are skipped.
    flash_only = (
        "m=audio 1 RTP/AVP 0 96 97\na=rtpmap:96 telephone-event/8000\na=fmtp:96 16\n"
        "a=rtpmap:97 TELEPHONE-EVENT/8000\n"
    )
    assert parse_telephone_event_pt(flash_only) == 97
    video = "m=video 2 RTP/AVP 98\na=rtpmap:98 telephone-event/8000\nm=audio 1 RTP/AVP 0\n"
    assert parse_telephone_event_pt(video) is None
    assert telephone_event_codes("0-15,66, 70") == frozenset([*range(16), 66, 70])


def test_replayed_older_recording_whose_marker_packet_was_lost_is_still_a_press() -> None:
    """Found by the 10 % loss test in network namespaces (tests/test_sip_impairment.py): sipp's
    '2' pcap (seq 8042, ts 23200) after its '4' pcap (seq 8121, ts 37120), same SSRC, with the
    marker packet of '2' lost: its updates carry an older sequence and timestamp never seen,
    and another key. That is a press, not a straggler (stragglers of events seen are known by
    their timestamp)."""
    four = press(101, 4, 37120, 8121)
    two = press(101, 2, 23200, 8042)
    assert decode(TelephoneEventDecoder(101), four + two[1:]) == "42"
