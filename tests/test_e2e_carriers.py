"""End to end, per carrier: a scripted carrier on 127.0.0.1 talks to the real server.

The client does the carrier's handshake and streams a recorded utterance in real
time as the carrier's media messages, then silence. The call's pipeline (a test
app) answers when the user stops speaking with 3 s of a 440 Hz tone pushed at once
as OutputAudioRawFrames; the server's transport must release it paced at real
time. When the client speaks again over the bot, the app interrupts (an
InterruptionFrame), and the server must send the carrier's clear message and no
more bot audio. Carrier wire shapes come from the serializer conformance specs.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from _helpers import require
from flowcat.audio import StreamResampler, tone
from flowcat.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from flowcat.runtime import FrameDirection, FrameProcessor
from flowcat.server import CallInfo, ServerConfig, create_app

conformance = require("test_serializer_conformance")
SPECS = {s.name: s for s in conformance.SPECS}
ENCODE, DECODE = conformance.ENCODE, conformance.DECODE

SPEECH = Path(__file__).parent / "fixtures" / "speech" / "backchannel_uhhuh.wav"
BOT_SECS = 3.0
BOT_HZ = 440.0
BARGE_AFTER = 0.8  # seconds of bot audio heard before the caller talks over it


def _utterance(rate: int) -> bytes:
    """The recorded utterance (or a tone burst) as PCM16 at ``rate``."""
    if SPEECH.exists():
        with wave.open(str(SPEECH)) as w:
            src_rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    else:
        src_rate, pcm = 16000, tone(300.0, 0.8, 16000, 0.3)
    if src_rate == rate:
        return pcm
    rs = StreamResampler(src_rate, rate)
    return rs.resample(pcm) + rs.flush()


def _dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-12)) if len(x) else -120.0


class ScriptedBot(FrameProcessor):
    """Answers the first utterance with a tone; interrupts itself when the user talks over it."""

    def __init__(self) -> None:
        super().__init__(name="ScriptedBot")
        self.heard_speech = False
        self.silent = 0
        self.loud = 0
        self.speaking_until = 0.0
        self.answered = False
        self.interrupted = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            return
        loud = _dbfs(frame.audio) > -40.0
        now = time.monotonic()
        if not self.answered:
            if loud:
                self.heard_speech, self.silent = True, 0
            elif self.heard_speech:
                self.silent += 1
                if self.silent * (len(frame.audio) / 2 / frame.sample_rate) >= 0.3:
                    self.answered = True
                    self.speaking_until = now + BOT_SECS
                    rate = 24000
                    audio = tone(BOT_HZ, BOT_SECS, rate, 0.4)
                    step = rate * 2 // 50
                    for i in range(0, len(audio), step):
                        await self.push_frame(
                            OutputAudioRawFrame(audio=audio[i : i + step], sample_rate=rate)
                        )
        elif not self.interrupted and now < self.speaking_until:
            self.loud = self.loud + 1 if loud else 0
            if self.loud >= 3:
                self.interrupted = True
                await self.broadcast_interruption()


BOTS: list[ScriptedBot] = []


def bot_app(call: CallInfo) -> list[FrameProcessor]:
    bot = ScriptedBot()
    BOTS.append(bot)
    return [bot]


@pytest.mark.parametrize("carrier", sorted(SPECS))
async def test_carrier_call_end_to_end(carrier: str) -> None:
    spec = SPECS[carrier]
    BOTS.clear()
    cfg = ServerConfig(app=bot_app, public_url="https://bot.example.test", verify_signatures=False)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        await _scenario(client, spec)
    finally:
        await client.close()


async def _scenario(client: TestClient, spec: Any) -> None:
    rate, codec = spec.rate, spec.codec
    frame_bytes = rate * 2 // 50
    speech = _utterance(rate)
    quiet = bytes(frame_bytes)
    ws = await client.ws_connect(f"/{spec.name}/ws")
    for msg in spec.handshake:
        await ws.send_str(msg) if isinstance(msg, str) else await ws.send_bytes(msg)

    arrivals: list[tuple[float, int]] = []  # (time, bytes of PCM16) per bot audio message
    bot_pcm = bytearray()
    cleared_at: list[float] = []
    after_clear = 0
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal after_clear
        async for msg in ws:
            data = msg.data
            if isinstance(data, str) and (
                data == spec.clear or ("barge_in" in (spec.clear or "") and "barge_in" in data)
            ):
                cleared_at.append(loop.time())
                continue
            payload = spec.media_out(data)
            if not payload:
                continue
            pcm = DECODE[codec](payload)
            if cleared_at:
                after_clear += 1
            arrivals.append((loop.time(), len(pcm)))
            bot_pcm.extend(pcm)
        done.set()

    read_task = asyncio.create_task(reader())

    def heard() -> float:
        return sum(n for _, n in arrivals) / 2 / rate

    async def stream(pcm: bytes, until: Any) -> None:
        """Send ``pcm`` (then silence) in 20 ms frames at real time until ``until()`` or 8 s."""
        t0 = loop.time()
        for k in range(400):
            chunk = pcm[k * frame_bytes : (k + 1) * frame_bytes] if k * frame_bytes < len(pcm) else quiet
            if len(chunk) < frame_bytes:
                chunk += bytes(frame_bytes - len(chunk))
            out = spec.media_in(ENCODE[codec](chunk))
            await ws.send_str(out) if isinstance(out, str) else await ws.send_bytes(out)
            if until():
                return
            await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))
        raise AssertionError("scenario did not progress within 8 s")

    # 1. The caller speaks, then stays quiet until the bot has talked for BARGE_AFTER seconds.
    await stream(speech, lambda: heard() >= BARGE_AFTER)
    bot = BOTS[0]
    assert bot.answered and not bot.interrupted
    # Paced at real time: the first BARGE_AFTER s of bot audio took about that long to arrive.
    t_first = arrivals[0][0]
    span = loop.time() - t_first
    assert span >= BARGE_AFTER - 0.25, f"bot audio arrived too fast: {heard():.2f} s in {span:.2f} s"
    for t, _ in arrivals:
        sent_before = sum(n for tt, n in arrivals if tt < t) / 2 / rate
        assert sent_before <= (t - t_first) + 0.3, "a message ran ahead of real time"
    # 2. The caller talks over the bot: the server clears the carrier's buffer and stops the audio.
    await stream(speech, lambda: bool(cleared_at))
    assert bot.interrupted
    await asyncio.sleep(0.3)
    assert after_clear == 0, "bot audio after the clear message"
    total = heard()
    assert BARGE_AFTER <= total < BOT_SECS - 0.5, f"{total:.2f} s of bot audio"
    # The bot audio is the 440 Hz tone, at the carrier's rate and codec.
    x = np.frombuffer(bytes(bot_pcm[: rate * 2 // 2]), dtype="<i2").astype(np.float64)
    peak = np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * rate / len(x)
    assert abs(peak - BOT_HZ) < 10, peak
    await ws.close()
    await asyncio.wait_for(done.wait(), 5.0)
    read_task.cancel()
