"""ProtobufFrameSerializer: pipecat's ``frames.proto`` wire format, hand-encoded.

Wire-compatible with pipecat's ``pipecat.Frame`` message (package ``pipecat``)::

    Frame { oneof frame {
        TextFrame text = 1;                 // id=1 uint64, name=2 string, text=3 string
        AudioRawFrame audio = 2;            // id=1, name=2, audio=3 bytes, sample_rate=4 uint32,
                                            // num_channels=5 uint32, optional pts=6 uint64
        TranscriptionFrame transcription = 3;  // id=1, name=2, text=3, user_id=4, timestamp=5
        MessageFrame message = 4;           // data=1 string (JSON)
        InterruptionFrame interruption = 5; // id=1, name=2
    } }

Only the protobuf wire format is needed (varints and length-delimited fields),
so there is no protobuf dependency. Proto3 rules apply: zero/empty fields are
not written, unknown fields are skipped, the last oneof member wins. Outgoing
audio carries no ``name`` (it would cost a string per 20 ms; pipecat's
deserializer treats it as optional).

Direction mapping (as pipecat): out — :class:`OutputAudioRawFrame` → audio,
:class:`TranscriptionFrame` → transcription, :class:`TextFrame` → text,
transport messages → message (JSON), :class:`InterruptionFrame` → interruption;
in — audio → :class:`InputAudioRawFrame` (audio in a PCM16 WAV container, as
pipecat's WebSocket client sends it by default, is unwrapped), text → :class:`TextFrame`,
transcription → :class:`TranscriptionFrame`, message →
:class:`InputTransportMessageFrame`, interruption → :class:`InterruptionFrame`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from ..errors import ProtocolError
from ..frames import (
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
)
from ._contract import Serializer

__all__ = ["ProtobufFrameSerializer", "decode_fields", "encode_varint", "unwrap_wav"]

# Frame oneof field numbers.
TEXT, AUDIO, TRANSCRIPTION, MESSAGE, INTERRUPTION = 1, 2, 3, 4, 5

_VARINT, _LEN = 0, 2
_SMALL = [bytes([i]) for i in range(128)]


def encode_varint(value: int) -> bytes:
    """Base-128 varint of a non-negative int."""
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return encode_varint((field << 3) | wire)


_KEYS_VARINT = {f: _key(f, _VARINT) for f in range(1, 8)}
_KEYS_LEN = {f: _key(f, _LEN) for f in range(1, 8)}


def _len_field(field: int, payload: bytes) -> bytes:
    return _KEYS_LEN[field] + encode_varint(len(payload)) + payload


def _int_field(field: int, value: int | None) -> bytes:
    if not value:
        return b""
    return _KEYS_VARINT[field] + encode_varint(value)


def _str_field(field: int, value: str | None) -> bytes:
    if not value:
        return b""
    return _len_field(field, value.encode())


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ProtocolError("protobuf: truncated varint", data)
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtocolError("protobuf: varint too long", data)


def decode_fields(data: bytes, order: list[int] | None = None) -> dict[int, Any]:
    """Decode one message into ``{field_number: value}`` (last occurrence wins).

    Varints decode to ``int``, length-delimited fields to ``bytes``; fixed32/64
    fields are skipped. If ``order`` is given, field numbers are appended to it in
    the order they occur.

    Raises:
        ProtocolError: Truncated or malformed input.
    """
    out: dict[int, Any] = {}
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ProtocolError("protobuf: field number 0", data)
        if order is not None:
            order.append(field)
        if wire == _VARINT:
            out[field], pos = _read_varint(data, pos)
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise ProtocolError("protobuf: truncated length-delimited field", data)
            out[field] = data[pos : pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtocolError(f"protobuf: unsupported wire type {wire}", data)
        if pos > end:
            raise ProtocolError("protobuf: truncated fixed field", data)
    return out


def unwrap_wav(data: bytes) -> tuple[bytes, int, int] | None:
    """``(pcm, sample_rate, channels)`` of a PCM16 WAV file, or None if ``data`` is not one.

    pipecat's ``WebsocketClientTransport`` wraps each audio chunk in a WAV file by
    default (``add_wav_header=True``). A RIFF/WAVE header with a PCM (or extensible)
    16-bit ``fmt`` chunk before the ``data`` chunk is required, so raw PCM that
    happens to start with ``RIFF`` is not mistaken for one. A ``data`` size past the
    end (a streaming writer's placeholder) means "up to the end".
    """
    if len(data) < 44 or data[8:12] != b"WAVE" or data[:4] != b"RIFF":
        return None
    pos, end = 12, len(data)
    fmt: tuple[int, int] | None = None
    while pos + 8 <= end:
        cid = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > end:
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag not in (1, 0xFFFE) or bits != 16 or not channels or not rate:
                return None
            fmt = (rate, channels)
        elif cid == b"data":
            if fmt is None:
                return None
            return data[body : min(body + size, end)], fmt[0], fmt[1]
        pos = body + size + (size & 1)
    return None


def _text(fields: dict[int, Any], n: int) -> str:
    raw = fields.get(n)
    if raw is None:
        return ""
    if not isinstance(raw, bytes):
        raise ProtocolError(f"protobuf: field {n} is not a string")
    return raw.decode()


def _uint(fields: dict[int, Any], n: int) -> int:
    v = fields.get(n, 0)
    if not isinstance(v, int):
        raise ProtocolError(f"protobuf: field {n} is not a varint")
    return v


class ProtobufFrameSerializer(Serializer):
    """pipecat's protobuf frame protocol (binary WebSocket messages).

    Args:
        include_names: Also send each frame's ``name`` for text, transcription and
            interruption frames (as pipecat does). Default True.
    """

    def __init__(self, *, include_names: bool = True) -> None:
        self.include_names = include_names

    async def setup(self, frame: StartFrame) -> None:
        """Nothing to learn from the StartFrame."""

    async def serialize(self, frame: Frame) -> bytes | None:
        """Encode ``frame`` as a ``pipecat.Frame`` message, or None if it has no mapping."""
        return self.encode(frame)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        """Decode one ``pipecat.Frame`` message.

        Raises:
            ProtocolError: Not binary, malformed, or an unreadable message payload.
        """
        return self.decode(data)

    # ----------------------------------------------------------- sync core

    def encode(self, frame: Frame) -> bytes | None:
        """Synchronous :meth:`serialize`."""
        if isinstance(frame, OutputAudioRawFrame):
            body = b"".join(
                (
                    _int_field(1, frame.id),
                    _len_field(3, frame.audio) if frame.audio else b"",
                    _int_field(4, frame.sample_rate),
                    _int_field(5, frame.num_channels),
                    _int_field(6, frame.pts),
                )
            )
            return _len_field(AUDIO, body)
        if isinstance(frame, TranscriptionFrame):
            body = b"".join(
                (
                    self._head(frame),
                    _str_field(3, frame.text),
                    _str_field(4, frame.user_id),
                    _str_field(5, frame.timestamp),
                )
            )
            return _len_field(TRANSCRIPTION, body)
        if isinstance(frame, TextFrame):
            return _len_field(TEXT, self._head(frame) + _str_field(3, frame.text))
        if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
            return _len_field(MESSAGE, _str_field(1, json.dumps(frame.message)))
        if isinstance(frame, InterruptionFrame):
            return _len_field(INTERRUPTION, self._head(frame))
        return None

    def _head(self, frame: Frame) -> bytes:
        head = _int_field(1, frame.id)
        if self.include_names:
            head += _str_field(2, frame.name)
        return head

    def decode(self, data: str | bytes) -> Frame | None:
        """Synchronous :meth:`deserialize`."""
        if not isinstance(data, bytes | bytearray):
            raise ProtocolError("protobuf: text message", data)
        order: list[int] = []
        outer = decode_fields(bytes(data), order)
        which = None
        for n in order:
            if TEXT <= n <= INTERRUPTION:
                which = n
        if which is None:
            raise ProtocolError("protobuf: no known frame in message", data)
        body = outer.get(which)  # absent when the field came as fixed32/64 (skipped)
        if not isinstance(body, bytes):
            raise ProtocolError("protobuf: frame is not a message", data)
        f = decode_fields(body)
        try:
            return self._build(which, f)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: deep JSON
            raise ProtocolError(f"protobuf: bad payload ({exc})", data) from exc

    def _build(self, which: int, f: dict[int, Any]) -> Frame:
        frame: Frame
        if which == AUDIO:
            audio = f.get(3, b"")
            if not isinstance(audio, bytes):
                raise ProtocolError("protobuf: audio is not bytes")
            channels = _uint(f, 5) or 1
            rate = _uint(f, 4)
            if audio[:4] == b"RIFF":
                wav = unwrap_wav(audio)
                if wav is not None:
                    audio, rate, channels = wav
            if not rate:
                raise ProtocolError("protobuf: audio without sample_rate")
            if len(audio) % (2 * channels):
                raise ProtocolError("protobuf: audio is not whole samples")
            frame = InputAudioRawFrame(audio, rate, channels)
            pts = _uint(f, 6)
            if pts:
                frame.pts = pts
            return frame
        if which == TEXT:
            return TextFrame(text=_text(f, 3))
        if which == TRANSCRIPTION:
            return TranscriptionFrame(text=_text(f, 3), user_id=_text(f, 4), timestamp=_text(f, 5))
        if which == MESSAGE:
            return InputTransportMessageFrame(message=json.loads(_text(f, 1)))
        return InterruptionFrame()
