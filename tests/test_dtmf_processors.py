"""DTMF processors: in-band detector, tone injector, aggregator (pipecat-compatible sequences)."""

from __future__ import annotations

import asyncio

import numpy as np

from flowcat import FrameDirection, FrameProcessor, Pipeline, PipelineParams
from flowcat.audio.dtmf import (
    DTMFAggregator,
    DTMFToneGenerator,
    DTMFToneInjector,
    GoertzelDTMFDetector,
    InbandDTMFDetector,
)
from flowcat.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    KeypadEntry,
    OutputAudioRawFrame,
    OutputDTMFFrame,
    OutputDTMFUrgentFrame,
    TextFrame,
    TranscriptionFrame,
)
from flowcat.testing import SleepFrame, run_test, run_virtual

K = KeypadEntry


def dtmf(*keys: str) -> list[InputDTMFFrame]:
    return [InputDTMFFrame(button=K(k)) for k in keys]


def texts(frames: list[Frame]) -> list[str]:
    return [f.text for f in frames if isinstance(f, TranscriptionFrame)]


# ------------------------------------------------------------------ InbandDTMFDetector


def test_inband_detector_passes_audio_and_pushes_keys() -> None:
    rate = 8000
    pcm = DTMFToneGenerator(rate).sequence("12#") + bytes(2 * rate // 10)
    step = 2 * rate * 20 // 1000
    audio = [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate) for i in range(0, len(pcm), step)]
    proc = InbandDTMFDetector()
    down, _ = run_virtual(run_test(proc, frames_to_send=audio))
    assert [f for f in down if isinstance(f, InputAudioRawFrame)] == audio  # unchanged, same objects
    keys = [f.button.value for f in down if isinstance(f, InputDTMFFrame)]
    assert keys == ["1", "2", "#"]
    # Each key follows the audio frame that completed it.
    first_key = next(i for i, f in enumerate(down) if isinstance(f, InputDTMFFrame))
    assert isinstance(down[first_key - 1], InputAudioRawFrame)
    assert proc.detector is not None and proc.detector.sample_rate == rate


def test_inband_detector_stereo_16k() -> None:
    rate = 16000
    mono = np.frombuffer(DTMFToneGenerator(rate).sequence("9*"), dtype="<i2")
    stereo = np.repeat(mono, 2).astype("<i2").tobytes()
    step = 4 * rate * 20 // 1000
    audio = [
        InputAudioRawFrame(audio=stereo[i : i + step], sample_rate=rate, num_channels=2)
        for i in range(0, len(stereo), step)
    ]
    down, _ = run_virtual(run_test(InbandDTMFDetector(), frames_to_send=audio))
    assert [f.button.value for f in down if isinstance(f, InputDTMFFrame)] == ["9", "*"]


# ------------------------------------------------------------------ DTMFToneInjector


def test_tone_injector_turns_dtmf_into_audio_at_output_rate() -> None:
    frames = [OutputDTMFFrame(button=K.SEVEN), TextFrame(text="x"), OutputDTMFUrgentFrame(button=K.POUND)]
    params = PipelineParams(audio_out_sample_rate=16000)
    down, _ = run_virtual(
        run_test(
            DTMFToneInjector(),
            frames_to_send=frames,
            expected_down_frames=[OutputAudioRawFrame, TextFrame, OutputAudioRawFrame],
            params=params,
        )
    )
    a1, a2 = (f for f in down if isinstance(f, OutputAudioRawFrame))
    assert a1.sample_rate == 16000 and len(a1.audio) == 2 * 16000 * 160 // 1000
    det = GoertzelDTMFDetector(16000)
    keys = det.process(a1.audio + a2.audio + bytes(3200))
    assert [k.value for k in keys] == ["7", "#"]


def test_tone_injector_chunks() -> None:
    down, _ = run_virtual(
        run_test(
            DTMFToneInjector(chunk_ms=20),
            frames_to_send=[OutputDTMFFrame(button=K.ONE)],
            params=PipelineParams(audio_out_sample_rate=8000),
        )
    )
    audio = [f for f in down if isinstance(f, OutputAudioRawFrame)]
    assert len(audio) == 8 and all(len(f.audio) == 320 for f in audio)
    assert not any(isinstance(f, OutputDTMFFrame) for f in down)


# ------------------------------------------------------------------ DTMFAggregator


def test_aggregator_flushes_on_pound() -> None:
    down, up = run_virtual(
        run_test(
            DTMFAggregator(),
            frames_to_send=dtmf("1", "2", "3", "#"),
            expected_down_frames=[
                InputDTMFFrame,
                InterruptionFrame,
                InputDTMFFrame,
                InputDTMFFrame,
                InputDTMFFrame,
                TranscriptionFrame,
            ],
            expected_up_frames=[InterruptionFrame],
        )
    )
    (t,) = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert t.text == "DTMF: 123#" and t.finalized and t.user_id == ""
    assert t.timestamp.endswith("+00:00")


def test_aggregator_timeout_flush_virtual_clock() -> None:
    down, _ = run_virtual(
        run_test(
            DTMFAggregator(timeout=2.0),
            frames_to_send=[*dtmf("1", "2"), SleepFrame(sleep=1.9), *dtmf("4"), SleepFrame(sleep=2.5)]
            + [*dtmf("3"), SleepFrame(sleep=5.0)],
            expected_down_frames=[
                InputDTMFFrame,
                InterruptionFrame,
                InputDTMFFrame,
                InputDTMFFrame,  # 1.9 s < timeout: re-armed, not flushed yet
                TranscriptionFrame,
                InputDTMFFrame,
                InterruptionFrame,
                TranscriptionFrame,
            ],
        )
    )
    assert texts(down) == ["DTMF: 124", "DTMF: 3"]


def test_aggregator_timeout_measured_from_last_digit() -> None:
    async def main() -> list[float]:
        agg = DTMFAggregator(timeout=2.0)
        loop = asyncio.get_running_loop()
        stamps: list[float] = []

        class Stamp(FrameProcessor):  # records when the flush passes
            async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
                await super().process_frame(frame, direction)
                if isinstance(frame, TranscriptionFrame):
                    stamps.append(loop.time())
                await self.push_frame(frame, direction)

        t0 = loop.time()
        await run_test(
            Pipeline([agg, Stamp()]),
            frames_to_send=[*dtmf("1"), SleepFrame(sleep=1.5), *dtmf("2"), SleepFrame(sleep=3.0)],
        )
        return [s - t0 for s in stamps]

    (at,) = run_virtual(main())
    assert 3.5 <= at < 3.6  # 1.5 s + 2.0 s after the last digit


def test_aggregator_end_and_cancel_flush_before_passing_on() -> None:
    down, _ = run_virtual(
        run_test(
            DTMFAggregator(timeout=10.0),
            frames_to_send=[*dtmf("1", "2"), SleepFrame(sleep=0.5), EndFrame()],
            expected_down_frames=[
                InputDTMFFrame,
                InterruptionFrame,
                InputDTMFFrame,
                TranscriptionFrame,
                EndFrame,
            ],
            send_end_frame=False,
        )
    )
    assert texts(down) == ["DTMF: 12"]
    down, _ = run_virtual(
        run_test(
            DTMFAggregator(timeout=10.0), frames_to_send=[*dtmf("9"), CancelFrame()], send_end_frame=False
        )
    )
    assert texts(down) == ["DTMF: 9"]
    assert isinstance(down[-1], CancelFrame)


def test_aggregator_interruption_clears_nothing() -> None:
    down, _ = run_virtual(
        run_test(
            DTMFAggregator(),
            frames_to_send=[*dtmf("1", "2"), InterruptionFrame(), *dtmf("3", "#")],
            expected_down_frames=[
                InputDTMFFrame,
                InterruptionFrame,
                InputDTMFFrame,
                InterruptionFrame,
                InputDTMFFrame,
                InputDTMFFrame,
                TranscriptionFrame,
            ],
        )
    )
    assert texts(down) == ["DTMF: 123#"]


def test_aggregator_options_and_multiple_sequences() -> None:
    down, up = run_virtual(
        run_test(
            DTMFAggregator(
                timeout=0.2, termination_digit="*", prefix="Menu: ", interrupt_on_first_digit=False
            ),
            frames_to_send=[
                *dtmf("1", "#", "*"),
                SleepFrame(sleep=0.1),
                *dtmf("4", "5"),
                SleepFrame(sleep=1.0),
            ],
            expected_down_frames=[InputDTMFFrame] * 3
            + [TranscriptionFrame]
            + [InputDTMFFrame] * 2
            + [TranscriptionFrame],
            expected_up_frames=[],
        )
    )
    assert texts(down) == ["Menu: 1#*", "Menu: 45"]


def test_aggregator_all_keys_and_no_spurious_flush() -> None:
    keys = list("0123456789*ABCD#")
    down, _ = run_virtual(run_test(DTMFAggregator(), frames_to_send=[*dtmf(*keys), SleepFrame(sleep=10.0)]))
    assert texts(down) == ["DTMF: 0123456789*ABCD#"]
