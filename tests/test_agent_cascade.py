"""The pair around the real service bases and output transport: a tool call, a reply, a barge-in.

user half → LLMService (scripted chunks) → TTSService (word timestamps ahead of audio) →
output transport (paced on the virtual clock) → assistant half. Asserted as the final context.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from flowcat.agent import LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import (
    EndFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.frames import (
    LLMContext as FramesContext,
)
from flowcat.services import (
    FunctionCallParams,
    LLMChunk,
    LLMService,
    LLMTextDelta,
    LLMToolCallDelta,
    TTSAudio,
    TTSChunk,
    TTSService,
    TTSWords,
)
from flowcat.testing import run_virtual
from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies
from test_transport_support import Harness, RecordingOutput

RATE = 16000
WORD_SECS = 0.25


class ScriptLLM(LLMService):
    """Answers each context with the next script of chunks."""

    def __init__(self, scripts: list[list[Any]]) -> None:
        super().__init__()
        self.scripts = scripts
        self.seen: list[list[Any]] = []

    async def run_inference(self, context: FramesContext) -> AsyncGenerator[LLMChunk, None]:
        self.seen.append(list(context.messages))
        for item in self.scripts.pop(0):
            yield item


class WordTTS(TTSService):
    """Timestamps for the whole unit first, then 250 ms of audio per word (a socket TTS's order)."""

    def __init__(self) -> None:
        super().__init__(sample_rate=RATE)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        words = text.split()
        yield TTSWords([(w, i * WORD_SECS) for i, w in enumerate(words)])
        for _ in words:
            await asyncio.sleep(0.01)
            yield TTSAudio(b"\x10\x00" * int(RATE * WORD_SECS))


def _user_says(text: str) -> list[Any]:
    return [
        VADUserStartedSpeakingFrame(),
        TranscriptionFrame(text=text, user_id="u", timestamp=""),
        VADUserStoppedSpeakingFrame(),
    ]


def test_tool_call_reply_and_barge_in_end_in_the_context_as_heard() -> None:
    async def main() -> None:
        ctx = LLMContext([{"role": "system", "content": "You are a weather bot."}])
        pair = LLMContextAggregatorPair(
            ctx,
            user_params=LLMUserAggregatorParams(
                user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(timeout=0.2)])
            ),
        )
        llm = ScriptLLM(
            [
                [
                    LLMToolCallDelta(0, id="call_1", name="get_weather"),
                    LLMToolCallDelta(0, arguments='{"city":"Paris"}'),
                ],
                [LLMTextDelta("It is sunny."), LLMTextDelta(" Enjoy!")],
                [LLMTextDelta("Tomorrow it will rain all day long in Paris.")],
                [LLMTextDelta("Okay.")],
            ]
        )

        async def get_weather(params: FunctionCallParams) -> None:
            await params.result_callback({"sky": "sunny"})

        llm.register_function("get_weather", get_weather)
        async with Harness([pair.user(), llm, WordTTS(), RecordingOutput(), pair.assistant()]) as h:
            for f in _user_says("Weather in Paris?"):
                await h.task.queue_frame(f)
            await asyncio.sleep(3.0)  # tool call, rerun, "It is sunny. Enjoy!" played in full
            for f in _user_says("And tomorrow?"):
                await h.task.queue_frame(f)
            await asyncio.sleep(0.3 + 0.25 * 3 + 0.1)  # turn ends, the reply starts; ~3 words out
            await h.task.queue_frame(VADUserStartedSpeakingFrame())
            await asyncio.sleep(0.7)  # long enough to barge in
            await h.task.queue_frame(TranscriptionFrame(text="Stop.", user_id="u", timestamp=""))
            await h.task.queue_frame(VADUserStoppedSpeakingFrame())
            await asyncio.sleep(2.0)
            await h.task.queue_frame(EndFrame())
            await h.finish()
        roles = [(m["role"], m.get("content")) for m in ctx.messages]
        assert roles[:6] == [
            ("system", "You are a weather bot."),
            ("user", "Weather in Paris?"),
            ("assistant", None),  # the tool call
            ("tool", '{"sky": "sunny"}'),
            ("assistant", "It is sunny. Enjoy!"),
            ("user", "And tomorrow?"),
        ]
        cut = ctx.messages[6]["content"]
        # Only the words heard: ~1 s of the reply went out before the barge-in paused it.
        assert cut.startswith("Tomorrow") and 3 <= len(cut.split()) <= 5, cut
        assert ctx.messages[7:] == [
            {"role": "user", "content": "Stop."},
            {"role": "assistant", "content": "Okay."},
        ]
        assert len(llm.seen) == 4

    run_virtual(main())
