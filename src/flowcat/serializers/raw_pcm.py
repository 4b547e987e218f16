"""RawPCMSerializer: binary PCM16 little-endian messages both ways at one rate."""

from __future__ import annotations

from ..audio import LowLatencyResampler
from ..errors import ProtocolError
from ..frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, StartFrame
from ._contract import FastSerializer

__all__ = ["RawPCMSerializer"]


class RawPCMSerializer(FastSerializer):
    """Each binary WebSocket message is PCM16 LE audio at ``sample_rate``.

    Incoming messages of any (even) length become :class:`InputAudioRawFrame`;
    outgoing :class:`OutputAudioRawFrame` is sent as its bytes (resampled if the
    frame's rate differs, by a :class:`~flowcat.audio.LowLatencyResampler`: the
    output has paced the audio already, so each chunk goes out as its exact share).
    There is no clear message: an interruption only empties the server-side queue,
    which is why output is paced. Text messages and other frames are ignored.

    Args:
        sample_rate: Wire rate in Hz; None follows the StartFrame (input rate).
        num_channels: Interleaved channels.
    """

    # (The base classes give it a ``__dict__``; what each message reads is in slots.)
    __slots__ = ("_out", "num_channels", "sample_rate")

    def __init__(self, sample_rate: int | None = None, num_channels: int = 1) -> None:
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self._out: LowLatencyResampler | None = None

    @property
    def passthrough_rate(self) -> int | None:
        """The rate at which :meth:`serialize_audio` sends a frame's own bytes (the wire
        rate; None until known, or when a subclass serializes differently): a transport
        may then write them without the call."""
        if type(self).serialize_audio is not RawPCMSerializer.serialize_audio:
            return None
        return self.sample_rate

    @property
    def passthrough_input(self) -> tuple[int, int] | None:
        """``(rate, channels)`` when every binary message of whole samples decodes to
        ``InputAudioRawFrame(message, rate, channels)`` (None until the rate is known,
        or when a subclass decodes differently): a transport whose input runs at that
        rate may then build the frame itself, without :meth:`deserialize_now`."""
        if self.sample_rate is None or type(self).deserialize_now is not RawPCMSerializer.deserialize_now:
            return None
        return (self.sample_rate, self.num_channels)

    async def setup(self, frame: StartFrame) -> None:
        """Adopt the StartFrame's input rate when no rate was given."""
        if self.sample_rate is None:
            self.sample_rate = frame.audio_in_sample_rate

    async def serialize(self, frame: Frame) -> bytes | None:
        """Audio frames to bytes; anything else to None."""
        if not isinstance(frame, OutputAudioRawFrame):
            return None
        return self.serialize_audio(frame)

    def serialize_audio(self, frame: OutputAudioRawFrame) -> bytes | None:
        """One chunk of audio to bytes (synchronous fast path)."""
        rate = self.sample_rate
        if rate is None or frame.sample_rate == rate:
            return frame.audio
        rs = self._out
        if rs is None or rs.in_rate != frame.sample_rate:
            rs = self._out = LowLatencyResampler(frame.sample_rate, rate, self.num_channels)
        return rs.resample(frame.audio) or None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        """Bytes to :class:`InputAudioRawFrame`.

        Raises:
            ProtocolError: The message is text or not whole samples.
        """
        return self.deserialize_now(data)

    def deserialize_now(self, data: str | bytes) -> Frame | None:
        """:meth:`deserialize` without a coroutine (synchronous fast path)."""
        if data.__class__ is not bytes:
            if not isinstance(data, bytes | bytearray):
                raise ProtocolError("raw PCM: text message", data)
            data = bytes(data)
        n = len(data)
        if n % (2 * self.num_channels):
            raise ProtocolError(f"raw PCM: {n} bytes is not a whole number of samples", data)
        if not n:
            return None
        # Positional: a keyword call to a class builds a kwargs dict per frame.
        return InputAudioRawFrame(data, self.sample_rate or 16000, self.num_channels)
