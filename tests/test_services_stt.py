"""STTService and SegmentedSTTService: audio in, transcripts out, mute, TTFB, reconnect.

Reproduces pipecat's stt_service behaviours: audio passes through; interim and final
results become InterimTranscription/Transcription frames; STTMuteFrame stops feeding
the engine; a segmented engine gets the speech between the VAD boundaries as one WAV
(with a little audio from before the start); TTFB runs from the end of speech to the
final transcript.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from typing import Any

from flowcat.errors import ServiceConnectionError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    MetricsFrame,
    STTMuteFrame,
    TranscriptionFrame,
    TTFBMetricsData,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import PipelineParams
from flowcat.services import Backoff, SegmentedSTTService, STTService
from flowcat.testing import SleepFrame, run_test, run_virtual

RATE = 16000


def audio(value: int, ms: int = 20) -> InputAudioRawFrame:
    return InputAudioRawFrame(bytes([value, 0]) * (RATE * ms // 1000), RATE)


class EchoStreamingSTT(STTService):
    """Transcribes each finalize() as the count of bytes received since the last one."""

    def __init__(self, fail_sends: int = 0, **kw: Any) -> None:
        super().__init__(sample_rate=RATE, retry=Backoff(initial=0.01, max_attempts=3), **kw)
        self.received = bytearray()
        self.connects = 0
        self.fail_sends = fail_sends
        self.delay = 0.3

    async def connect(self) -> None:
        self.connects += 1

    async def send_audio(self, audio: bytes) -> None:
        if self.fail_sends:
            self.fail_sends -= 1
            raise ServiceConnectionError("socket closed")
        self.received += audio
        await self.push_transcription("partial", final=False)

    async def finalize(self) -> None:
        n = len(self.received)
        self.received.clear()
        await asyncio.sleep(self.delay)
        await self.push_transcription(f"heard {n} bytes", final=True, language="en")


def of(frames: list[Frame], t: type[Frame]) -> list[Any]:
    return [f for f in frames if isinstance(f, t)]


def test_streaming_audio_passes_through_and_results_are_pushed() -> None:
    async def main() -> None:
        stt = EchoStreamingSTT()
        frames: list[Frame] = [VADUserStartedSpeakingFrame()]
        frames += [audio(1) for _ in range(5)]
        frames += [SleepFrame(0.05), VADUserStoppedSpeakingFrame(), SleepFrame(1.0)]
        down, _ = await run_test(stt, frames_to_send=frames,
                                 params=PipelineParams(enable_metrics=True))
        assert len(of(down, InputAudioRawFrame)) == 5
        assert of(down, InterimTranscriptionFrame)
        finals = of(down, TranscriptionFrame)
        assert [f.text for f in finals] == [f"heard {5 * 640} bytes"]
        assert finals[0].finalized and finals[0].language == "en" and finals[0].timestamp
        ttfb = [d.value for f in of(down, MetricsFrame) for d in f.data if isinstance(d, TTFBMetricsData)]
        assert len(ttfb) == 1 and abs(ttfb[0] - 0.3) < 1e-6

    run_virtual(main())


def test_mute_stops_feeding_the_engine() -> None:
    async def main() -> None:
        stt = EchoStreamingSTT()
        stt.delay = 0.0
        frames: list[Frame] = [audio(1), STTMuteFrame(mute=True), audio(2), audio(2),
                               STTMuteFrame(mute=False), audio(3), SleepFrame(0.05),
                               VADUserStoppedSpeakingFrame(), SleepFrame(0.1)]
        down, _ = await run_test(stt, frames_to_send=frames)
        assert [f.text for f in of(down, TranscriptionFrame)] == [f"heard {2 * 640} bytes"]
        assert len(of(down, InputAudioRawFrame)) == 4  # muted audio still passes on

    run_virtual(main())


def test_failed_send_reconnects_and_resends() -> None:
    async def main() -> None:
        stt = EchoStreamingSTT(fail_sends=1)
        stt.delay = 0.0
        down, up = await run_test(stt, frames_to_send=[audio(1), SleepFrame(0.5),
                                                       VADUserStoppedSpeakingFrame(), SleepFrame(0.1)])
        assert stt.connects == 2
        assert [f.text for f in of(down, TranscriptionFrame)] == ["heard 640 bytes"]
        assert len(of(up, ErrorFrame)) == 1 and not of(up, ErrorFrame)[0].fatal

    run_virtual(main())


class WavSTT(SegmentedSTTService):
    def __init__(self, **kw: Any) -> None:
        super().__init__(sample_rate=RATE, pre_roll_secs=0.04, **kw)
        self.wavs: list[bytes] = []

    async def run_stt(self, wav: bytes) -> AsyncIterator[str]:
        self.wavs.append(wav)
        await asyncio.sleep(0.2)
        yield f" utterance {len(self.wavs)} "


def pcm_of(wav: bytes) -> tuple[bytes, int]:
    with wave.open(io.BytesIO(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def test_segmented_sends_the_speech_between_vad_boundaries_with_pre_roll() -> None:
    async def main() -> None:
        stt = WavSTT()
        frames: list[Frame] = [audio(9) for _ in range(10)]  # silence before: only 40 ms kept
        frames += [VADUserStartedSpeakingFrame(), audio(1), audio(2), VADUserStoppedSpeakingFrame()]
        frames += [audio(9), SleepFrame(0.5)]
        down, _ = await run_test(stt, frames_to_send=frames, params=PipelineParams(enable_metrics=True))
        assert len(stt.wavs) == 1
        pcm, rate = pcm_of(stt.wavs[0])
        assert rate == RATE
        assert pcm == audio(9).audio * 2 + audio(1).audio + audio(2).audio
        assert [f.text for f in of(down, TranscriptionFrame)] == ["utterance 1"]
        ttfb = [d.value for f in of(down, MetricsFrame) for d in f.data if isinstance(d, TTFBMetricsData)]
        assert len(ttfb) == 1 and abs(ttfb[0] - 0.2) < 1e-6

    run_virtual(main())


def test_segmented_uses_user_turn_frames_without_vad() -> None:
    async def main() -> None:
        stt = WavSTT()
        frames: list[Frame] = [UserStartedSpeakingFrame(), audio(1), UserStoppedSpeakingFrame(),
                               SleepFrame(0.5), UserStartedSpeakingFrame(), audio(2),
                               UserStoppedSpeakingFrame(), SleepFrame(0.5)]
        down, _ = await run_test(stt, frames_to_send=frames)
        assert [pcm_of(w)[0] for w in stt.wavs] == [audio(1).audio, audio(2).audio]
        assert [f.text for f in of(down, TranscriptionFrame)] == ["utterance 1", "utterance 2"]

    run_virtual(main())


class SocketSTT(STTService):
    """A socket engine: connect() starts a receive loop that pushes what the 'server' sends."""

    def __init__(self) -> None:
        super().__init__(sample_rate=RATE)
        self.inbox: asyncio.Queue[str] = asyncio.Queue()

    async def connect(self) -> None:
        self.create_task(self._receive(), "receive")

    async def _receive(self) -> None:
        while True:
            await self.push_transcription(await self.inbox.get(), final=True)

    async def send_audio(self, audio: bytes) -> None:
        if audio[:1] == b"\x07":  # the caller said something: the server will answer
            self.inbox.put_nowait("after the barge-in")


def test_receive_loop_transcripts_survive_interruptions() -> None:
    """The connection outlives turns: a transcript its receive loop pushes after a barge-in
    (an InterruptionFrame, which drops stale output of older generations) reaches the user
    aggregator (regression: every transcript after the first interruption was dropped)."""
    from flowcat.frames import InterruptionFrame

    async def main() -> None:
        stt = SocketSTT()
        frames: list[Frame] = [SleepFrame(0.05), VADUserStartedSpeakingFrame(), InterruptionFrame(),
                               SleepFrame(0.05), audio(7), SleepFrame(0.2), VADUserStoppedSpeakingFrame(),
                               SleepFrame(0.2)]
        down, _ = await run_test(stt, frames_to_send=frames)
        assert [f.text for f in of(down, TranscriptionFrame)] == ["after the barge-in"]

    run_virtual(main())


class RecordingSTT(STTService):
    """Records each send_audio/finalize call in order."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(sample_rate=RATE, **kw)
        self.calls: list[tuple[str, bytes]] = []

    async def send_audio(self, audio: bytes) -> None:
        self.calls.append(("audio", audio))

    async def finalize(self) -> None:
        self.calls.append(("finalize", b""))


def test_audio_is_sent_in_100ms_batches_and_the_rest_before_finalize() -> None:
    async def main() -> None:
        stt = RecordingSTT()
        chunks = [audio(i + 1) for i in range(12)]  # 240 ms in 20 ms packets
        frames: list[Frame] = [VADUserStartedSpeakingFrame()]
        for c in chunks:
            frames += [c, SleepFrame(0.02)]
        frames += [VADUserStoppedSpeakingFrame(), SleepFrame(0.1)]
        down, _ = await run_test(stt, frames_to_send=frames)
        assert len(of(down, InputAudioRawFrame)) == 12  # every packet still passes on
        batch = RATE // 10 * 2
        assert [(kind, len(data)) for kind, data in stt.calls] == [
            ("audio", batch), ("audio", batch), ("audio", 2 * 640), ("finalize", 0)
        ]
        assert b"".join(data for _, data in stt.calls) == b"".join(c.audio for c in chunks)

    run_virtual(main())


def test_audio_batch_secs_zero_sends_every_chunk() -> None:
    async def main() -> None:
        stt = RecordingSTT(audio_batch_secs=0)
        frames: list[Frame] = []
        for i in range(3):
            frames += [audio(i + 1), SleepFrame(0.02)]
        await run_test(stt, frames_to_send=frames)
        assert [len(data) for _, data in stt.calls] == [640, 640, 640]

    run_virtual(main())
