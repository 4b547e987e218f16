"""The serializer contract: what a transport asks of a wire format.

Two abstract classes, one inside the other:

* :class:`Serializer` is pipecat's interface: ``setup(StartFrame)``, then
  ``serialize(frame)`` and ``deserialize(message)``, both coroutines. A transport
  that holds a :class:`Serializer` and nothing more awaits them per message, and
  gives it a :attr:`~Serializer.sender` for replies the wire format sends on its own.
* :class:`FastSerializer` adds the synchronous fast path the WebSocket transports
  use per audio message: :meth:`~FastSerializer.serialize_audio`,
  :meth:`~FastSerializer.deserialize_now`, and two declarations that let a
  transport skip even those calls (:attr:`~FastSerializer.passthrough_rate`,
  :attr:`~FastSerializer.passthrough_input`). Every flowcat serializer is one.

A class that leaves an abstract method out cannot be instantiated (``TypeError``
at construction). Transports decide once, with ``isinstance``, which contract a
serializer honours; nothing is probed per message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from ..frames import Frame, OutputAudioRawFrame, StartFrame
from ._call import Wire, WireOut

__all__ = ["FastSerializer", "Serializer"]


class Serializer(ABC):
    """A connection's wire format: messages ⇄ frames (pipecat's serializer interface).

    ``serialize`` returns one message (``str``: a text frame, ``bytes``: a binary
    frame), a list of messages to send in order, or None when the frame has no
    message. ``deserialize`` returns the frame a message stands for, or None.

    Attributes:
        sender: Set by the transport to a coroutine function that sends one message
            now; a serializer uses it for replies its protocol sends by itself (a
            carrier's ``pong``). None until a transport holds the serializer.
    """

    sender: Callable[[Wire], Awaitable[None]] | None = None

    async def setup(self, frame: StartFrame) -> None:  # noqa: B027 - optional hook
        """Learn the pipeline's parameters (sample rates) from the StartFrame."""

    @abstractmethod
    async def serialize(self, frame: Frame) -> WireOut:
        """The message(s) for an outgoing frame, or None."""

    @abstractmethod
    async def deserialize(self, data: Wire) -> Frame | None:
        """The frame for one received message, or None (control messages, bad input)."""


class FastSerializer(Serializer):
    """A :class:`Serializer` with the synchronous per-message fast path.

    The transports call these on the hot path, instead of awaiting a coroutine per
    message. They must agree with the async methods:

    * ``serialize_audio(frame)`` returns what ``serialize(frame)`` returns for an
      :class:`~flowcat.frames.OutputAudioRawFrame`;
    * ``deserialize_now(data)`` returns what ``deserialize(data)`` returns, or (for a
      message the protocol answers before it yields its frame) an awaitable of it;
    * where :attr:`passthrough_rate` is an int, ``serialize_audio`` of a frame at that
      rate returns the frame's own bytes as one binary message;
    * where :attr:`passthrough_input` is ``(rate, channels)``, ``deserialize_now`` of a
      non-empty binary message of whole samples returns
      ``InputAudioRawFrame(message, rate, channels)``.

    ``deserialize`` defaults to ``deserialize_now`` (awaited where it returns an
    awaitable).
    """

    @abstractmethod
    def serialize_audio(self, frame: OutputAudioRawFrame) -> WireOut:
        """The message(s) for one chunk of bot audio (synchronous)."""

    @abstractmethod
    def deserialize_now(self, data: Wire) -> Frame | None | Awaitable[Frame | None]:
        """:meth:`deserialize` without a coroutine (see the class docstring)."""

    async def deserialize(self, data: Wire) -> Frame | None:
        out = self.deserialize_now(data)
        if out is None or isinstance(out, Frame):
            return out
        return await out

    @property
    def passthrough_rate(self) -> int | None:
        """The rate (Hz) at which :meth:`serialize_audio` sends a frame's own bytes as
        one binary message, or None: a transport may then write such frames without
        the call. None by default."""
        return None

    @property
    def passthrough_input(self) -> tuple[int, int] | None:
        """``(rate, channels)`` when every non-empty binary message of whole samples
        decodes to ``InputAudioRawFrame(message, rate, channels)``, or None: a
        transport whose input runs at that format may then build the frame itself.
        None by default."""
        return None
