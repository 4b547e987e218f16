"""The real voice loop end to end: WebSocket in → Silero VAD → turn-taking → bot audio → paced out.

A client on 127.0.0.1 streams recorded speech in real time. When the user's turn
ends, the bot answers with 3 s of a 440 Hz tone, which the transport paces out.
Then the client talks over the bot:

* a real sentence → exactly one InterruptionFrame, and the bot's audio stops;
* a short backchannel ("uh huh") → the bot pauses, then resumes: every byte of the
  answer still arrives and there is no interruption.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from _helpers import require
from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.audio import tone
from flowcat.frames import (
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    Frame,
    InterruptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.testing import CaptureProcessor
from flowcat.transports import WebsocketParams, WebsocketServerTransport, WebsocketTransport

# Timing-sensitive (real speech at real time): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial

require("onnxruntime")
vad = require("flowcat.audio.vad")
turns = require("flowcat.turns")

RATE = 16000
FRAME = RATE * 2 // 50  # 20 ms of PCM16
BOT_SECS = 3.0
FIXTURES = Path(__file__).parent / "fixtures" / "speech"


def _wav(name: str) -> bytes:
    with wave.open(str(FIXTURES / name)) as w:
        assert w.getframerate() == RATE
        return w.readframes(w.getnframes())


class Responder(FrameProcessor):
    """Answers the user's first turn with a tone (as a TTS service would push audio)."""

    def __init__(self) -> None:
        super().__init__(name="responder")
        self.answered = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame) and direction is FrameDirection.DOWNSTREAM:
            if not self.answered:
                self.answered = True
                audio = tone(440.0, BOT_SECS, RATE, 0.3)
                for i in range(0, len(audio), FRAME):
                    await self.push_frame(TTSAudioRawFrame(audio[i : i + FRAME], RATE))


class Server:
    def __init__(self) -> None:
        self.captures: list[CaptureProcessor] = []
        self.tasks: list[PipelineTask] = []
        self.ws = WebsocketServerTransport(self._factory, params=WebsocketParams())

    def _factory(self, transport: WebsocketTransport, request: Any) -> PipelineTask:
        capture = CaptureProcessor(FrameDirection.DOWNSTREAM, name="capture")
        pipeline = Pipeline(
            [
                transport.input(),
                vad.VADProcessor(vad_analyzer=vad.SileroVADAnalyzer()),
                turns.UserTurnProcessor(  # no STT here: the turn ends on VAD timing alone
                    stop_strategies=[turns.SpeechTimeoutUserTurnStopStrategy(wait_for_transcript=False)]
                ),
                Responder(),
                capture,
                transport.output(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )
        self.captures.append(capture)
        self.tasks.append(task)
        return task


async def _call(url: str, interjection: bytes) -> tuple[int, float, float | None]:
    """Run one call. Returns (bot bytes received, barge-in start, time of the last bot byte)."""
    loop = asyncio.get_running_loop()
    received = 0
    first_bot: float | None = None
    last_bot: float | None = None
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:

        async def reader() -> None:
            nonlocal received, first_bot, last_bot
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    received += len(msg.data)
                    last_bot = loop.time()
                    if first_bot is None:
                        first_bot = last_bot

        reading = asyncio.ensure_future(reader())
        silence = b"\0" * FRAME
        t0 = loop.time()
        sent = 0

        async def send(chunk: bytes) -> None:
            nonlocal sent
            await asyncio.sleep(max(0.0, t0 + sent * 0.02 - loop.time()))
            await ws.send_bytes(chunk)
            sent += 1

        speech = _wav("utterance_weather.wav")
        for i in range(0, len(speech) - FRAME + 1, FRAME):
            await send(speech[i : i + FRAME])
        # Silence until the bot has been talking for 0.8 s (bounded).
        deadline = loop.time() + 6.0
        while (first_bot is None or loop.time() - first_bot < 0.8) and loop.time() < deadline:
            await send(silence)
        assert first_bot is not None, "the bot never answered"
        barge_at = loop.time()
        for i in range(0, len(interjection) - FRAME + 1, FRAME):
            await send(interjection[i : i + FRAME])
        for _ in range(200):  # 4 s more of silence
            await send(silence)
        await ws.close()
        reading.cancel()
    return received, barge_at, last_bot


def _count(frames: list[Frame], cls: type[Frame]) -> int:
    return sum(isinstance(f, cls) for f in frames)


def _after_bot_spoke(frames: list[Frame]) -> list[Frame]:
    """The frames from the bot's first audio on (a user turn start always interrupts,
    so the question itself produces one InterruptionFrame before the bot speaks)."""
    first = next(i for i, f in enumerate(frames) if isinstance(f, TTSAudioRawFrame))
    return frames[first:]


async def _run(interjection: bytes) -> tuple[Server, int, float, float | None]:
    srv = Server()
    port = await srv.ws.start("127.0.0.1", 0)
    try:
        received, barge_at, last_bot = await asyncio.wait_for(
            _call(f"http://127.0.0.1:{port}/ws", interjection), 30
        )
        await asyncio.wait_for(_until(lambda: srv.tasks[0].has_finished()), 10)
    finally:
        await srv.ws.stop()
    return srv, received, barge_at, last_bot


async def _until(pred: Any) -> None:
    while not pred():  # noqa: ASYNC110 - bounded by the caller's wait_for
        await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_barge_in_with_real_speech_interrupts_once_and_stops_bot_audio() -> None:
    interjection = _wav("utterance_booking.wav")[int(0.45 * RATE) * 2 :]  # speech starts at once
    srv, received, barge_at, last_bot = await _run(interjection)
    frames = srv.captures[0].frames
    assert _count(frames, UserStartedSpeakingFrame) == 2  # the question, then the barge-in
    frames = _after_bot_spoke(frames)
    assert _count(frames, InterruptionFrame) == 1
    assert _count(frames, BotSpeechPauseFrame) == 1
    assert received < BOT_SECS * RATE * 2 * 0.8, "the bot's answer must be cut short"
    assert last_bot is not None and last_bot - barge_at < 1.5, "bot audio went on after the barge-in"


@pytest.mark.slow
async def test_backchannel_pauses_then_resumes_without_interruption() -> None:
    backchannel = _wav("backchannel_uhhuh.wav")[int(0.45 * RATE) * 2 :]
    srv, received, _, _ = await _run(backchannel)
    frames = srv.captures[0].frames
    assert _count(frames, UserStartedSpeakingFrame) == 1  # only the question
    frames = _after_bot_spoke(frames)
    assert _count(frames, InterruptionFrame) == 0
    assert _count(frames, BotSpeechPauseFrame) == 1 and _count(frames, BotSpeechResumeFrame) == 1
    assert received == int(BOT_SECS * RATE) * 2, "every byte of the answer must still arrive"
