"""``Say(allow_interruptions=False)``: the turn processor mutes the user while those words play.

Pipeline [UserTurnProcessor, BrainProcessor, Speaker] with the VAD and transcripts fed as frames
(virtual time): the caller talks over the greeting. An interruptible greeting is cut (an
``InterruptionFrame``, ``BotInterrupted`` then the caller's turn); an uninterruptible one is not,
and what the caller said during it is dropped. Speech after it is a normal turn again. Then the
same through the WebSocket brain protocol (``say`` with ``allow_interruptions: false``) against
the reference brain service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from _brain_harness import BrainHarness
from flowcat.agent import (
    BotInterrupted,
    BrainEvent,
    BrainProcessor,
    CallStarted,
    Say,
    UserTurn,
    WebSocketBrain,
)
from flowcat.frames import (
    InputAudioRawFrame,
    InterruptionFrame,
    TranscriptionFrame,
    UninterruptibleSpeechFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import Pipeline, PipelineParams, PipelineTask
from flowcat.services import SegmentedSTTService, close_http_sessions
from flowcat.testing import run_virtual
from flowcat.turns import UninterruptibleSpeechUserMuteStrategy, UserTurnProcessor
from test_agent_brain_processor import ScriptedBrain
from test_agent_ws_brain import TOKEN, ref

GREETING = "Calls are recorded for quality purposes."


class TurnHarness(BrainHarness):
    """BrainHarness with the real turn processor in front of the brain."""

    def __init__(self, proc: BrainProcessor, *, speak_secs: float) -> None:
        super().__init__(proc, speak_secs=speak_secs)
        self.turns = UserTurnProcessor()
        self.task = PipelineTask(Pipeline([self.turns, proc, self.speaker]), idle_timeout_secs=None)

    async def talk(self, text: str, secs: float = 1.0) -> None:
        """The caller says ``text`` (VAD start, transcript, VAD stop ``secs`` later)."""
        await self.send(VADUserStartedSpeakingFrame(start_secs=0.2))
        await asyncio.sleep(secs)
        await self.send(TranscriptionFrame(text=text, user_id="caller", timestamp=""))
        await self.send(VADUserStoppedSpeakingFrame(stop_secs=0.2))


def _greet(allow: bool) -> Any:
    async def script(b: ScriptedBrain, event: BrainEvent) -> AsyncIterator[Any]:
        if isinstance(event, CallStarted):
            yield Say(GREETING, allow_interruptions=allow)
        elif isinstance(event, UserTurn):
            yield Say(f"You said {event.text}")

    return script


def _interruptions(h: BrainHarness) -> int:
    return sum(isinstance(f, InterruptionFrame) for f in h.speaker.frames)


def test_an_interruptible_greeting_is_cut_by_the_caller() -> None:
    """The contrast case: the same speech over an ordinary Say interrupts it."""

    async def main() -> None:
        brain = ScriptedBrain(_greet(True))
        async with TurnHarness(BrainProcessor(brain, silence_timeout_secs=None), speak_secs=4.0) as h:
            await h.greeting()
            await asyncio.sleep(0.5)  # the bot is speaking
            await h.talk("stop please")
            assert await h.next_reply(1) == "You said stop please"
        assert _interruptions(h) >= 1
        assert BotInterrupted(GREETING) in brain.events
        assert UserTurn("stop please", None, True) in brain.events

    run_virtual(main())


def test_an_uninterruptible_greeting_mutes_the_caller_until_it_was_played() -> None:
    async def main() -> None:
        brain = ScriptedBrain(_greet(False))
        proc = BrainProcessor(brain, silence_timeout_secs=None)
        async with TurnHarness(proc, speak_secs=4.0) as h:
            await h.greeting()
            await asyncio.sleep(0.5)  # the bot is speaking
            assert h.turns.muted
            await h.talk("stop please")  # dropped: no barge-in, no turn
            await asyncio.sleep(1.0)
            assert h.turns.muted and not h.turns.user_turn_active
            await asyncio.sleep(3.0)  # the greeting has been played: unmuted
            assert not h.turns.muted
            assert _interruptions(h) == 0  # the greeting was never cut
            await h.talk("hello")  # (a turn while the bot is silent interrupts nothing audible)
            assert await h.next_reply(1) == "You said hello"
        assert not any(isinstance(e, BotInterrupted) for e in brain.events)
        assert [e for e in brain.events if isinstance(e, UserTurn)] == [UserTurn("hello", None, False)]
        assert len(h.speaker.replies) == 2  # the greeting, whole, and the answer to "hello"

    run_virtual(main())


def test_the_mute_strategy_waits_for_the_bot_to_stop_after_the_words_were_sent() -> None:
    from flowcat.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame

    m = UninterruptibleSpeechUserMuteStrategy()
    assert not m.process(BotStartedSpeakingFrame()) and not m.process(BotStoppedSpeakingFrame())
    assert m.process(UninterruptibleSpeechFrame(active=True))
    assert m.process(BotStoppedSpeakingFrame())  # a stop before the words were all sent: still muted
    assert m.process(UninterruptibleSpeechFrame(active=False))  # sent, not yet spoken
    assert m.process(BotStartedSpeakingFrame())
    assert not m.process(BotStoppedSpeakingFrame())
    # Already spoken and silent when the end comes: unmuted at once.
    assert m.process(UninterruptibleSpeechFrame(active=True))
    m.process(BotStartedSpeakingFrame())
    m.process(BotStoppedSpeakingFrame())
    assert not m.process(UninterruptibleSpeechFrame(active=False))


class _Greeter(ref.ReferenceBrain):  # type: ignore[misc, name-defined]
    """The reference brain, greeting with an uninterruptible notice (the protocol's field)."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)

    async def on_message(self, ws: web.WebSocketResponse, conv: Any, m: dict[str, Any]) -> None:
        if m.get("type") == "session.start":
            await ws.send_str(json.dumps({"type": "session.ready", "protocol": 1}))
            await ws.send_str(json.dumps({"type": "say", "turn_id": m["turn_id"], "text": GREETING,
                                          "allow_interruptions": False, "final": True}))
            return
        if m.get("type") == "user.turn":
            await ws.send_str(json.dumps({"type": "say", "turn_id": m["turn_id"],
                                          "text": f"You said {m.get('text')}", "final": True}))
            return
        await super().on_message(ws, conv, m)


@pytest.mark.usefixtures("no_outside_connections")
async def test_websocket_brain_say_with_allow_interruptions_false_is_not_cut() -> None:
    server = _Greeter()
    await server.start("127.0.0.1", 0)
    brain = WebSocketBrain(server.url, allow_private=True, token=TOKEN, reply_timeout=5.0)
    try:
        proc = BrainProcessor(brain, silence_timeout_secs=None)
        h = TurnHarness(proc, speak_secs=2.0)
        unmuted = asyncio.Event()
        h.turns.add_event_handler("on_user_mute_stopped", lambda _p: unmuted.set())
        async with h:
            assert await h.greeting() == GREETING
            assert h.turns.muted
            await asyncio.sleep(0.3)
            await h.talk("stop please", secs=0.8)  # over the uninterruptible greeting: dropped
            await asyncio.wait_for(h.speaker.changed.wait(), 5)
            await asyncio.wait_for(unmuted.wait(), 10)
            assert _interruptions(h) == 0 and not h.turns.user_turn_active
            await h.talk("hello", secs=0.5)
            assert await h.next_reply(1, timeout=10) == "You said hello"
        turns = [m for m in server.received if m.get("type") == "user.turn"]
        assert [t["text"] for t in turns] == ["hello"] and turns[0]["interrupted_bot"] is False
        assert not any(m.get("type") == "bot.interrupted" for m in server.received)
    finally:
        await brain.close()
        await close_http_sessions()
        await server.close()



class SlowSTT(SegmentedSTTService):
    """A segmented STT whose transcript comes 3 s after the VAD stop (a loaded Whisper)."""

    def __init__(self) -> None:
        super().__init__(pre_roll_secs=0.0)
        self.asked = 0

    async def run_stt(self, wav: bytes) -> AsyncGenerator[str, None]:
        self.asked += 1
        await asyncio.sleep(3.0)
        yield "stop please" if self.asked == 1 else "hello"


def test_a_late_transcript_of_speech_during_the_uninterruptible_words_starts_no_turn() -> None:
    """The STT is muted with the user: what began during the words is never transcribed, so a
    slow STT cannot deliver it as a turn after the words were played."""

    async def main() -> None:
        brain = ScriptedBrain(_greet(False))
        stt = SlowSTT()
        h = TurnHarness(BrainProcessor(brain, silence_timeout_secs=None), speak_secs=2.0)
        h.task = PipelineTask(Pipeline([stt, h.turns, h.proc, h.speaker]),
                              params=PipelineParams(audio_in_sample_rate=16000), idle_timeout_secs=None)
        async with h:
            await h.greeting()
            await asyncio.sleep(0.3)
            await h.send(VADUserStartedSpeakingFrame(start_secs=0.2))
            await h.send(InputAudioRawFrame(b"\x10\x00" * 3200, 16000, 1))
            await asyncio.sleep(0.5)
            await h.send(VADUserStoppedSpeakingFrame(stop_secs=0.2))
            await asyncio.sleep(6.0)  # the greeting ended (2 s) and a transcript would have come (3 s)
            assert not h.turns.muted and stt.asked == 0
        assert not any(isinstance(e, UserTurn) for e in brain.events)
        assert _interruptions(h) == 0

    run_virtual(main())
