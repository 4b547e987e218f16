"""Preemptive generation end to end: turn processor (as the aggregator's base) → LLM → gate.

``_MiniAggregator`` does what the context aggregator must do (the hooks documented in
docs/turns.md): a provisional context on ``_user_turn_speculated``, and at the turn
end no second LLM run when ``confirmed_speculation`` is set. The LLM answers each
context 0.3 s later and stops a generation on ``EagerEndOfTurnCancelFrame``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from flowcat import FrameDirection, FrameProcessor, Pipeline
from flowcat.frames import (
    EagerEndOfTurnCancelFrame,
    Frame,
    LLMContext,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
)
from flowcat.services import (
    FunctionCallParams,
    LLMChunk,
    LLMService,
    LLMTextDelta,
    LLMToolCallDelta,
    ServiceSettings,
)
from flowcat.testing import SleepFrame, run_test, run_virtual
from flowcat.turns import PreemptiveGate, UserTurnProcessor, UserTurnSpeculation
from test_turns_processor import DOWN, E, S, T, _Stamp


class _MiniAggregator(UserTurnProcessor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = LLMContext()
        self.text: list[str] = []

    async def _pass_user_text(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TranscriptionFrame):
            self.text.append(frame.text)

    async def _user_turn_speculated(self, speculation: UserTurnSpeculation) -> None:
        provisional = LLMContext([*self.context.messages, {"role": "user", "content": " ".join(self.text)}])
        await self.push_frame(
            LLMContextFrame(context=provisional, speculation=True, generation_id=speculation.generation_id)
        )

    async def _user_turn_ending(self) -> None:
        self.context.add_message({"role": "user", "content": " ".join(self.text)})
        self.text.clear()
        if self.confirmed_speculation is None:  # nothing answers this turn yet: run the LLM
            await self.push_frame(LLMContextFrame(context=self.context))


class _ScriptedLLM(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, bool]] = []
        self.cancelled = 0
        self._task: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            said = frame.context.messages[-1]["content"]
            self.runs.append((said, frame.speculation))
            self._task = self.create_task(self._answer(said))
            return
        if isinstance(frame, EagerEndOfTurnCancelFrame) and self._task is not None and not self._task.done():
            self.cancelled += 1
            await self.cancel_task(self._task)
        await self.push_frame(frame, direction)

    async def _answer(self, said: str) -> None:
        await asyncio.sleep(0.3)
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(text=f"answer to '{said}'"))
        await self.push_frame(LLMFullResponseEndFrame())


def play(processors: list[Any], out: _Stamp, script: list[tuple[float, Frame]], until: float) -> list[tuple[str, float]]:
    """Send the ``(time, frame)`` script through ``processors`` on the virtual clock until ``until``;
    the LLM texts ``out`` saw, with the time each passed it."""
    frames: list[Frame] = []
    now = 0.0
    for t, f in script:
        frames += [SleepFrame(sleep=t - now), f] if t > now else [f]
        now = max(now, t)
    frames.append(SleepFrame(sleep=until - now))

    async def go() -> list[tuple[str, float]]:
        t0 = asyncio.get_running_loop().time()
        await run_test(Pipeline(processors), frames_to_send=frames)
        return [(f.text, round(t - t0, 3)) for t, f in out.seen if isinstance(f, LLMTextFrame)]

    return run_virtual(go())


def _run(script: list[tuple[float, Frame]], until: float) -> tuple[list[tuple[str, float]], _ScriptedLLM]:
    llm = _ScriptedLLM()
    out = _Stamp(DOWN)
    return play([_MiniAggregator(preemptive_generation=True), llm, PreemptiveGate(), out], out, script, until), llm


def test_confirmed_speculation_is_played_at_the_turn_end_with_one_llm_run() -> None:
    """The answer is ready 0.3 s after the VAD stop but held until the turn ends (E+0.6):
    it leaves at once then — 0.3 s earlier than a run started at the turn end."""
    texts, llm = _run([(0.0, S()), (0.8, T("what time is it")), (1.0, E())], until=3.0)
    assert llm.runs == [("what time is it", True)]
    assert texts == [("answer to 'what time is it'", 1.6)]


def test_user_going_on_discards_the_speculative_answer() -> None:
    """The user resumes before the speculative answer is out: the LLM is stopped, nothing
    of it is played; the second speculation (full text) is the one played."""
    script = [(0.0, S()), (0.8, T("book a table")), (1.0, E()), (1.1, S()), (1.8, T("for two")), (2.0, E())]
    texts, llm = _run(script, until=4.0)
    assert llm.runs == [("book a table", True), ("book a table for two", True)]
    assert llm.cancelled >= 1
    assert texts == [("answer to 'book a table for two'", 2.6)]


def test_resume_after_the_answer_was_generated_drops_the_held_answer() -> None:
    """The speculative answer is complete (held) when the user goes on: it is dropped."""
    script = [(0.0, S()), (0.8, T("hi")), (1.0, E()), (1.5, S()), (1.9, T("there")), (2.0, E())]
    texts, llm = _run(script, until=4.0)
    assert [r[0] for r in llm.runs] == ["hi", "hi there"]
    assert texts == [("answer to 'hi there'", 2.6)]


# ------------------------------------------------------ with flowcat's LLMService


class _ToyLLM(LLMService):
    """Answers with the next script (chunks, or floats: seconds of delay)."""

    def __init__(self, scripts: list[list[Any]]) -> None:
        super().__init__(settings=ServiceSettings(model="toy"))
        self.scripts = scripts
        self.asked: list[str] = []
        self.closed_early = 0

    async def run_inference(self, context: LLMContext) -> AsyncIterator[LLMChunk]:
        self.asked.append(context.messages[-1]["content"])
        script = self.scripts.pop(0)
        done = False
        try:
            for item in script:
                if isinstance(item, float):
                    await asyncio.sleep(item)
                else:
                    yield item
            done = True
        finally:
            self.closed_early += 0 if done else 1


def _run_service(llm: _ToyLLM, script: list[tuple[float, Frame]], until: float) -> list[tuple[str, float]]:
    out = _Stamp(DOWN)
    return play([_MiniAggregator(preemptive_generation=True), llm, PreemptiveGate(), out], out, script, until)


def test_llm_service_stops_a_cancelled_speculative_generation() -> None:
    llm = _ToyLLM(
        [[0.2, LLMTextDelta("Booked"), 5.0, LLMTextDelta(" never")], [0.2, LLMTextDelta("For two, done.")]]
    )
    script = [(0.0, S()), (0.8, T("book a table")), (1.0, E()), (1.5, S()), (1.8, T("for two")), (2.0, E())]
    texts = _run_service(llm, script, until=4.0)
    assert llm.asked == ["book a table", "book a table for two"]
    assert llm.closed_early == 1  # the first stream was closed at the cancel, not left running
    assert texts == [("For two, done.", 2.6)]


def test_speculative_generation_asking_for_a_tool_is_withdrawn_and_rerun_at_the_turn_end() -> None:
    """A tool's side effects cannot be held: the speculative answer that calls one is
    withdrawn (nothing played, the tool not run) and the turn end runs the LLM normally."""
    ran: list[str] = []

    async def lookup(params: FunctionCallParams) -> None:
        ran.append("lookup")
        await params.result_callback("noon")

    llm = _ToyLLM(
        [
            [0.1, LLMTextDelta("Let me check."), LLMToolCallDelta(0, "call_1", "lookup", "{}")],
            [0.1, LLMTextDelta("Let me check."), LLMToolCallDelta(0, "call_2", "lookup", "{}")],
            [LLMTextDelta("It is noon.")],
        ]
    )
    llm.register_function("lookup", lookup)
    texts = _run_service(llm, [(0.0, S()), (0.8, T("what time is it")), (1.0, E())], until=4.0)
    assert llm.asked[:2] == ["what time is it", "what time is it"]
    assert [t for t, _ in texts][0] == "Let me check."
    assert texts[0][1] >= 1.6  # played only after the turn ended (E + 0.6), from the confirmed run
    assert ran == ["lookup"]  # once, by the confirmed run
