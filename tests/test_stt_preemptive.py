"""Preemptive segmented STT: the transcription of a segment is asked for at the VAD stop (before
the turn processor ends the turn); a user who goes on before that transcript came gets one
transcription of the whole utterance (the stale one is discarded, never pushed). And Whisper's
decoding options: greedy, one temperature (no fallback re-decodes), no timestamps, no internal VAD.

A scripted ``SegmentedSTTService`` records each WAV it is given and answers when the test says,
in a real pipeline; every wait is an event with a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from flowcat.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services import SegmentedSTTService
from flowcat.services.stt import WhisperSTTService

RATE = 16000
BOUND = 5.0


class ScriptedSTT(SegmentedSTTService):
    """Each run_stt call is recorded (the PCM after the WAV header) and answered by the test."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(pre_roll_secs=0.0, **kw)
        self.asked: list[bytes] = []
        self.answers: list[asyncio.Future[str]] = []
        self.asked_evt = asyncio.Event()

    async def run_stt(self, wav: bytes) -> AsyncGenerator[str, None]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.asked.append(wav[44:])
        self.answers.append(fut)
        self.asked_evt.set()
        yield await fut


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.got = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.texts.append(frame.text)
            self.got.set()
        await self.push_frame(frame, direction)


def _speech(value: int, secs: float) -> list[Frame]:
    pcm = np.full(int(RATE * secs), value, dtype="<i2").tobytes()
    step = RATE // 50 * 2
    return [InputAudioRawFrame(pcm[i : i + step], RATE, 1) for i in range(0, len(pcm), step)]


class Run:
    def __init__(self, stt: ScriptedSTT) -> None:
        self.stt, self.sink = stt, Sink()
        self.task = PipelineTask(Pipeline([stt, self.sink]), params=PipelineParams(audio_in_sample_rate=RATE),
                                 idle_timeout_secs=None)
        self.runner: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Run:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        self.runner = asyncio.get_running_loop().create_task(self.task.run())
        await asyncio.wait_for(started.wait(), BOUND)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.task.queue_frame(EndFrame())
        assert self.runner is not None
        await asyncio.wait_for(self.runner, BOUND)

    async def send(self, frames: list[Frame]) -> None:
        for f in frames:
            await self.task.queue_frame(f)

    async def asked(self, n: int) -> bytes:
        while len(self.stt.asked) < n:
            self.stt.asked_evt.clear()
            await asyncio.wait_for(self.stt.asked_evt.wait(), BOUND)
        return self.stt.asked[n - 1]


async def test_a_segment_is_transcribed_at_the_vad_stop() -> None:
    async with Run(ScriptedSTT()) as r:
        await r.send([VADUserStartedSpeakingFrame(), *_speech(100, 0.4), VADUserStoppedSpeakingFrame()])
        pcm = await r.asked(1)  # asked at the VAD stop: no turn end (UserStoppedSpeakingFrame) needed
        assert pcm == np.full(int(RATE * 0.4), 100, dtype="<i2").tobytes()
        r.stt.answers[0].set_result("hello there")
        await asyncio.wait_for(r.sink.got.wait(), BOUND)
    assert r.sink.texts == ["hello there"] and r.stt.discarded == 0


async def test_a_resumed_utterance_is_transcribed_whole_and_the_stale_result_dropped() -> None:
    async with Run(ScriptedSTT()) as r:
        await r.send([VADUserStartedSpeakingFrame(), *_speech(100, 0.4), VADUserStoppedSpeakingFrame()])
        first = await r.asked(1)
        # The user goes on before the first transcript came.
        await r.send([*_speech(0, 0.1), VADUserStartedSpeakingFrame(), *_speech(200, 0.3),
                      VADUserStoppedSpeakingFrame()])
        whole = await r.asked(2)
        assert whole.startswith(first) and whole.endswith(np.full(int(RATE * 0.3), 200, dtype="<i2").tobytes())
        assert len(whole) == len(first) + 2 * int(RATE * 0.3)  # (the pause is not kept: no pre-roll here)
        assert r.stt.answers[0].cancelled()  # the stale transcription was dropped
        r.stt.answers[1].set_result("book a table for two please")
        await asyncio.wait_for(r.sink.got.wait(), BOUND)
    assert r.sink.texts == ["book a table for two please"] and r.stt.discarded == 1


async def test_a_segment_whose_transcript_came_is_not_transcribed_again() -> None:
    async with Run(ScriptedSTT()) as r:
        await r.send([VADUserStartedSpeakingFrame(), *_speech(100, 0.2), VADUserStoppedSpeakingFrame()])
        await r.asked(1)
        r.stt.answers[0].set_result("one")
        await asyncio.wait_for(r.sink.got.wait(), BOUND)
        r.sink.got.clear()
        await r.send([VADUserStartedSpeakingFrame(), *_speech(200, 0.2), VADUserStoppedSpeakingFrame()])
        second = await r.asked(2)
        assert second == np.full(int(RATE * 0.2), 200, dtype="<i2").tobytes()
        r.stt.answers[1].set_result("two")
        await asyncio.wait_for(r.sink.got.wait(), BOUND)
    assert r.sink.texts == ["one", "two"] and r.stt.discarded == 0


async def test_merging_can_be_turned_off() -> None:
    async with Run(ScriptedSTT(merge_resumed=False)) as r:
        await r.send([VADUserStartedSpeakingFrame(), *_speech(100, 0.2), VADUserStoppedSpeakingFrame()])
        await r.asked(1)
        await r.send([VADUserStartedSpeakingFrame(), *_speech(200, 0.2), VADUserStoppedSpeakingFrame()])
        second = await r.asked(2)
        assert second == np.full(int(RATE * 0.2), 200, dtype="<i2").tobytes()
        assert not r.stt.answers[0].cancelled()
        r.stt.answers[0].set_result("one")
        r.stt.answers[1].set_result("two")


class _Segment:
    def __init__(self, text: str) -> None:
        self.text, self.no_speech_prob = text, 0.01


class FakeWhisperModel:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def transcribe(self, audio: Any, **kw: Any) -> tuple[Any, Any]:
        self.calls.append(kw)
        return iter([_Segment(" Hello.")]), None


def test_whisper_decodes_once_greedy_without_timestamps_or_its_own_vad() -> None:
    stt = WhisperSTTService()
    model = stt._model = FakeWhisperModel()
    assert stt.transcribe_pcm(b"\x00\x00" * RATE, RATE) == "Hello."
    assert model.calls == [{"language": "en", "beam_size": 1, "vad_filter": False,
                            "condition_on_previous_text": False, "without_timestamps": True, "temperature": 0.0}]
