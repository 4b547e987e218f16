"""Shared helpers for the transport tests (no tests here): a recording output and a harness."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.frames import CancelFrame, EndFrame, Frame, OutputAudioRawFrame, StartFrame
from flowcat.testing import CaptureProcessor
from flowcat.transports import BaseOutputTransport, TransportParams

DOWN = FrameDirection.DOWNSTREAM
UP = FrameDirection.UPSTREAM
RATE = 16000
CHUNK = RATE * 20 // 1000 * 2  # 640 bytes = 20 ms at 16 kHz


class StartFlag(FrameProcessor):
    """Reports each call whose StartFrame reached it (the transport input runs by then)."""

    def __init__(self, started: asyncio.Queue[None]) -> None:
        super().__init__()
        self.queue = started

    async def start(self, frame: StartFrame) -> None:
        self.queue.put_nowait(None)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class RecordingOutput(BaseOutputTransport):
    """An output whose 'wire' is a list of (loop time, kind, payload)."""

    def __init__(self, params: TransportParams | None = None, **kw: Any) -> None:
        super().__init__(params or TransportParams(audio_out_sample_rate=RATE), **kw)
        self.wire: list[tuple[float, str, Any]] = []
        self.closed_by: Frame | None = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def write_audio(self, frame: OutputAudioRawFrame) -> None:
        self.wire.append((self._now(), "audio", frame.audio))

    def write_frame(self, frame: Frame) -> None:
        self.wire.append((self._now(), type(frame).__name__, frame))

    def close_transport(self, frame: EndFrame | CancelFrame) -> None:
        self.closed_by = frame
        self.wire.append((self._now(), "close", frame))

    def audio(self) -> list[tuple[float, bytes]]:
        return [(t, p) for t, k, p in self.wire if k == "audio"]


def pcm(n_bytes: int, seed: int = 1) -> bytes:
    """Deterministic non-silent PCM16 bytes (n_bytes even)."""
    return bytes((i * 7 + seed) & 0xFF for i in range(n_bytes))


class Harness:
    """A running task ``[capture-up, *processors, capture-down]`` with helpers."""

    def __init__(self, processors: Sequence[FrameProcessor], **task_kw: Any) -> None:
        self.up = CaptureProcessor(UP, [StartFrame], name="capture-up")
        self.down = CaptureProcessor(DOWN, [StartFrame], name="capture-down")
        params = task_kw.pop("params", PipelineParams(audio_out_sample_rate=RATE, audio_in_sample_rate=RATE))
        self.task = PipelineTask(
            Pipeline([self.up, *processors, self.down]), params=params, idle_timeout_secs=None, **task_kw
        )
        self.run: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        self.run = asyncio.ensure_future(self.task.run())
        await asyncio.wait_for(started.wait(), 5)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.run is not None
        if not self.run.done():
            await self.task.cancel()
            await asyncio.wait_for(self.run, 5)

    async def finish(self, timeout: float = 30.0) -> None:
        assert self.run is not None
        await asyncio.wait_for(asyncio.shield(self.run), timeout)

    def down_types(self, *, skip: tuple[type[Frame], ...] = ()) -> list[type[Frame]]:
        return [type(f) for f in self.down.frames if not isinstance(f, skip)]

    def up_types(self, *, skip: tuple[type[Frame], ...] = ()) -> list[type[Frame]]:
        return [type(f) for f in self.up.frames if not isinstance(f, skip)]
