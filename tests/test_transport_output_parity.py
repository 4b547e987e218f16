"""Output transport behaviours a pipecat port relies on.

Reference: pipecat 1.14 ``BaseOutputTransport`` (``transports/base_output.py``):
audio from an uninterruptible frame survives an interruption and is played; the
trailing partial chunk is padded with silence to a whole chunk when the speech
run ends (``TTSStoppedFrame``, end); chunks are frames of the class of the audio
they were cut from (a ``TTSAudioRawFrame`` stays one downstream).
"""

from __future__ import annotations

import asyncio

from flowcat.frames import (
    BotStoppedSpeakingFrame,
    EndFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from flowcat.testing import run_virtual
from test_transport_support import CHUNK, RATE, Harness, RecordingOutput, pcm


def _tts(n_bytes: int, seed: int, *, interruptible: bool = True) -> TTSAudioRawFrame:
    frame = TTSAudioRawFrame(audio=pcm(n_bytes, seed), sample_rate=RATE)
    frame.interruptible = interruptible
    return frame


def test_uninterruptible_audio_survives_an_interruption_and_is_played() -> None:
    async def main() -> tuple[bytes, bytes, list[type]]:
        out = RecordingOutput()
        kept = _tts(CHUNK * 10 + 200, 3, interruptible=False)  # a partial chunk too
        async with Harness([out]) as h:
            await h.task.queue_frame(_tts(CHUNK * 30, 1))  # interruptible: dropped
            await h.task.queue_frame(kept)
            await asyncio.sleep(0.05)
            mark = len(out.wire)
            await h.task.queue_frame(InterruptionFrame())
            stopped_at_interrupt = BotStoppedSpeakingFrame in h.up_types()
            await h.task.queue_frame(TTSStoppedFrame())
            await h.task.queue_frame(EndFrame())
            await h.finish()
        after = b"".join(p for _, k, p in out.wire[mark:] if k == "audio")
        assert not stopped_at_interrupt  # the bot keeps speaking while kept audio plays
        return after, kept.audio, h.up_types()

    after, kept, up = run_virtual(main())
    # All of the uninterruptible audio was played after the interruption (its
    # partial last chunk padded), and none of the interruptible audio queued before it.
    assert after == kept + bytes(CHUNK - 200)
    assert BotStoppedSpeakingFrame in up


def test_interruption_drops_interruptible_audio() -> None:
    async def main() -> bytes:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_tts(CHUNK * 30, 1))
            await asyncio.sleep(0.05)
            mark = len(out.wire)
            await h.task.queue_frame(InterruptionFrame())
            await h.task.queue_frame(EndFrame())
            await h.finish()
        return b"".join(p for _, k, p in out.wire[mark:] if k == "audio")

    assert run_virtual(main()) == b""


def test_short_final_chunk_is_padded_with_silence() -> None:
    async def main() -> list[bytes]:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_tts(CHUNK * 2 + 300, 7))
            await h.task.queue_frame(TTSStoppedFrame())
            await h.task.queue_frame(EndFrame())
            await h.finish()
        return [p for _, p in out.audio()]

    chunks = run_virtual(main())
    assert [len(c) for c in chunks] == [CHUNK] * 3
    assert b"".join(chunks) == pcm(CHUNK * 2 + 300, 7) + bytes(CHUNK - 300)


def test_chunks_written_and_passed_on_keep_the_audio_frame_class() -> None:
    async def main() -> list[type]:
        out = RecordingOutput()
        async with Harness([out]) as h:
            await h.task.queue_frame(_tts(CHUNK * 3 + 100, 1))  # queued and cut: TTS chunks
            await h.task.queue_frame(OutputAudioRawFrame(audio=pcm(CHUNK * 2, 2), sample_rate=RATE))
            await h.task.queue_frame(TTSStoppedFrame())
            await h.task.queue_frame(EndFrame())
            await h.finish()
        return [type(f) for f in h.down.frames if isinstance(f, OutputAudioRawFrame)]

    kinds = run_virtual(main())
    # 3 whole TTS chunks; the 4th chunk starts with the TTS tail (the class of the
    # audio it was cut from when it was queued), then the plain audio's chunks.
    assert kinds[:3] == [TTSAudioRawFrame] * 3
    assert kinds[-1] is OutputAudioRawFrame
    assert len(kinds) == 6
