"""AWS event-stream framing (flowcat.services._eventstream): decoder and encoder.

Published frames (awslabs/aws-c-event-stream, ``tests/fixtures/eventstream/``), every header
type, messages split at every byte offset, corrupted CRCs and lengths.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
import zlib
from pathlib import Path

import pytest

from flowcat.errors import ServiceConnectionError, ServiceProtocolError
from flowcat.services._eventstream import (
    EventStreamDecoder,
    EventStreamMessage,
    HeaderValue,
    encode_message,
    iter_event_stream,
)

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "eventstream" / "aws-c-event-stream.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_published_frames(vector: dict) -> None:
    raw = bytes.fromhex(vector["hex"])
    total, headers_len, prelude_crc = struct.unpack(">III", raw[:12])
    assert (total, headers_len) == (vector["total_length"], vector["headers_length"]) and total == len(raw)
    assert f"{prelude_crc:08x}" == vector["prelude_crc"] and raw[-4:].hex() == vector["message_crc"]
    (msg,) = EventStreamDecoder().feed(raw)
    assert msg.headers == vector["headers"]
    assert msg.payload == vector["payload"].encode()
    assert encode_message(vector["headers"], vector["payload"].encode()) == raw
    for cut in range(1, len(raw)):  # any split
        d = EventStreamDecoder()
        assert d.feed(raw[:cut]) == []
        assert d.feed(raw[cut:]) == [msg]


def test_the_research_notes_worked_frame() -> None:
    # /work/shared/research/provider-protocols.md §4: messageStop with three string headers.
    raw = encode_message({":event-type": "messageStop", ":content-type": "application/json",
                          ":message-type": "event"}, b'{"stopReason":"end_turn"}')
    assert raw[:8].hex() == "0000007a00000051" and raw[8:12].hex() == "ca2c4665"


ALL_TYPES: dict[str, object] = {
    "t": True,
    "f": False,
    "byte": HeaderValue(2, -7),
    "short": HeaderValue(3, -300),
    "int": 70000,
    "long": HeaderValue(5, -(2**40)),
    "bytes": b"\x00\xffbin",
    "str": "café ☕",
    "ts": dt.datetime(2015, 8, 30, 12, 36, 0, 123000, tzinfo=dt.UTC),
    "uuid": uuid.UUID("0123456789abcdef0123456789abcdef"),
}


def test_every_header_type_round_trips_with_its_wire_bytes() -> None:
    raw = encode_message(ALL_TYPES, b"payload")
    (msg,) = EventStreamDecoder().feed(raw)
    assert msg.payload == b"payload"
    assert msg.headers == {"t": True, "f": False, "byte": -7, "short": -300, "int": 70000, "long": -(2**40),
                           "bytes": b"\x00\xffbin", "str": "café ☕", "ts": ALL_TYPES["ts"],
                           "uuid": ALL_TYPES["uuid"]}
    # The header block, by hand: name length, name, type, value.
    hb = raw[12:-4 - len(b"payload")]
    expected = (b"\x01t\x00" + b"\x01f\x01" + b"\x04byte\x02\xf9" + b"\x05short\x03" + struct.pack(">h", -300)
                + b"\x03int\x04" + struct.pack(">i", 70000) + b"\x04long\x05" + struct.pack(">q", -(2**40))
                + b"\x05bytes\x06\x00\x05\x00\xffbin" + b"\x03str\x07" + struct.pack(">H", 9) + "café ☕".encode()
                + b"\x02ts\x08" + struct.pack(">q", 1440938160123)
                + b"\x04uuid\x09" + bytes.fromhex("0123456789abcdef0123456789abcdef"))
    assert hb == expected


def test_several_messages_split_at_every_offset() -> None:
    frames = [encode_message({":event-type": f"e{i}", "n": i}, f'{{"i":{i}}}'.encode()) for i in range(3)]
    stream = b"".join(frames)
    want = [EventStreamMessage({":event-type": f"e{i}", "n": i}, f'{{"i":{i}}}'.encode()) for i in range(3)]
    for cut in range(len(stream) + 1):
        d = EventStreamDecoder()
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert got == want, cut
        assert d.pending == 0
    d = EventStreamDecoder()  # one byte at a time
    got = [m for b in stream for m in d.feed(bytes([b]))]
    assert got == want and d.messages == 3


@pytest.mark.parametrize("where", ["prelude_crc", "length", "headers", "payload", "message_crc"])
def test_corruption_is_a_protocol_error(where: str) -> None:
    raw = bytearray(encode_message({":event-type": "x"}, b"hello"))
    offsets = {"prelude_crc": 9, "length": 3, "headers": 14, "payload": len(raw) - 6, "message_crc": len(raw) - 1}
    raw[offsets[where]] ^= 0x01
    good = encode_message({":event-type": "ok"}, b"")
    d = EventStreamDecoder()
    assert len(d.feed(good)) == 1
    with pytest.raises(ServiceProtocolError, match="CRC mismatch"):
        d.feed(bytes(raw))


def test_impossible_lengths_and_bad_header_types() -> None:
    prelude = struct.pack(">II", 10, 0)  # shorter than the 16 bytes of overhead
    with pytest.raises(ServiceProtocolError, match="impossible lengths"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    prelude = struct.pack(">II", 20, 8)  # headers longer than the room for them
    with pytest.raises(ServiceProtocolError, match="impossible lengths"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    headers = b"\x01x\x0a"  # value type 10 does not exist
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    with pytest.raises(ServiceProtocolError, match="unknown header value type 10"):
        EventStreamDecoder().feed(body + struct.pack(">I", zlib.crc32(body)))
    headers = b"\x01x\x07\x00\x09ab"  # a string longer than the header block
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    with pytest.raises(ServiceProtocolError, match="malformed headers"):
        EventStreamDecoder().feed(body + struct.pack(">I", zlib.crc32(body)))


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self):  # type: ignore[no-untyped-def]
        for c in self.chunks:
            yield c


async def test_iter_event_stream_and_a_body_cut_inside_a_message() -> None:
    raw = encode_message({"a": "b"}, b"1") + encode_message({"a": "c"}, b"2")
    got = [m async for m in iter_event_stream(_Body([raw[:5], raw[5:30], raw[30:]]))]
    assert [m.headers["a"] for m in got] == ["b", "c"]
    with pytest.raises(ServiceConnectionError, match="ended inside a message"):
        async for _ in iter_event_stream(_Body([raw[:-3]])):
            pass


def test_messages_before_a_broken_one_are_returned_then_the_error() -> None:
    good = encode_message({"n": 1}, b"a") + encode_message({"n": 2}, b"b")
    bad = bytearray(encode_message({"n": 3}, b"c"))
    bad[-1] ^= 0xFF
    d = EventStreamDecoder()
    assert [m.headers["n"] for m in d.feed(good + bytes(bad))] == [1, 2]
    with pytest.raises(ServiceProtocolError, match="message CRC mismatch"):
        d.check()
    with pytest.raises(ServiceProtocolError):
        d.feed(b"")  # the stream stays broken


def test_encoding_mistakes_are_config_errors() -> None:
    from flowcat.errors import ConfigError

    with pytest.raises(ConfigError, match="too long"):
        encode_message({"x" * 256: "v"})
    with pytest.raises(ConfigError, match="no header type"):
        encode_message({"x": 1.5})
    with pytest.raises(ConfigError, match="unknown header value type 12"):
        encode_message({"x": HeaderValue(12, b"")})
