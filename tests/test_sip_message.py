"""The SIP message parser: spelling leniency, structural strictness, and a fuzz run."""

from __future__ import annotations

import logging
import random

import pytest

from _helpers import require
from flowcat.errors import SIPParseError
from flowcat.transports.sip import SIPMessage, parse_message, parse_name_addr, parse_uri, parse_via
from flowcat.transports.sip._message import MAX_MESSAGE_BYTES, split_commas

hypothesis = require("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

INVITE = (
    b"INVITE sip:agent@127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKaaa;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbbb, SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKccc\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=abc\r\n'
    b"To: <sip:agent@127.0.0.1>\r\n"
    b"Call-ID: call-1@host\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@10.0.0.1:5060>\r\n"
    b"Subject: a folded\r\n  subject line\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

COMPACT = (
    b"BYE sip:agent@127.0.0.1 SIP/2.0\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\n"
    b"f: <sip:alice@example.com>;tag=abc\n"
    b"t: <sip:agent@127.0.0.1>;tag=def\n"
    b"i: call-2\n"
    b"CSEQ: 2 BYE\n"
    b"l: 0\n"
    b"\n"
)


def test_full_message_parses_with_folding_multi_via_and_record_route() -> None:
    msg = parse_message(INVITE)
    assert msg.method == "INVITE" and msg.uri == "sip:agent@127.0.0.1:5070"
    vias = msg.get_all("via")
    assert [parse_via(v).branch for v in vias] == ["z9hG4bKaaa", "z9hG4bKbbb", "z9hG4bKccc"]
    assert msg.get_all("Record-Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert msg.get("subject") == "a folded subject line"
    assert msg.cseq == (1, "INVITE")
    assert msg.body == b"v=0\n"
    assert parse_name_addr(msg.get("From") or "").tag == "abc"
    assert parse_name_addr(msg.get("From") or "").display == "Alice"


def test_compact_forms_bare_lf_and_case_insensitive_names() -> None:
    msg = parse_message(COMPACT)
    assert msg.call_id == "call-2"
    assert msg.get("CALL-ID") == "call-2"
    assert msg.get("i") == "call-2"
    assert [name for name, _ in msg.headers] == ["Via", "From", "To", "Call-ID", "CSeq", "Content-Length"]
    assert parse_name_addr(msg.get("To") or "").tag == "def"


def test_keepalive_crlfs_before_the_message_are_skipped() -> None:
    assert parse_message(b"\r\n\r\n" + COMPACT).method == "BYE"


def test_response_round_trip() -> None:
    msg = parse_message(b"SIP/2.0 180 Ringing\r\n" + INVITE.split(b"\r\n", 1)[1])
    assert msg.status == 180 and msg.reason == "Ringing"
    again = parse_message(msg.encode())
    assert again.status == 180 and again.headers[:4] == msg.headers[:4] and again.body == msg.body


def test_content_length_longer_than_the_body_is_an_error_and_extra_bytes_are_dropped() -> None:
    with pytest.raises(SIPParseError, match="truncated"):
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 40"))
    assert parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 2")).body == b"v="


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"HELLO\r\n\r\n", "request line"),
        (b"SIP/2.0 99 Nope\r\nVia: x\r\n\r\n", "status line"),
        (INVITE.replace(b"Call-ID: call-1@host\r\n", b""), "Call-ID"),
        (INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "CSeq"),
        (INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "does not match"),
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: -4"), "Content-Length"),
        (INVITE.replace(b"To: <sip", b"To <sip"), "header line"),
        (INVITE.split(b"\r\n\r\n")[0], "empty line"),
        (b" folded\r\n" + INVITE, "request line"),
    ],
)
def test_malformed_messages_raise_the_parser_error(data: bytes, why: str) -> None:
    with pytest.raises(SIPParseError, match=why):
        parse_message(data)


def test_size_limits() -> None:
    with pytest.raises(SIPParseError, match="exceeds"):
        parse_message(INVITE + b"x" * MAX_MESSAGE_BYTES)
    many = INVITE.replace(b"Content-Type", b"X-A: 1\r\n" * 200 + b"Content-Type")
    with pytest.raises(SIPParseError, match="headers"):
        parse_message(many)
    long_line = INVITE.replace(b"Subject: a folded", b"Subject: " + b"a" * 9000)
    with pytest.raises(SIPParseError, match="longer"):
        parse_message(long_line)


def test_header_value_helpers() -> None:
    assert split_commas('"a, b" <sip:x@y>, <sip:z@w;p=1,2>') == ['"a, b" <sip:x@y>', "<sip:z@w;p=1,2>"]
    uri = parse_uri("sip:alice@[::1]:5070;transport=udp")
    assert (uri.user, uri.host, uri.port, uri.params) == ("alice", "::1", 5070, {"transport": "udp"})
    assert parse_uri("sip:example.com").address() == ("example.com", 5060)
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport")
    assert (via.host, via.port, via.branch, "rport" in via.params) == ("10.0.0.1", 5062, "z9hG4bK1", True)
    for bad in ("http://x", "sip:a@host:99999", "sip:a@[::1"):
        with pytest.raises(SIPParseError):
            parse_uri(bad)
    with pytest.raises(SIPParseError):
        parse_via("SIP/2.0 host")
    with pytest.raises(SIPParseError):
        parse_name_addr("<sip:unclosed")


def test_encode_writes_content_length_from_the_body() -> None:
    msg = SIPMessage(
        status=200, reason="OK", headers=[("Content-Length", "99"), ("Call-ID", "x")], body=b"abc"
    )
    data = msg.encode()
    assert data.endswith(b"Call-ID: x\r\nContent-Length: 3\r\n\r\nabc")


# ------------------------------------------------------------------ fuzz

SEEDS = [INVITE, COMPACT, b"SIP/2.0 200 OK\r\n" + INVITE.split(b"\r\n", 1)[1]]
TOKENS = [
    b"\r\n",
    b"\n",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
    b"SIP/2.0",
    b"Via",
    b"Content-Length: 999999",
    b"CSeq: 4294967296 INVITE",
    b"[",
    b"]",
    b"\r\n ",
    b"tag=",
    b"branch=",
]


def mutate(rng: random.Random) -> bytes:
    """A seed message with 1-8 random edits: byte flips, inserted tokens, deleted or duplicated spans."""
    data = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 8)):
        op = rng.randint(0, 3)
        pos = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randint(0, 255)
        elif op == 1:
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            data[pos : pos + rng.randint(1, 40)] = b""
        else:
            data[pos:pos] = bytes(data[pos : pos + rng.randint(1, 80)])
    return bytes(data)


def _use(msg: SIPMessage) -> None:
    """What the server reads of a message: every such reader must raise only SIPParseError."""
    assert msg.cseq[0] >= 0
    parse_via(msg.get("Via") or "")
    for name in ("From", "To", "Contact"):
        value = msg.get(name)
        if value:
            na = parse_name_addr(value)
            if na.uri.startswith("sip"):
                parse_uri(na.uri)
    for rr in msg.get_all("Record-Route"):
        parse_name_addr(rr)
    msg.encode()


PER_EXAMPLE = 10
EXAMPLES = 1_000  # x PER_EXAMPLE = 10,000 mutated messages


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.randoms(use_true_random=False))
def test_fuzz_mutated_messages_raise_only_the_parser_error(rng: random.Random) -> None:
    for _ in range(PER_EXAMPLE):
        data = mutate(rng)
        try:
            _use(parse_message(data))
        except SIPParseError:
            pass
        except Exception as exc:  # pragma: no cover - a finding
            raise AssertionError(f"{type(exc).__name__} for {data!r}") from exc


def test_the_endpoint_survives_garbage_and_logs_it_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    from flowcat.transports.sip._endpoint import SIPEndpoint
    from flowcat.transports.sip._transaction import Timers

    class Core:
        requests: list[object] = []

        def on_request(self, txn: object) -> None:
            self.requests.append(txn)

        def on_ack(self, ack: object, addr: object) -> None:
            pass

    ep = SIPEndpoint(Core(), Timers())
    with caplog.at_level(logging.WARNING, logger="flowcat.transports.sip"):
        for i in range(200):
            ep.datagram_received(b"GARBAGE %d\r\n\r\n" % i, ("127.0.0.1", 5060))
    assert ep.bad_messages == 200
    logged = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert 1 <= len(logged) <= 25  # the first 20 in full, then one in every 1000
    assert "127.0.0.1:5060" in logged[0].getMessage()
