"""The turn transitions of a :class:`~flowcat.turns.UserTurnProcessor`: a turn starts (at once, or
after the barge-in over the bot is judged), ends, is predicted to end (a speculative generation,
confirmed or cancelled), and the user is muted or unmuted."""

from __future__ import annotations

from ..frames import (
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    EagerEndOfTurnCancelFrame,
    EagerEndOfTurnConfirmFrame,
    Frame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    STTMuteFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnSpeculationFrame,
)
from ..runtime import FrameDirection
from ._interruption import COMMIT, RESUME
from ._preemptive import UserTurnSpeculation
from ._start import UserTurnStartStrategy
from ._stop import UserTurnStopStrategy
from ._turn_state import _TEXT, UserTurnState

__all__ = ["UserTurnTransitions"]

UPSTREAM = FrameDirection.UPSTREAM


class UserTurnTransitions(UserTurnState):
    """Starting, ending and predicting the user's turn; muting (a base of
    :class:`~flowcat.turns.UserTurnProcessor`)."""

    async def _pass_user_frame(self, frame: Frame, direction: FrameDirection, cls: type) -> None:
        if cls in _TEXT:
            await self._pass_user_text(frame, direction)
        elif cls is not ProposedUserStartedSpeakingFrame and cls is not ProposedUserStoppedSpeakingFrame:
            await self.push_frame(frame, direction)  # proposals are resolved here, not passed on
    # ------------------------------------------------------------ turn logic

    async def _begin(self, now: float, st: UserTurnStartStrategy | None = None) -> bool:
        """A start strategy fired. Returns True if a barge-in is now pending."""
        self._start_strategy = st
        interrupt = self.enable_interruptions and getattr(st, "enable_interruptions", True)
        if st is not None and not st.announce:
            await self._commit(now, interrupt=False, announce=False)
            return False
        if not (self._bot_speaking and interrupt) or (st is not None and st.immediate):
            await self._commit(now, interrupt=interrupt)
            return False
        action = self._barge.begin(
            now, self._speech_start if self._vad_speaking else None, self._words_final, self._words_interim
        )
        if action == COMMIT:
            await self._commit(now, interrupt=True)
            return False
        if self.interruption.resume_false_interruption:
            await self.push_frame(BotSpeechPauseFrame())
        return True

    async def _barge_action(self, action: int, now: float) -> None:
        if action == COMMIT:
            await self._commit(now, interrupt=True)
        elif action == RESUME:
            self._held.clear()
            self._words_final = self._words_interim = 0
            self._turn_text.clear()
            for s in self._stop:  # the backchannel's transcripts belong to no turn
                s.discard_transcripts()
            if self.interruption.resume_false_interruption:
                await self.push_frame(BotSpeechResumeFrame())

    async def _commit(
        self, now: float, *, interrupt: bool, emulated: bool = False, announce: bool = True
    ) -> None:
        """Start the user turn (and interrupt the bot), then release held transcriptions."""
        self._in_turn = True
        self._announced = announce
        self._spec = None
        self._last_activity = now
        for st in self._start:
            st.reset()
        for s in self._stop:
            s.turn_started(now, self._vad_speaking)
        self._idle.user_started()
        if announce:
            await self.broadcast_frame(UserStartedSpeakingFrame, emulated=emulated)
            if interrupt:
                await self.broadcast_interruption()
        await self._user_turn_started()
        if self._held:
            held, self._held = self._held, []
            for f, d in held:
                await self._pass_user_frame(f, d, type(f))

    async def _end_turn(
        self, now: float, *, emulated: bool = False, strategy: UserTurnStopStrategy | None = None
    ) -> None:
        self._in_turn = False
        self._stop_strategy = strategy
        # An adopted turn (announced upstream) is never re-announced, even at the timeout.
        announce = self._announced and getattr(strategy, "announce", True)
        self._words_final = self._words_interim = 0
        for st in self._start:
            st.reset()
        for s in self._stop:
            s.turn_stopped()
        self._idle.user_stopped(now)
        spec, self._spec = self._spec, None
        self._withdrawn = ""
        self._turn_text.clear()
        self.confirmed_speculation = spec
        if spec is None:
            await self._call_event_handler("on_user_turn_inference_triggered", strategy)
        await self._user_turn_ending()
        if spec is not None:
            await self.push_frame(EagerEndOfTurnConfirmFrame(generation_id=spec.generation_id))
        if announce:
            await self.broadcast_frame(UserStoppedSpeakingFrame, emulated=emulated)
        await self._user_turn_stopped()
        self.confirmed_speculation = None

    # ------------------------------------------------ preemptive generation

    async def _maybe_speculate(self) -> None:
        """The user is silent in a turn with a final transcript: the turn will likely end."""
        if self._spec is not None or self._vad_speaking or not self._turn_text or self._barge.pending:
            return
        if not any(s.speculative for s in self._stop):
            return
        text = " ".join(self._turn_text)
        if text == self._withdrawn:  # the LLM refused to speculate on these words (tools)
            return
        self._generations += 1
        spec = self._spec = UserTurnSpeculation(self._generations, text)
        await self.push_frame(UserTurnSpeculationFrame(generation_id=spec.generation_id, text=spec.text))
        await self._user_turn_speculated(spec)
        await self._call_event_handler("on_user_turn_inference_triggered", None)

    async def _speculation_withdrawn(self, generation_id: int) -> None:
        """The LLM (or the gate) withdrew the speculation: the turn end runs the LLM again."""
        spec = self._spec
        if spec is None or generation_id not in (0, spec.generation_id):
            return
        self._spec = None
        self._withdrawn = spec.text
        await self._user_turn_speculation_cancelled(spec)

    async def _cancel_speculation(self) -> None:
        spec, self._spec = self._spec, None
        if spec is None:
            return
        await self.push_frame(EagerEndOfTurnCancelFrame(generation_id=spec.generation_id))
        await self._user_turn_speculation_cancelled(spec)

    async def _update_mute(self, frame: Frame) -> None:
        muted = False
        lock = self._mute[-1]  # the UninterruptibleSpeechUserMuteStrategy
        locked = lock.muted
        for m in self._mute:
            if type(frame) in m.triggers:
                m.process(frame)
            muted = muted or m.muted
        if lock.muted != locked:
            # Speech during uninterruptible words is dropped, transcripts included: the STT
            # (upstream) does not transcribe what starts while it is muted, so no late transcript
            # of it can start a turn once the words were played.
            await self.push_frame(STTMuteFrame(mute=lock.muted), UPSTREAM)
        if muted == self._muted:
            return
        self._muted = muted
        if muted:
            self._vad_speaking = False  # its VAD stop would be dropped
            for s in self._stop:
                s.user_speaking = False
        await self._call_event_handler("on_user_mute_started" if muted else "on_user_mute_stopped")
