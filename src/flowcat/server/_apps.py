"""The user pipeline of each call: loading ``--app module:function`` and the default echo app."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import traceback
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
    "after_output",
    "app_search_path",
    "async_app",
    "default_app",
    "load_app",
]

DOWNSTREAM = FrameDirection.DOWNSTREAM


AppFactory = Callable[[CallInfo], "Sequence[FrameProcessor] | FrameProcessor"]

_AFTER_OUTPUT = "flowcat_after_output"


def after_output(processor: FrameProcessor) -> FrameProcessor:
    """Mark ``processor`` of an app's list to run after the output transport, in the order
    given (e.g. the assistant half of ``LLMContextAggregatorPair``, which commits what was
    played). Returns it, so a factory can write ``[..., tts, after_output(pair.assistant())]``."""
    setattr(processor, _AFTER_OUTPUT, True)
    return processor


def is_after_output(processor: FrameProcessor) -> bool:
    """Whether :func:`after_output` marked ``processor``."""
    return bool(getattr(processor, _AFTER_OUTPUT, False))


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


def _problem(exc: BaseException) -> str:
    """``Type: message (file:line)`` of an exception, on one line (where it was raised last)."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            where = f" ({frames[-1].filename}:{frames[-1].lineno})"
    return f"{type(exc).__name__}: {text}{where}"


def app_search_path(app_dir: str | None = None) -> str:
    """Put ``app_dir`` (default: the working directory) first on ``sys.path``, as
    ``python -m`` does, so ``--app`` finds the user's modules; returns it."""
    path = os.path.abspath(app_dir or os.getcwd())
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def load_app(spec: str | None, *, app_dir: str | None = None) -> AppFactory:
    """Resolve ``module:function`` to a factory; None gives :func:`default_app`.

    The module is imported with ``app_dir`` (default: the working directory) first on
    ``sys.path``. The function may take the :class:`CallInfo` or no argument, and
    returns a list of processors or one processor (e.g. a Pipeline).

    Raises:
        ConfigError: One line naming the problem: a malformed spec, a module that is
            not found, a module that raised while importing (with the exception and
            where it was raised), a missing or non-callable attribute, or a function
            that takes more than one argument.
    """
    if not spec:
        return default_app
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"--app must be 'module:function', got {spec!r}")
    where = app_search_path(app_dir)
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (mod_name == missing or mod_name.startswith(missing + ".")):
            raise ConfigError(
                f"--app {spec!r}: no module named {missing!r} (looked in {where} and on sys.path)"
            ) from None
        raise ConfigError(f"--app {spec!r}: importing {mod_name!r} failed: {_problem(exc)}") from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
            raise
        raise ConfigError(f"--app {spec!r}: importing {mod_name!r} raised {_problem(exc)}") from exc
    func = getattr(module, attr, None)
    if func is None:
        origin = getattr(module, "__file__", None) or mod_name
        raise ConfigError(f"--app {spec!r}: module {mod_name!r} ({origin}) has no attribute {attr!r}")
    if not callable(func):
        raise ConfigError(
            f"--app {spec!r}: {attr!r} in {mod_name!r} is a {type(func).__name__}, not a function"
        )
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return func
    required = [
        p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 1:
        raise ConfigError(
            f"--app {spec!r}: {attr!r} must take the call's CallInfo or nothing, "
            f"but needs {len(required)} arguments"
        )
    if params:
        return func
    return lambda _call: func()
