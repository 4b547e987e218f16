"""LLM → TTS in one pipeline: streamed tokens become ordered speech; a barge-in leaves
no stale audio and no stale tool call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from flowcat.frames import (
    FunctionCallCancelFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from flowcat.runtime import Pipeline
from flowcat.services import (
    FunctionCallParams,
    LLMChunk,
    LLMService,
    LLMTextDelta,
    LLMToolCallDelta,
    TTSAudio,
    TTSChunk,
    TTSService,
)
from flowcat.testing import SleepFrame, run_test, run_virtual


class TokenLLM(LLMService):
    def __init__(self, scripts: list[list[Any]]) -> None:
        super().__init__()
        self.scripts = scripts

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        for item in self.scripts.pop(0):
            if isinstance(item, float):
                await asyncio.sleep(item)
            else:
                yield item


class SlowTTS(TTSService):
    def __init__(self) -> None:
        super().__init__(sample_rate=8000)
        self.spoken: list[str] = []

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        self.spoken.append(text)
        for _ in range(3):
            await asyncio.sleep(0.1)
            yield TTSAudio(b"\x00\x00" * 80)


def ctx() -> LLMContextFrame:
    return LLMContextFrame(LLMContext([{"role": "user", "content": "hi"}]))


def test_streamed_tokens_become_ordered_speech() -> None:
    async def main() -> None:
        llm = TokenLLM([[LLMTextDelta(t) for t in ["Hi", " there.", " How", " can I", " help?"]]])
        tts = SlowTTS()
        down, _ = await run_test(Pipeline([llm, tts]), frames_to_send=[ctx(), SleepFrame(2.0)])
        kinds = [type(f).__name__ for f in down
                 if isinstance(f, (LLMFullResponseStartFrame, LLMFullResponseEndFrame, TTSStartedFrame,
                                   TTSStoppedFrame, TTSTextFrame))]
        assert kinds == ["LLMFullResponseStartFrame", "TTSStartedFrame", "TTSTextFrame", "TTSTextFrame",
                         "TTSStoppedFrame", "LLMFullResponseEndFrame"]
        assert tts.spoken == ["Hi there.", "How can I help?"]
        assert len([f for f in down if isinstance(f, TTSAudioRawFrame)]) == 6

    run_virtual(main())


def test_barge_in_leaves_no_stale_audio_and_no_stale_tool_call() -> None:
    async def main() -> None:
        llm = TokenLLM([
            [LLMTextDelta("Let me check. "), LLMTextDelta("One moment please."),
             LLMToolCallDelta(0, "call_1", "lookup", "{}"), 0.5],
            [LLMTextDelta("Sure, go ahead.")],
        ])
        ran: list[str] = []

        async def lookup(params: FunctionCallParams) -> None:
            ran.append("lookup")
            await params.result_callback("found")

        llm.register_function("lookup", lookup)
        tts = SlowTTS()
        down, _ = await run_test(Pipeline([llm, tts]), frames_to_send=[
            ctx(), SleepFrame(0.15), InterruptionFrame(), ctx(), SleepFrame(3.0),
        ])
        cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
        starts = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
        fresh = starts[-1]
        assert all(f.context_id == fresh for f in down[cut:] if isinstance(f, TTSAudioRawFrame))
        assert ran == [] and not [f for f in down if isinstance(f, (FunctionCallResultFrame,
                                                                    FunctionCallCancelFrame))]
        assert tts.spoken[-1] == "Sure, go ahead."

    run_virtual(main())
