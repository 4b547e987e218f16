"""The user pipeline of each call: loading ``--app module:function`` and the default echo app."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ..errors import ConfigError
from ..frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from ..runtime import FrameDirection, FrameProcessor
from ..serializers import CallInfo

__all__ = [
    "AppFactory",
    "AsyncEcho",
    "AsyncPassThrough",
    "CallInfo",
    "EchoProcessor",
    "PassThrough",
    "async_app",
    "default_app",
    "load_app",
]

DOWNSTREAM = FrameDirection.DOWNSTREAM


AppFactory = Callable[[CallInfo], "Sequence[FrameProcessor] | FrameProcessor"]


class PassThrough(FrameProcessor):
    """Passes every frame on unchanged (inline: a plain call per frame, no coroutine)."""

    inline_frames: ClassVar[tuple[type[Frame], ...]] = (Frame,)

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Frame:
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class EchoProcessor(FrameProcessor):
    """Turns caller audio into bot audio (same bytes, same rate); passes the rest on.

    Inline: caller audio and every other non-lifecycle frame are handled without a
    coroutine (see :mod:`flowcat.runtime._inline`)."""

    inline_frames: ClassVar[tuple[type[Frame], ...]] = (Frame,)

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        if isinstance(frame, InputAudioRawFrame):
            if direction is not DOWNSTREAM:
                return NotImplemented
            return OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels)
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            out = OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels)
            await self.push_frame(out, DOWNSTREAM)
        else:
            await self.push_frame(frame, direction)


class AsyncPassThrough(PassThrough):
    """:class:`PassThrough` the pipecat way: no inline frames, a coroutine per hop."""

    inline_frames = ()


class AsyncEcho(EchoProcessor):
    """:class:`EchoProcessor` the pipecat way: no inline frames, a coroutine per hop."""

    inline_frames = ()


def default_app(call: CallInfo) -> list[FrameProcessor]:
    """Three processors ending in an echo: the benchmark and smoke-test app (inline hops)."""
    return [PassThrough(), PassThrough(), EchoProcessor()]


def async_app(call: CallInfo) -> list[FrameProcessor]:
    """:func:`default_app` with pipecat-style processors (a coroutine per hop)."""
    return [AsyncPassThrough(), AsyncPassThrough(), AsyncEcho()]


def load_app(spec: str | None) -> AppFactory:
    """Resolve ``module:function`` to a factory; None gives :func:`default_app`.

    The function may take the :class:`CallInfo` or no argument, and returns a list
    of processors or one processor (e.g. a Pipeline).
    """
    if not spec:
        return default_app
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"--app must be 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"--app {spec!r}: cannot import {mod_name!r}: {exc}") from exc
    func = getattr(module, attr, None)
    if not callable(func):
        raise ConfigError(f"--app {spec!r}: {attr!r} is not a callable in {mod_name!r}")
    try:
        takes_arg = bool(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        takes_arg = True
    if takes_arg:
        return func
    return lambda _call: func()
