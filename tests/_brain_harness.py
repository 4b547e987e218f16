"""A text-in, text-out harness for BrainProcessor: a pipeline [BrainProcessor, Speaker] driven
turn by turn. The Speaker stands in for TTS + output: it collects each reply (the LLMTextFrames
between LLMFullResponseStartFrame and LLMFullResponseEndFrame) and "plays" it by pushing
BotStartedSpeakingFrame / BotStoppedSpeakingFrame upstream, so the silence timer runs."""

from __future__ import annotations

import asyncio
from typing import Any

from flowcat.agent import BrainProcessor
from flowcat.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TransferCallFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineTask

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM


class Speaker(FrameProcessor):
    def __init__(self, *, speak_secs: float = 1.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.speak_secs = speak_secs
        self.replies: list[str] = []
        self.frames: list[Frame] = []
        self.transfers: list[str] = []
        self._parts: list[str] | None = None
        self.changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is DOWN:
            self.frames.append(frame)
        if isinstance(frame, LLMFullResponseStartFrame):
            self._parts = []
        elif isinstance(frame, LLMTextFrame) and self._parts is not None:
            self._parts.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame) and self._parts is not None:
            self.replies.append("".join(self._parts))
            self._parts = None
            self.changed.set()
            self.create_task(self._play(), "play")
        elif isinstance(frame, TransferCallFrame):
            self.transfers.append(frame.target)
            self.changed.set()
        await self.push_frame(frame, direction)

    async def _play(self) -> None:
        await self.push_frame(BotStartedSpeakingFrame(), UP)
        await asyncio.sleep(self.speak_secs)
        await self.push_frame(BotStoppedSpeakingFrame(), UP)


class BrainHarness:
    """``async with BrainHarness(proc) as h: await h.user("hi")`` → the reply."""

    def __init__(self, proc: BrainProcessor, *, speak_secs: float = 1.0) -> None:
        self.proc = proc
        self.speaker = Speaker(speak_secs=speak_secs)
        self.task = PipelineTask(Pipeline([proc, self.speaker]), idle_timeout_secs=None)
        self.ended = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BrainHarness:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())

        async def run() -> None:
            try:
                await self.task.run()
            finally:
                self.ended.set()
                self.speaker.changed.set()

        self._runner = asyncio.ensure_future(run())
        await asyncio.wait_for(started.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.ended.is_set():
            await self.task.cancel()
        assert self._runner is not None
        await asyncio.wait_for(self._runner, 10)

    async def next_reply(self, n_before: int, timeout: float = 30.0) -> str:
        """Wait (bounded) for reply number ``n_before`` + 1 and return it."""

        async def wait() -> str:
            while len(self.speaker.replies) <= n_before:
                if self.ended.is_set():
                    raise AssertionError(f"the call ended; replies: {self.speaker.replies}")
                self.speaker.changed.clear()
                await self.speaker.changed.wait()
            return self.speaker.replies[n_before]

        return await asyncio.wait_for(wait(), timeout)

    async def greeting(self) -> str:
        return await self.next_reply(0)

    async def send(self, frame: Frame, direction: FrameDirection = DOWN) -> None:
        await self.task.queue_frame(frame, direction)

    async def user(self, text: str) -> str:
        """Say ``text`` (one final transcript, outside a turn) and return the reply it gets."""
        n = len(self.speaker.replies)
        await self.task.queue_frame(TranscriptionFrame(text=text, user_id="caller", timestamp=""))
        return await self.next_reply(n)

    async def wait_ended(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)
