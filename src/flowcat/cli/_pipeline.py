"""``flowcat pipeline``: a synthetic 440 Hz tone through a multi-stage pipeline.

Prints the frames in and out, checks the tone survived (frequency and level),
and measures the routing cost per processor hop (slope between a short and a
long chain of pass-through processors).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np

from ..frames import EndFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
from ..runtime import FrameDirection, FrameProcessor, Pipeline, PipelineTask

RATE = 16000
FRAME_SAMPLES = 320  # 20 ms at 16 kHz


class _ToOutput(FrameProcessor):
    """Turns user audio into bot audio (an echo stage)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels))
        else:
            await self.push_frame(frame, direction)


class _Gain(FrameProcessor):
    """Scales output audio by a fixed gain."""

    def __init__(self, gain: float) -> None:
        super().__init__(name="gain")
        self.gain = gain

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame):
            pcm = np.frombuffer(frame.audio, dtype=np.int16).astype(np.float32) * self.gain
            frame.audio = np.clip(pcm, -32768, 32767).astype(np.int16).tobytes()
        await self.push_frame(frame, direction)


class _Pass(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class _Meter(FrameProcessor):
    """Collects the output audio."""

    def __init__(self) -> None:
        super().__init__(name="meter")
        self.frames = 0
        self.audio: list[bytes] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame):
            self.frames += 1
            self.audio.append(frame.audio)
        await self.push_frame(frame, direction)


def _tone_frames(count: int, freq: float = 440.0, amplitude: float = 0.5) -> list[bytes]:
    t = np.arange(count * FRAME_SAMPLES) / RATE
    pcm = (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)
    return [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].tobytes() for i in range(count)]


async def _run_once(frames: list[bytes], stages: list[FrameProcessor], meter: _Meter) -> float:
    task = PipelineTask(Pipeline([*stages, meter]), idle_timeout_secs=None)
    started = asyncio.Event()
    task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
    runner = asyncio.ensure_future(task.run())
    await started.wait()
    t0 = time.perf_counter()
    for pcm in frames:
        await task.queue_frame(InputAudioRawFrame(pcm, RATE))
    elapsed = time.perf_counter() - t0
    await task.queue_frame(EndFrame())
    await asyncio.wait_for(runner, 10)
    return elapsed


async def _per_hop_us(n: int) -> float:
    frames = _tone_frames(1)[0]
    batch = [frames] * n

    async def chain(k: int) -> float:
        best = float("inf")
        for _ in range(3):
            stages: list[FrameProcessor] = [_ToOutput(), *[_Pass() for _ in range(k)]]
            best = min(best, await _run_once(batch, stages, _Meter()))
        return best / n

    short, long = await chain(1), await chain(21)
    return max(0.0, (long - short) / 20 * 1e6)


async def _main(args: argparse.Namespace) -> int:
    count = args.frames
    frames = _tone_frames(count)
    meter = _Meter()
    stages: list[FrameProcessor] = [
        _ToOutput(name="echo"),
        _Gain(0.5),
        *[_Pass(name=f"stage{i}") for i in range(args.stages)],
    ]
    await _run_once(frames, stages, meter)
    out = np.frombuffer(b"".join(meter.audio), dtype=np.int16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out))
    freq = float(np.argmax(spectrum) * RATE / len(out)) if len(out) else 0.0
    ratio = float(np.sqrt(np.mean(out**2)) / (0.5 * 32767 / np.sqrt(2))) if len(out) else 0.0
    names = " -> ".join(s.name for s in [*stages, meter])
    print(f"pipeline : {names}")
    print(f"frames in: {count} x {FRAME_SAMPLES} samples @ {RATE} Hz (440 Hz tone)")
    print(f"frames out: {meter.frames}  tone: {freq:.1f} Hz  level: {ratio:.3f} of input (gain 0.5)")
    per_hop = await _per_hop_us(args.hop_frames)
    print(f"routing cost per processor hop: {per_hop:.3f} us")
    ok = meter.frames == count and abs(freq - 440.0) < 5 and abs(ratio - 0.5) < 0.02
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


def _main_sync(args: argparse.Namespace) -> int:
    try:
        import uvloop

        return uvloop.run(_main(args))
    except ImportError:
        return asyncio.run(_main(args))


def register(sub: Any) -> None:
    """Add the ``pipeline`` subcommand."""
    p = sub.add_parser("pipeline", help="run a synthetic 440 Hz tone through a multi-stage pipeline")
    p.add_argument("--frames", type=int, default=50, help="20 ms frames to send (default 50)")
    p.add_argument("--stages", type=int, default=3, help="extra pass-through stages (default 3)")
    p.add_argument("--hop-frames", type=int, default=20000, help="frames for the per-hop measurement")
    p.set_defaults(func=_main_sync)


__all__ = ["register"]
