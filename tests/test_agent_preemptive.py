"""Preemptive generation through the real context aggregator pair (turns → user half → LLM → gate).

The user half answers a predicted end of turn with a provisional context
(``LLMContextFrame(speculation=True)``); the ``PreemptiveGate`` holds that answer until the
turn ends, and the turn end does not run the LLM a second time. When the user goes on, the
held answer is dropped and the turn end runs the LLM on everything that was said.
"""

from __future__ import annotations

from typing import Any

from flowcat.agent import LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from flowcat.frames import Frame
from flowcat.turns import PreemptiveGate
from test_turns_preemptive_pipeline import _ToyLLM, play
from test_turns_processor import DOWN, E, S, T, _Stamp


def _run(llm: _ToyLLM, script: list[tuple[float, Frame]], until: float) -> tuple[LLMContext, Any, list]:
    ctx = LLMContext()
    pair = LLMContextAggregatorPair(ctx, user_params=LLMUserAggregatorParams(preemptive_generation=True))
    out = _Stamp(DOWN)
    texts = play([pair.user(), llm, PreemptiveGate(), out, pair.assistant()], out, script, until)
    return ctx, pair, texts


def test_a_confirmed_speculation_answers_the_turn_with_one_llm_run() -> None:
    from flowcat.services import LLMTextDelta

    llm = _ToyLLM([[0.1, LLMTextDelta("It is sunny.")]])
    ctx, pair, texts = _run(llm, [(0.0, S()), (0.8, T("weather in Paris")), (1.0, E())], until=3.0)
    assert llm.asked == ["weather in Paris"]  # the speculative run is the only run
    assert pair.user().llm_runs == 1
    # Generated during the silence (0.1 s after the VAD stop), played as soon as the turn ended
    # (VAD stop + 0.6 s): without the speculation it would come 0.1 s after the turn end.
    assert len(texts) == 1 and texts[0][0] == "It is sunny." and 1.6 <= texts[0][1] < 1.65
    assert ctx.messages == [
        {"role": "user", "content": "weather in Paris"},
        {"role": "assistant", "content": "It is sunny."},
    ]


def test_the_user_going_on_drops_the_speculative_answer_and_reruns_on_all_words() -> None:
    from flowcat.services import LLMTextDelta

    llm = _ToyLLM([[0.1, LLMTextDelta("Booked.")], [0.1, LLMTextDelta("Booked for two.")]])
    script = [(0.0, S()), (0.8, T("book a table")), (1.0, E()), (1.4, S()), (1.8, T("for two")), (2.0, E())]
    ctx, _pair, texts = _run(llm, script, until=4.0)
    assert llm.asked == ["book a table", "book a table for two"]
    assert [t for t, _ in texts] == ["Booked for two."]  # the held answer was never played
    assert ctx.messages == [
        {"role": "user", "content": "book a table for two"},
        {"role": "assistant", "content": "Booked for two."},
    ]
