"""Fuzzing the services' stream parsers: SSE (:func:`flowcat.services.iter_sse`) and AWS event-stream.

Properties, per input, in any read boundaries:

* SSE: the events are those of the body, nothing raises but
  :class:`ServiceProtocolError` for a line or an event over the limit, and no more than
  the limit is held;
* event-stream: :meth:`EventStreamDecoder.feed` returns messages or raises
  :class:`ServiceProtocolError` only (also after a broken message), and holds less
  than one message of the format's maximum size.

See tests/_fuzz.py for the settings (``FLOWCAT_FUZZ_EXAMPLES``) and the saved corpus.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _fuzz import FUZZ, chunked, corpus_params
from flowcat.errors import ServiceProtocolError
from flowcat.services import iter_sse
from flowcat.services._eventstream import MAX_MESSAGE, EventStreamDecoder, encode_message
from flowcat.services._http import MAX_SSE_BYTES

pytestmark = pytest.mark.fuzz


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for c in self.chunks:
            yield c


def _reference_sse(body: bytes) -> list[tuple[str | None, str]]:
    """The events of a body, by the simplest reading of the format (whole body at once)."""
    events: list[tuple[str | None, str]] = []
    event: str | None = None
    data: list[str] = []
    lines = body.split(b"\n")
    for raw in lines[:-1]:
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if not line:
            if data:
                events.append((event, "\n".join(data)))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        events.append((event, "\n".join(data)))
    return events


def check_sse(body: bytes, seed: int) -> None:
    async def collect() -> list[tuple[str | None, str]]:
        return [(e.event, e.data) async for e in iter_sse(_Body(chunked(body, seed)))]  # type: ignore[arg-type]

    try:
        got = asyncio.run(collect())
    except ServiceProtocolError:
        assert len(body) > MAX_SSE_BYTES
        return
    assert got == _reference_sse(body)


_SSE_LINES = st.one_of(
    st.sampled_from([b"data: {\"a\":1}", b"data:", b"data", b"event: delta", b"event:", b": comment", b"",
                     b"\r", b"id: 7", b"retry: 10", b"data: [DONE]", b"data: \xe2\x82", b"\xac tail"]),
    st.binary(max_size=30),
    st.text(max_size=30).map(lambda t: ("data: " + t).encode()),
)


@st.composite
def _sse_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_SSE_LINES, max_size=12))
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = sep.join(lines)
    return body + sep if draw(st.booleans()) else body


@FUZZ
@given(body=_sse_bodies(), seed=st.integers(0, 1000))
def test_sse_events_match_the_body(body: bytes, seed: int) -> None:
    check_sse(body, seed)


def test_sse_line_over_the_limit_is_a_protocol_error() -> None:
    chunk = b"x" * 65536
    held: list[int] = []

    class Endless:
        async def iter_any(self) -> AsyncIterator[bytes]:
            for _ in range(MAX_SSE_BYTES // len(chunk) + 10):
                held.append(1)
                yield chunk

    async def collect() -> None:
        async for _ in iter_sse(Endless()):  # type: ignore[arg-type]
            pass

    with pytest.raises(ServiceProtocolError, match="SSE"):
        asyncio.run(collect())
    assert len(held) <= MAX_SSE_BYTES // len(chunk) + 1  # stopped as soon as the limit was passed


def test_sse_event_over_the_limit_is_a_protocol_error() -> None:
    line = b"data: " + b"y" * 65536 + b"\n"

    class Endless:
        async def iter_any(self) -> AsyncIterator[bytes]:
            for _ in range(MAX_SSE_BYTES // len(line) + 10):
                yield line

    async def collect() -> None:
        async for _ in iter_sse(Endless()):  # type: ignore[arg-type]
            pass

    with pytest.raises(ServiceProtocolError, match="SSE"):
        asyncio.run(collect())


def test_sse_many_lines_in_one_chunk_is_linear() -> None:
    body = b"data: x\n\n" * 200_000  # 1.8 MB in one read: each line must not copy the rest
    events = 0

    async def collect() -> None:
        nonlocal events
        async for _ in iter_sse(_Body([body])):  # type: ignore[arg-type]
            events += 1

    asyncio.run(collect())
    assert events == 200_000


@pytest.mark.parametrize(("file", "message"), corpus_params("sse"))
def test_sse_corpus(file: str, message: str | bytes) -> None:
    assert isinstance(message, bytes)
    for seed in range(3):
        check_sse(message, seed)


# ------------------------------------------------------------------ AWS event-stream

def _raw_message(headers: bytes, payload: bytes) -> bytes:
    """A message with the given raw header bytes and valid CRCs (so the header parser is reached)."""
    total = len(headers) + len(payload) + 16
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


_HEADER_SEEDS = [
    encode_message({":message-type": "event", ":event-type": "contentBlockDelta",
                    ":content-type": "application/json"}, b'{"delta":{"text":"hi"}}')[12:-4],
]


@st.composite
def _raw_header(draw: st.DrawFn) -> bytes:
    name = draw(st.one_of(st.text(max_size=12).map(lambda t: t.encode()[:255]), st.binary(max_size=12)))
    kind = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9]), st.integers(10, 255)))
    value = {
        2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16,
    }.get(kind)
    if value is not None:
        body = draw(st.one_of(st.binary(min_size=value, max_size=value), st.binary(max_size=value)))
    elif kind in (6, 7):
        data = draw(st.binary(max_size=20))
        size = draw(st.one_of(st.just(len(data)), st.integers(0, 0xFFFF)))
        body = struct.pack(">H", size) + data
    else:
        body = draw(st.binary(max_size=3))
    if kind == 8 and draw(st.booleans()):
        body = struct.pack(">q", draw(st.sampled_from([2**63 - 1, -(2**63), 10**17, -(10**17)])))
    size = len(name) if draw(st.integers(0, 9)) else draw(st.sampled_from([255, 0, len(name) + 1]))
    return bytes([size]) + name + bytes([kind]) + body


@st.composite
def _eventstream_bodies(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["valid", "headers", "flip", "truncate", "random", "lengths"]))
        payload = draw(st.binary(max_size=40))
        if kind == "valid":
            parts.append(encode_message({":event-type": draw(st.text(max_size=10)), "n": draw(st.integers(-5, 5))},
                                        payload))
        elif kind == "headers":
            headers = b"".join(draw(st.lists(_raw_header(), max_size=3)))
            parts.append(_raw_message(headers, payload))
        elif kind == "lengths":  # a valid prelude CRC over impossible lengths
            total, hl = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
            prelude = struct.pack(">II", total, hl)
            parts.append(prelude + struct.pack(">I", zlib.crc32(prelude)) + payload)
        elif kind == "random":
            parts.append(draw(st.binary(max_size=60)))
        else:
            msg = bytearray(encode_message({":event-type": "x"}, payload))
            if kind == "truncate":
                parts.append(bytes(msg[: draw(st.integers(0, len(msg)))]))
            else:
                i = draw(st.integers(0, len(msg) - 1))
                msg[i] ^= draw(st.integers(1, 255))
                parts.append(bytes(msg))
    return b"".join(parts)


def check_eventstream(stream: bytes, seed: int) -> None:
    dec = EventStreamDecoder()
    got = 0
    for chunk in chunked(stream, seed):
        try:
            got += len(dec.feed(chunk))
        except ServiceProtocolError:
            with pytest.raises(ServiceProtocolError):  # broken for good
                dec.feed(b"")
            return
        assert dec.pending < MAX_MESSAGE
    assert dec.messages == got


@FUZZ
@given(stream=_eventstream_bodies(), seed=st.integers(0, 1000))
def test_eventstream_raises_only_protocol_error(stream: bytes, seed: int) -> None:
    check_eventstream(stream, seed)


@pytest.mark.parametrize(("file", "message"), corpus_params("eventstream"))
def test_eventstream_corpus(file: str, message: str | bytes) -> None:
    assert isinstance(message, bytes)
    for seed in range(3):
        check_eventstream(message, seed)
