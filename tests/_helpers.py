"""Small processors shared by runtime tests."""

from __future__ import annotations

import asyncio

from flowcat import FrameDirection, FrameProcessor
from flowcat.frames import Frame, TextFrame


class Passthrough(FrameProcessor):
    """Passes every frame on."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Blocking(FrameProcessor):
    """Awaits ``release`` when it sees TextFrame("block") — a processor that does I/O inline."""

    def __init__(self) -> None:
        super().__init__(name="blocking")
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.cancelled = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame) and frame.text == "block":
            self.entered.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        await self.push_frame(frame, direction)


def texts(frames: list[Frame]) -> list[str]:
    """The texts of the TextFrames among ``frames``."""
    return [f.text for f in frames if isinstance(f, TextFrame)]
