"""One call over an aiohttp WebSocket: transport input → user pipeline → transport output.

The edge processors here are the server's own thin glue around a carrier
serializer (``setup`` / ``serialize`` / ``deserialize``): the socket reader
deserializes each message and pushes the frame into the call's scheduler (no
task per frame); the output serializes audio and writes it, paced to real time
by one clock per process so that a burst of bot audio is released as it would be
played and an interruption can still drop what was not sent. Audio arriving at
real time (an echo) is written immediately.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from ..frames import (
    BotSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    HeartbeatFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    MetricsFrame,
    OutputAudioRawFrame,
    StartFrame,
    UserSpeakingFrame,
)
from ..runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask

__all__ = ["CallInput", "CallOutput", "OutputClock", "run_call"]

logger = logging.getLogger("flowcat.server")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

# Frames the output never hands to the serializer (frequent, never on the wire).
_NOT_WIRE = (
    InputAudioRawFrame,
    BotSpeakingFrame,
    UserSpeakingFrame,
    HeartbeatFrame,
    MetricsFrame,
    StartFrame,
)


class OutputClock:
    """One per process: releases queued bot audio of every call at real time."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self._due: set[CallOutput] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def want(self, out: CallOutput) -> None:
        """``out`` has queued audio: drain it on the next ticks."""
        self._due.add(out)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowcat-output-clock")
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._due:
                wake.clear()
                await wake.wait()
                continue
            now = loop.time()
            for out in list(self._due):
                if await out.drain(now):
                    self._due.discard(out)
            await asyncio.sleep(self.period)

    def forget(self, out: CallOutput) -> None:
        self._due.discard(out)


_CLOCK: OutputClock | None = None


def process_clock() -> OutputClock:
    """The process-wide output clock."""
    global _CLOCK
    if _CLOCK is None:
        _CLOCK = OutputClock()
    return _CLOCK


class CallInput(FrameProcessor):
    """First processor of a call: frames from the socket enter here."""

    def __init__(self, serializer: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._ser = serializer

    async def start(self, frame: StartFrame) -> None:
        setup = getattr(self._ser, "setup", None)
        if setup is not None:
            await setup(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class CallOutput(FrameProcessor):
    """Last processor of a call: serializes frames and writes them to the socket."""

    def __init__(self, ws: web.WebSocketResponse, serializer: Any, *, lead_secs: float = 0.04, **kw: Any):
        super().__init__(**kw)
        self._ws = ws
        self._ser = serializer
        self._lead = lead_secs
        self._queue: deque[tuple[Any, float]] = deque()
        self._until = 0.0  # loop time at which the audio written so far has played
        self._clock = process_clock()
        self._loop = asyncio.get_event_loop()
        self._skip: dict[type, bool] = {}
        self.sent_audio = 0
        self.frames_cleared = 0
        self.ended = asyncio.Event()
        self._drained: asyncio.Event | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is UPSTREAM:
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, OutputAudioRawFrame):
            data = await self._ser.serialize(frame)
            if data:
                dur = len(frame.audio) / (2 * frame.sample_rate * frame.num_channels)
                now = self._loop.time()
                if not self._queue and self._until - now <= self._lead:
                    self._until = (self._until if self._until > now else now) + dur
                    await self._write(data)
                else:
                    self._queue.append((data, dur))
                    self._clock.want(self)
            return
        cls = frame.__class__
        skip = self._skip.get(cls)
        if skip is None:
            skip = self._skip[cls] = issubclass(cls, _NOT_WIRE)
        if not skip:
            if cls is InterruptionFrame or isinstance(frame, InterruptionFrame):
                self.frames_cleared += len(self._queue)
                self._queue.clear()
                self._until = 0.0
                self._clock.forget(self)
            elif isinstance(frame, EndFrame):
                await self._flush()
            msg = await self._ser.serialize(frame)
            if msg is not None:
                await self._write(msg)
            if isinstance(frame, EndFrame | CancelFrame):
                self.ended.set()
        await self.push_frame(frame, direction)

    async def _write(self, data: Any) -> None:
        ws = self._ws
        if ws.closed:
            return
        if data.__class__ is list:
            for item in data:
                await self._write(item)
            return
        try:
            if data.__class__ is bytes:
                await ws.send_bytes(data)  # type: ignore[arg-type,unused-ignore]
            else:
                await ws.send_str(data)  # type: ignore[arg-type,unused-ignore]
        except (ConnectionError, RuntimeError):
            logger.debug("%s: write on a closed socket", self.name)
            return
        self.sent_audio += 1

    async def drain(self, now: float) -> bool:
        """Write queued audio that is due; True when nothing is left (clock callback)."""
        q = self._queue
        while q and self._until - now <= self._lead:
            data, dur = q.popleft()
            self._until = (self._until if self._until > now else now) + dur
            await self._write(data)
        if not q and self._drained is not None:
            self._drained.set()
        return not q

    async def _flush(self) -> None:
        """Before the call ends gracefully: let queued bot audio go out (bounded by its length)."""
        if not self._queue:
            return
        budget = sum(d for _, d in self._queue) + 1.0
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), budget)
        except TimeoutError:
            logger.debug("%s: output flush overran", self.name)
        self._drained = None
        self._queue.clear()
        self._clock.forget(self)

    async def cleanup(self) -> None:
        self._queue.clear()
        self._clock.forget(self)


def _close_soon(ws: web.WebSocketResponse, loop: asyncio.AbstractEventLoop) -> None:
    if not ws.closed:
        _closers.add(t := loop.create_task(ws.close()))
        t.add_done_callback(_closers.discard)


_closers: set[asyncio.Task[Any]] = set()


async def run_call(
    ws: web.WebSocketResponse,
    serializer: Any,
    processors: list[FrameProcessor],
    *,
    params: PipelineParams,
    pending: list[str | bytes] | None = None,
    idle_timeout_secs: float | None = None,
) -> PipelineTask:
    """Run one call until the socket closes or the pipeline ends. Returns the finished task."""
    inp = CallInput(serializer, name="CallInput")
    out = CallOutput(ws, serializer, name="CallOutput")
    task = PipelineTask(Pipeline([inp, *processors, out]), params=params, idle_timeout_secs=idle_timeout_secs)
    loop = asyncio.get_running_loop()
    runner = loop.create_task(task.run(), name=task.name)
    runner.add_done_callback(lambda _r: _close_soon(ws, loop))
    deserialize = serializer.deserialize
    push = inp.push_frame
    try:
        for data in pending or ():
            frame = await deserialize(data)
            if frame is not None:
                await push(frame)
        while not runner.done():
            msg = await ws.receive()
            mtype = msg.type
            if mtype is WSMsgType.BINARY or mtype is WSMsgType.TEXT:
                try:
                    frame = await deserialize(msg.data)
                except Exception:  # malformed carrier input: log and go on
                    logger.warning("%s: bad message from the carrier", task.name, exc_info=True)
                    continue
                if frame is not None:
                    if isinstance(frame, EndFrame | CancelFrame):
                        break
                    await push(frame)
            elif mtype in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
    finally:
        if not runner.done():
            await task.cancel("socket closed")
            await asyncio.wait((runner,), timeout=5.0)
            if not runner.done():
                runner.cancel()
        if not ws.closed:
            await ws.close()
    return task
