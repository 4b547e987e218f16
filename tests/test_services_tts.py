"""TTSService: frame ordering, aggregation, word timestamps, interruption, context ids.

Reproduces pipecat's test_tts_frame_ordering.py behaviours:
AggregatedText → TTSStarted → TTSAudio+ → TTSStopped → the next frame, per TTSSpeakFrame;
TTSTextFrames before LLMFullResponseEndFrame (push_text_frames); a second response's
start never races ahead of the first's TTSStoppedFrame; word timestamps give one
TTSTextFrame per word with increasing pts, before the audio they belong to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from flowcat.errors import ServiceStatusError
from flowcat.frames import (
    AggregatedTextFrame,
    DataFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TextFrame,
    TTFBMetricsData,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUsageMetricsData,
    frame_dataclass,
)
from flowcat.runtime import PipelineParams
from flowcat.services import (
    AudioContexts,
    Backoff,
    SentenceAggregator,
    TTSAudio,
    TTSChunk,
    TTSService,
    TTSWords,
)
from flowcat.testing import SleepFrame, run_test, run_virtual

AUDIO = b"\x01\x02" * 160


@frame_dataclass
class FooFrame(DataFrame):
    label: str = ""


class HttpLikeTTS(TTSService):
    """Yields two audio chunks per unit (optionally after a delay, optionally with words)."""

    def __init__(self, delay: float = 0.0, words: bool = False, failures: list[Exception] | None = None,
                 **kw: Any) -> None:
        kw.setdefault("retry", Backoff(initial=0.01, max_attempts=3))
        super().__init__(sample_rate=16000, **kw)
        self.delay = delay
        self.words = words
        self.failures = failures or []
        self.spoken: list[str] = []

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[TTSChunk]:
        if self.failures:
            raise self.failures.pop(0)
        self.spoken.append(text)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.words:
            yield TTSWords([(w, i * 0.005) for i, w in enumerate(text.split())])
        yield TTSAudio(AUDIO)
        yield AUDIO[:3]  # odd sizes are re-framed on sample boundaries
        yield AUDIO[3:]


def kinds(frames: list[Frame], *only: type[Frame]) -> list[str]:
    return [type(f).__name__ for f in frames
            if (type(f) in only if only else True) and not isinstance(f, MetricsFrame)]


ORDER = (AggregatedTextFrame, TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame, FooFrame,
         LLMFullResponseStartFrame, LLMFullResponseEndFrame)


async def test_speak_frames_each_get_a_complete_group_before_the_next_frame() -> None:
    tts = HttpLikeTTS(delay=0.01)
    down, _ = await run_test(tts, frames_to_send=[
        TTSSpeakFrame("test 1"), FooFrame("1"), TTSSpeakFrame("test 2"), FooFrame("2"),
    ])
    group = ["AggregatedTextFrame", "TTSStartedFrame"] + ["TTSAudioRawFrame"] * 3 + [
        "TTSStoppedFrame", "FooFrame"]
    assert kinds(down, *ORDER) == group * 2
    assert [f.label for f in down if isinstance(f, FooFrame)] == ["1", "2"]
    starts = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
    assert len(set(starts)) == 2  # one context per TTSSpeakFrame
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert all(len(f.audio) % 2 == 0 for f in audio)
    assert b"".join(f.audio for f in audio) == (AUDIO * 2) * 2  # 3 chunks per unit, re-framed
    assert {f.context_id for f in audio} == set(starts)


async def test_llm_response_is_one_utterance_and_end_follows_all_text() -> None:
    tts = HttpLikeTTS()
    down, _ = await run_test(tts, frames_to_send=[
        LLMFullResponseStartFrame(), LLMTextFrame("Hello "), LLMTextFrame("there. How"),
        LLMTextFrame(" are you?"), LLMFullResponseEndFrame(),
    ])
    assert tts.spoken == ["Hello there.", "How are you?"]
    assert kinds(down, *ORDER, TTSTextFrame) == [
        "LLMFullResponseStartFrame",
        "AggregatedTextFrame", "TTSStartedFrame", *["TTSAudioRawFrame"] * 3, "TTSTextFrame",
        "AggregatedTextFrame", *["TTSAudioRawFrame"] * 3, "TTSTextFrame",
        "TTSStoppedFrame", "LLMFullResponseEndFrame",
    ]
    assert [f.text for f in down if isinstance(f, TTSTextFrame)] == ["Hello there.", "How are you?"]
    assert not [f for f in down if isinstance(f, LLMTextFrame)]  # consumed, spoken instead


async def test_second_response_does_not_race_ahead_of_the_first() -> None:
    tts = HttpLikeTTS(delay=0.02)
    down, _ = await run_test(tts, frames_to_send=[
        LLMFullResponseStartFrame(), TextFrame("Hello there."), LLMFullResponseEndFrame(),
        LLMFullResponseStartFrame(), TextFrame("World."), LLMFullResponseEndFrame(),
    ])
    assert kinds(down, LLMFullResponseStartFrame, TTSStoppedFrame, LLMFullResponseEndFrame) == [
        "LLMFullResponseStartFrame", "TTSStoppedFrame", "LLMFullResponseEndFrame",
    ] * 2


async def test_push_text_frames_off_pushes_no_text() -> None:
    tts = HttpLikeTTS(push_text_frames=False)
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame("Hi.")])
    assert not [f for f in down if isinstance(f, TTSTextFrame)]


async def test_word_timestamps_give_a_text_frame_per_word_before_its_audio() -> None:
    tts = HttpLikeTTS(words=True)
    down, _ = await run_test(tts, frames_to_send=[
        LLMFullResponseStartFrame(), TextFrame("hello world. Again now"), LLMFullResponseEndFrame(),
    ])
    words = [f for f in down if isinstance(f, TTSTextFrame)]
    assert [w.text for w in words] == ["hello", "world.", "Again", "now"]
    assert all(w.aggregated_by == "word" for w in words)
    pts = [w.pts for w in words]
    assert pts == sorted(pts) and len(set(pts)) == 4
    # The second unit's words are offset by the first unit's audio (640 bytes @16 kHz = 20 ms).
    assert pts == [0, 5_000_000, 20_000_000, 25_000_000]
    first_audio = next(i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame))
    assert down.index(words[0]) < first_audio


async def test_skip_tts_text_passes_through_unspoken() -> None:
    tts = HttpLikeTTS()
    f = TextFrame("not spoken.", skip_tts=True)
    down, _ = await run_test(tts, frames_to_send=[f])
    assert tts.spoken == [] and any(x is f for x in down)


def test_interruption_stops_audio_and_drops_pending_text() -> None:
    async def main() -> None:
        tts = HttpLikeTTS(delay=1.0)
        down, _ = await run_test(tts, frames_to_send=[
            LLMFullResponseStartFrame(), TextFrame("First sentence. Second"), SleepFrame(0.5),
            InterruptionFrame(), TextFrame("Fresh."), LLMFullResponseEndFrame(), SleepFrame(2.0),
        ])
        assert tts.spoken == ["First sentence.", "Fresh."]
        audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
        starts = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
        assert len(starts) == 2
        assert {f.context_id for f in audio} == {starts[1]}  # none of the interrupted context
        assert kinds(down, TTSStoppedFrame, LLMFullResponseEndFrame) == [
            "TTSStoppedFrame", "LLMFullResponseEndFrame"]

    run_virtual(main())


def test_metrics_ttfb_and_characters() -> None:
    async def main() -> None:
        tts = HttpLikeTTS(delay=0.2)
        tts.model_name = "voice-1"
        down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame("Hello.")],
                                 params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
        data = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
        ttfb = [d.value for d in data if isinstance(d, TTFBMetricsData)]
        chars = [d.value for d in data if isinstance(d, TTSUsageMetricsData)]
        assert len(ttfb) == 1 and abs(ttfb[0] - 0.2) < 1e-6
        assert chars == [6]

    run_virtual(main())


def test_retryable_failure_is_retried_and_fatal_one_reported() -> None:
    async def main() -> None:
        tts = HttpLikeTTS(failures=[ServiceStatusError("busy", 503)])
        down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame("One.")])
        assert tts.spoken == ["One."] and not [f for f in up if isinstance(f, ErrorFrame)]

        tts = HttpLikeTTS(failures=[ServiceStatusError("bad voice", 400)])
        down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame("One."), FooFrame("after")])
        assert tts.spoken == []
        assert kinds(down, *ORDER) == [
            "AggregatedTextFrame", "TTSStartedFrame", "TTSStoppedFrame", "FooFrame"]
        assert [f for f in up if isinstance(f, ErrorFrame) and "bad voice" in f.error]

    run_virtual(main())


class WsLikeTTS(TTSService):
    """A multiplexed socket: a receive loop delivers audio by context id, and keeps
    sending audio for a context after it was cancelled (pipecat #3077)."""

    def __init__(self) -> None:
        super().__init__(sample_rate=16000)
        self.contexts = AudioContexts()
        self.cancelled: list[str] = []

    async def _server(self, ctx: str) -> None:
        for _ in range(20):
            await asyncio.sleep(0.1)
            self.contexts.put(ctx, TTSAudio(AUDIO))  # keeps coming after a cancel
        self.contexts.finish(ctx)

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[TTSChunk]:
        self.contexts.open(context_id)
        asyncio.get_running_loop().create_task(self._server(context_id))
        async for item in self.contexts.items(context_id):
            yield item

    async def on_context_interrupted(self, context_id: str) -> None:
        self.cancelled.append(context_id)
        self.contexts.cancel(context_id)


def test_websocket_audio_of_an_interrupted_context_is_never_played() -> None:
    async def main() -> None:
        tts = WsLikeTTS()
        down, _ = await run_test(tts, frames_to_send=[
            TTSSpeakFrame("Long answer."), SleepFrame(0.55), InterruptionFrame(),
            TTSSpeakFrame("Short."), SleepFrame(5.0),
        ])
        starts = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
        old, new = starts
        assert tts.cancelled == [old]
        interruption = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
        after = [f for f in down[interruption:] if isinstance(f, TTSAudioRawFrame)]
        assert after and all(f.context_id == new for f in after)
        assert tts.contexts.stale_dropped > 0  # the old context's late audio was dropped

    run_virtual(main())


def test_sentence_aggregator_rules() -> None:
    def run(chunks: list[str]) -> list[str]:
        a = SentenceAggregator()
        out = [s for c in chunks for s in a.aggregate(c)]
        return out + [a.flush()]

    assert run(["Mr. Smith paid $3.50 for it! ", "Really? Yes."]) == [
        "Mr. Smith paid $3.50 for it!", "Really?", "Yes."]
    assert run(["See e.g. example.com. Then go."]) == ["See e.g. example.com.", "Then go."]
    assert run(["1. First item\n2. Second item. Done"]) == ["1. First item\n2. Second item.", "Done"]
    assert run(["It costs approx. five. J. R. R. Tolkien wrote it."]) == [
        "It costs approx. five.", "J. R. R. Tolkien wrote it."]
    assert run(["你好。", "再见！ok"]) == ["你好。", "再见！", "ok"]
    assert run(['He said "stop." Then left.']) == ['He said "stop."', "Then left."]
    # A "." followed by a space waits for the next word before deciding.
    a = SentenceAggregator()
    assert a.aggregate("Hello. ") == [] and a.aggregate("World") == ["Hello."]


def test_interruption_before_the_synthesis_task_runs_does_not_leave_the_service_paused() -> None:
    # The synthesis task is cancelled before its first step: the frames held behind it
    # must still be released (pipecat's test_no_deadlock_on_interrupt_* in spirit).
    async def main() -> None:
        tts = HttpLikeTTS()
        down, _ = await run_test(tts, frames_to_send=[
            TTSSpeakFrame("Never spoken."), InterruptionFrame(), FooFrame("kept?"), TTSSpeakFrame("Spoken."),
        ], timeout=10.0)
        assert tts.spoken == ["Spoken."]
        assert [f.label for f in down if isinstance(f, FooFrame)] == ["kept?"]

    run_virtual(main())
