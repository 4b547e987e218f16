"""The pipeline harness the realtime provider tests share: a service between two capture processors.

``async with RealtimeRun(service) as run:`` starts the pipeline task and waits for it to start; leaving the
block ends the task with an :class:`EndFrame` (bounded waits throughout) and closes the shared HTTP sessions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowcat.frames import EndFrame, ErrorFrame, Frame
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services import Backoff, close_http_sessions
from flowcat.testing import CaptureProcessor
from flowcat.testing.conformance._realtime import realtime_inputs

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)
"""Reconnection fast enough for a test."""
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
"""A client tool, as a context's ``tools`` entry."""


async def until(cond: Any, what: str) -> None:
    """Polls ``cond`` every 5 ms for at most 5 s; fails naming ``what``."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class RealtimeRun:
    """``up`` captures what the service pushes upstream, ``down`` what it pushes downstream."""

    def __init__(self, service: FrameProcessor, *, out_rate: int = 24000, in_rate: int = 16000,
                 metrics: bool = True, usage: bool = True) -> None:
        self.service = service
        self.up = CaptureProcessor(FrameDirection.UPSTREAM)
        self.down = CaptureProcessor(FrameDirection.DOWNSTREAM)
        self.task = PipelineTask(Pipeline([self.up, service, self.down]), params=PipelineParams(
            audio_in_sample_rate=in_rate, audio_out_sample_rate=out_rate, enable_metrics=metrics,
            enable_usage_metrics=usage))
        self.runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RealtimeRun:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        self.runner = asyncio.get_running_loop().create_task(self.task.run())
        await asyncio.wait_for(started.wait(), 5)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.task.queue_frame(EndFrame())
        assert self.runner is not None
        await asyncio.wait_for(self.runner, 5)
        await close_http_sessions()

    async def until(self, cond: Any, what: str) -> None:
        await until(cond, what)

    def count(self, cls: type[Frame]) -> int:
        """How many frames of ``cls`` came downstream."""
        return sum(1 for f in self.down.frames if isinstance(f, cls))

    def errors(self) -> list[ErrorFrame]:
        """The error frames that went upstream."""
        return [f for f in self.up.frames if isinstance(f, ErrorFrame)]

    async def speak(self, rate: int = 16000) -> None:
        """Queues the conformance suite's caller speech (audio at ``rate``)."""
        for f in realtime_inputs(rate):
            await self.task.queue_frame(f)
