"""A pipeline around one STT service for the provider wire tests: ``head -> stt -> tail``, speak, wait."""

from __future__ import annotations

import asyncio
from typing import Any

from flowcat.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services import close_http_sessions


class Capture(FrameProcessor):
    def __init__(self) -> None:
        super().__init__(name="capture")
        self.frames: list[Frame] = []
        self.up: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        (self.frames if direction is FrameDirection.DOWNSTREAM else self.up).append(frame)
        await self.push_frame(frame, direction)


def chunk(i: int, rate: int, ms: int = 20) -> bytes:
    """``ms`` of PCM16 whose samples all read ``i + 1`` (so the bytes on the wire can be matched)."""
    return bytes([i + 1, 0]) * (rate * ms // 1000)


class Session:
    def __init__(self, stt: FrameProcessor, rate: int = 16000) -> None:
        self.stt = stt
        self.head = Capture()
        self.tail = Capture()
        self.rate = rate
        self.task = PipelineTask(Pipeline([self.head, stt, self.tail]),
                                 params=PipelineParams(audio_in_sample_rate=rate, enable_metrics=True))
        self.runner: asyncio.Task[None] | None = None
        self.sent = bytearray()

    async def __aenter__(self) -> Session:
        self.runner = asyncio.get_running_loop().create_task(self.task.run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.runner is not None and not self.runner.done():
            await self.task.cancel()
            await asyncio.wait({self.runner}, timeout=5)
        await close_http_sessions()

    async def speak(self, chunks: int = 5, ms: int = 20) -> None:
        await self.task.queue_frame(VADUserStartedSpeakingFrame())
        for i in range(chunks):
            audio = chunk(i, self.rate, ms)
            self.sent += audio
            await self.task.queue_frame(InputAudioRawFrame(audio, self.rate))
        await self.task.queue_frame(VADUserStoppedSpeakingFrame())

    async def until(self, cond: Any, what: str, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not cond():
            assert loop.time() < end, f"timed out waiting for {what}"
            await asyncio.sleep(0.005)

    def of(self, t: type[Frame]) -> list[Any]:
        return [f for f in self.tail.frames if isinstance(f, t)]

    def errors(self) -> list[Any]:
        from flowcat.frames import ErrorFrame

        return [f for f in self.head.up if isinstance(f, ErrorFrame)]

    async def end(self) -> None:
        await self.task.queue_frame(EndFrame())
        assert self.runner is not None
        await asyncio.wait_for(self.runner, 5)
