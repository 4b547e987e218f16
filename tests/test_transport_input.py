"""Input transport: any chunk size in, re-chunking, resampling, filter, the reader never
blocks, warn-once on missing audio, a closed peer ends the call. Virtual clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flowcat import FrameDirection, FrameProcessor
from flowcat.frames import (
    EndFrame,
    FilterEnableFrame,
    Frame,
    InputAudioRawFrame,
    TextFrame,
)
from flowcat.testing import run_virtual
from flowcat.transports import BaseInputTransport, TransportParams
from test_transport_support import RATE, Harness, pcm


def _audio_frames(h: Harness) -> list[InputAudioRawFrame]:
    return [f for f in h.down.frames if isinstance(f, InputAudioRawFrame)]


def test_any_chunk_size_rechunked_to_20ms() -> None:
    async def main() -> None:
        inp = BaseInputTransport(TransportParams(audio_in_chunk_ms=20))
        async with Harness([inp]) as h:
            data = pcm(2560 + 100)
            pos = 0
            for size in (100, 900, 2, 258, 1300, 100):
                inp.push_audio(data[pos : pos + size])
                pos += size
            await asyncio.sleep(0)
            await h.task.queue_frame(EndFrame())
            await h.finish()
        frames = _audio_frames(h)
        assert [len(f.audio) for f in frames] == [640] * 4
        assert b"".join(f.audio for f in frames) == data[:2560]
        assert all(f.sample_rate == RATE for f in frames)

    run_virtual(main())


def test_passthrough_keeps_frame_and_resamples_other_rates() -> None:
    async def main() -> None:
        inp = BaseInputTransport(TransportParams())
        async with Harness([inp]) as h:
            same = InputAudioRawFrame(audio=pcm(320), sample_rate=RATE)
            inp.push_input_frame(same)
            for _ in range(10):
                inp.push_input_frame(InputAudioRawFrame(audio=bytes(1600), sample_rate=8000))  # 100 ms
            inp.push_input_frame(TextFrame(text="typed"))
            await asyncio.sleep(0)
            await h.task.queue_frame(EndFrame())
            await h.finish()
        frames = _audio_frames(h)
        assert frames[0] is same  # no copy when nothing needs doing
        assert all(f.sample_rate == RATE for f in frames)
        resampled = sum(len(f.audio) for f in frames[1:])
        assert 28000 <= resampled <= 32000  # ~1 s at 16 kHz minus the resampler delay
        assert any(isinstance(f, TextFrame) for f in h.down.frames)

    run_virtual(main())


def test_sync_and_async_filters_and_filter_enable() -> None:
    class Invert:
        def __init__(self) -> None:
            self.started_at = 0

        def start(self, sample_rate: int) -> None:
            self.started_at = sample_rate

        def filter(self, audio: bytes) -> bytes:
            return bytes(255 - b for b in audio)

    class AsyncInvert(Invert):
        async def filter(self, audio: bytes) -> bytes:  # type: ignore[override]
            return bytes(255 - b for b in audio)

    async def main() -> None:
        for flt in (Invert(), AsyncInvert()):
            inp = BaseInputTransport(TransportParams(audio_in_filter=flt))
            async with Harness([inp]) as h:
                inp.push_audio(b"\x00\x01")
                await h.task.queue_frame(FilterEnableFrame(enable=False))
                await asyncio.sleep(0.01)
                inp.push_audio(b"\x00\x01")
                await asyncio.sleep(0)
                await h.task.queue_frame(EndFrame())
                await h.finish()
            assert flt.started_at == RATE
            assert [f.audio for f in _audio_frames(h)] == [b"\xff\xfe", b"\x00\x01"]

    run_virtual(main())


def test_reader_never_blocks_on_a_slow_pipeline() -> None:
    class Slow(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[bytes] = []

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                await asyncio.sleep(0.05)  # a processor that awaits (it should not, but may)
                self.seen.append(frame.audio)
            await self.push_frame(frame, direction)

    async def main() -> None:
        inp = BaseInputTransport(TransportParams())
        slow = Slow()
        async with Harness([inp, slow]) as h:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            chunks = [pcm(640, i) for i in range(10)]
            for c in chunks:
                inp.push_audio(c)  # synchronous: returns without waiting for the pipeline
            assert loop.time() == t0
            await h.task.queue_frame(EndFrame())
            await h.finish()
        assert slow.seen == chunks

    run_virtual(main())


def test_warns_once_when_no_audio(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        inp = BaseInputTransport(TransportParams(audio_in_warn_secs=2.0))
        with caplog.at_level(logging.WARNING, logger="flowcat.transports.input"):
            async with Harness([inp]) as h:
                await asyncio.sleep(1.5)
                inp.push_audio(bytes(640))
                await asyncio.sleep(1.5)
                assert "no input audio" not in caplog.text  # audio came 1.5 s in
                await asyncio.sleep(30)
                await h.task.queue_frame(EndFrame())
                await h.finish()
        assert caplog.text.count("no input audio") == 1

    run_virtual(main())


def test_peer_closed_cancels_or_ends_the_call() -> None:
    async def main() -> None:
        for end, expected in ((False, "cancel"), (True, "end")):
            inp = BaseInputTransport(TransportParams())
            async with Harness([inp]) as h:
                inp.push_audio(bytes(640))
                inp.peer_closed(end=end)
                await h.finish(5)
            assert h.task.stats.finished_by == expected
            inp.push_audio(bytes(640))  # after the call: ignored, no error

    run_virtual(main())


def test_audio_passthrough_and_submitter_are_the_inputs_public_fast_entry() -> None:
    async def main() -> None:
        inp = BaseInputTransport(TransportParams())
        chunked = BaseInputTransport(TransportParams(audio_in_chunk_ms=20))
        assert inp.audio_submitter() is None  # not attached to a task yet
        assert not inp.audio_passthrough
        async with Harness([inp]) as h:
            assert inp.audio_passthrough and (inp.sample_rate, inp.num_channels) == (RATE, 1)
            submit = inp.audio_submitter()
            assert submit is not None
            frame = InputAudioRawFrame(pcm(640), RATE, 1)
            submit(inp, frame)
            await asyncio.sleep(0)
            await h.task.queue_frame(EndFrame())
            await h.finish()
        assert _audio_frames(h) == [frame]  # delivered as built, no copy
        assert not inp.audio_passthrough  # cleared when the call ended
        async with Harness([chunked]) as h2:
            assert not chunked.audio_passthrough  # re-chunking: frames are not passed as they come
            await h2.task.queue_frame(EndFrame())
            await h2.finish()

    run_virtual(main())
