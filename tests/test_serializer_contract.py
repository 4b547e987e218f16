"""The serializer contract (flowcat.serializers.Serializer / FastSerializer) is enforced:
an incomplete serializer cannot be built, a transport accepts only serializers, decides
once which contract one honours, and the passthrough declarations hold where made."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flowcat import Pipeline, PipelineTask
from flowcat.errors import ConfigError
from flowcat.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, StartFrame
from flowcat.serializers import (
    FastSerializer,
    FrameSerializer,
    ProtobufFrameSerializer,
    RawPCMSerializer,
    Serializer,
    TwilioFrameSerializer,
    Wire,
    WireOut,
)
from flowcat.transports import WebsocketParams, WebsocketServerTransport, WebsocketTransport


class _NoDecode(Serializer):
    async def serialize(self, frame: Frame) -> WireOut:
        return None


class _NoFastAudio(FastSerializer):
    async def serialize(self, frame: Frame) -> WireOut:
        return None

    def deserialize_now(self, data: Wire) -> Frame | None:
        return None


class _NoMedia(FrameSerializer):
    """A carrier without its media message (``_deserialize`` is inherited too)."""


def test_a_serializer_missing_a_method_cannot_be_built() -> None:
    with pytest.raises(TypeError, match="deserialize"):
        _NoDecode()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="serialize_audio"):
        _NoFastAudio()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="Serializer"):
        Serializer()  # type: ignore[abstract]


def test_every_shipped_serializer_honours_a_contract() -> None:
    import flowcat.serializers as s

    for name in s.__all__:
        obj = getattr(s, name)
        if isinstance(obj, type) and name.endswith("Serializer") and obj not in (Serializer, FastSerializer):
            assert issubclass(obj, Serializer), name
    assert issubclass(RawPCMSerializer, FastSerializer)
    assert issubclass(TwilioFrameSerializer, FastSerializer)
    assert issubclass(ProtobufFrameSerializer, Serializer)
    assert not issubclass(ProtobufFrameSerializer, FastSerializer)
    assert _NoMedia.__mro__.index(FastSerializer) < _NoMedia.__mro__.index(Serializer)


def test_transport_refuses_what_is_not_a_serializer() -> None:
    class DuckTyped:
        async def serialize(self, frame: Frame) -> Any:
            return None

        async def deserialize(self, data: Any) -> Any:
            return None

    with pytest.raises(ConfigError, match="DuckTyped"):
        WebsocketTransport(params=WebsocketParams(serializer=DuckTyped()))  # type: ignore[arg-type]


def test_transport_gives_every_serializer_its_sender() -> None:
    for ser in (RawPCMSerializer(16000), ProtobufFrameSerializer(), TwilioFrameSerializer()):
        t = WebsocketTransport(params=WebsocketParams(serializer=ser))
        assert ser.sender == t.send_message
        assert t.serializer is ser


def test_raw_pcm_passthrough_declarations_hold() -> None:
    ser = RawPCMSerializer(16000)
    frame = OutputAudioRawFrame(b"\x01\x02" * 320, 16000, 1)
    assert ser.passthrough_rate == 16000
    assert ser.serialize_audio(frame) is frame.audio
    msg = b"\x03\x04" * 320
    got = ser.deserialize_now(msg)
    assert ser.passthrough_input == (16000, 1)
    assert isinstance(got, InputAudioRawFrame) and (got.audio, got.sample_rate, got.num_channels) == (
        msg,
        16000,
        1,
    )

    class Louder(RawPCMSerializer):
        def serialize_audio(self, frame: OutputAudioRawFrame) -> bytes | None:
            return bytes(b ^ 0xFF for b in frame.audio)

    # A subclass that sends something else declares no passthrough.
    assert Louder(16000).passthrough_rate is None


class _UpperText(Serializer):
    """Only the async interface: text in, the same text upper-cased out as audio bytes."""

    def __init__(self) -> None:
        self.setup_rate = 0

    async def setup(self, frame: StartFrame) -> None:
        self.setup_rate = frame.audio_in_sample_rate

    async def serialize(self, frame: Frame) -> WireOut:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio.upper()
        return None

    async def deserialize(self, data: Wire) -> Frame | None:
        if isinstance(data, str):
            return InputAudioRawFrame(data.encode(), 16000, 1)
        return None


async def test_a_serializer_with_only_the_async_interface_carries_a_call() -> None:
    from flowcat.server._apps import EchoProcessor

    ser = _UpperText()
    got: asyncio.Queue[Any] = asyncio.Queue()

    def factory(transport: WebsocketTransport, request: web.Request) -> PipelineTask:
        return PipelineTask(Pipeline([transport.input(), EchoProcessor(), transport.output()]))

    params = WebsocketParams(
        serializer=ser, audio_in_sample_rate=16000, audio_out_sample_rate=16000, audio_out_chunk_ms=20
    )
    server = WebsocketServerTransport(factory, params=params)
    port = await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws,
        ):
            await ws.send_str("ab" * 320)  # one 20 ms chunk of "audio"
            msg = await asyncio.wait_for(ws.receive(), 5)
            await got.put(msg.data)
    finally:
        await server.stop()
    assert await got.get() == b"AB" * 320
    assert ser.setup_rate == 16000
