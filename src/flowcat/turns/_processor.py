"""UserTurnProcessor: the user half's turn-taking (start, stop, mute, barge-in, idle).

Place it after the VAD and STT (as pipecat's user aggregator). It consumes VAD
frames, (interim) transcriptions, input audio (for smart-turn), bot speaking
frames and function-call frames, passes them on, and:

* broadcasts ``UserStartedSpeakingFrame`` / ``UserStoppedSpeakingFrame`` (both
  directions) at turn start and stop, and fires ``on_user_turn_started`` /
  ``on_user_turn_stopped``;
* interrupts: a user turn starting while the bot is silent broadcasts one
  ``InterruptionFrame`` at once (cancels a reply being prepared, as pipecat);
  while the bot speaks, the barge-in protocol of :mod:`._interruption` applies
  (``BotSpeechPauseFrame`` → one ``InterruptionFrame``, or ``BotSpeechResumeFrame``);
* drops the user's frames while muted; fires ``on_user_idle(processor, retry)``;
* with ``preemptive_generation``, predicts the end of a turn (the user is silent
  and a final transcript is in hand) and pushes ``UserTurnSpeculationFrame``;
  confirms it (``EagerEndOfTurnConfirmFrame``) when the turn ends, cancels it
  (``EagerEndOfTurnCancelFrame``) when the user goes on (see :mod:`._preemptive`).

Timing uses the loop clock and **one** timer handle per processor, re-armed with
``loop.call_at``; a timer (or a smart-turn result) re-enters the processor as a
private system frame through the call's scheduler, so all frames are pushed from
inside a chain.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EagerEndOfTurnCancelFrame,
    EmulateUserStartedSpeakingFrame,
    EmulateUserStoppedSpeakingFrame,
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    ProposedUserStartedSpeakingFrame,
    STTMetadataFrame,
    TranscriptionFrame,
    UserAudioRawFrame,
    UserIdleTimeoutUpdateFrame,
    UserSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection
from ._start import count_words
from ._stop import UserTurnStopStrategy
from ._turn_state import _TEXT, _VAD_TEXT, _Tick
from ._turn_timeouts import UserTurnTimeouts

__all__ = ["UserTurnProcessor"]

logger = logging.getLogger("flowcat.turns")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

_AUDIO = (InputAudioRawFrame, UserAudioRawFrame)
# Frames dropped while the user is muted (pipecat's list, less InterruptionFrame).
_MUTABLE = frozenset(
    {
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
        UserSpeakingFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        TranscriptionFrame,
        InterimTranscriptionFrame,
    }
)
_MAX_HELD = 64  # transcriptions held while a barge-in is judged


class UserTurnProcessor(UserTurnTimeouts):
    """Decides when the user's turn starts and stops, and whether it interrupts the bot.

    Events (pipecat 1.14's): ``on_user_turn_started(processor, strategy)``,
    ``on_user_turn_stopped(processor, strategy)`` (``strategy``: the one that
    decided, None when emulated or timed out), ``on_user_turn_inference_triggered(processor,
    strategy)`` (when the LLM should run: at the turn end, or at a speculation —
    then :attr:`speculation` is set), ``on_user_turn_stop_timeout(processor)``,
    and flowcat's ``on_user_idle(processor, retry)``, ``on_user_mute_started/stopped``.

    Args:
        user_turn_strategies: Pipecat's bundle of start and stop strategies (overrides
            ``start_strategies``/``stop_strategies``).
        start_strategies: Tried in order; default ``[VADUserTurnStartStrategy(),
            TranscriptionUserTurnStartStrategy()]``.
        stop_strategies: Any one ends the turn; default
            ``[SpeechTimeoutUserTurnStopStrategy()]`` (0.6 s after the VAD stop,
            with a final transcript). Use ``[TurnAnalyzerUserTurnStopStrategy(SmartTurnAnalyzer())]``
            for smart-turn.
        mute_strategies: The user is muted while any says so. Default none; an
            :class:`UninterruptibleSpeechUserMuteStrategy` is always added (it mutes only
            on ``UninterruptibleSpeechFrame``: ``Say(allow_interruptions=False)``).
        interruption: Barge-in parameters (min_duration, min_words, false-interruption resume).
        enable_interruptions: If False, user turns never interrupt the bot. Default True.
        user_turn_stop_timeout: Fallback (s): a turn with no VAD speech, VAD stop or
            transcription for this long ends. Default 5.0.
        user_idle_timeout: Seconds without speech before ``on_user_idle`` (0: off). Default 0.
        user_idle_max_retries: Consecutive ``on_user_idle`` firings. Default 3.
        preemptive_generation: Predict the end of a turn and start a speculative
            generation (see ``docs/turns.md``). Default False.
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    # ---------------------------------------------------------------- frames

    # Input audio (50 frames/s per call) passes with a plain call: no coroutine per frame.
    inline_frames = _AUDIO

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        """Input audio: to the stop strategies that listen to audio, then on (dropped when muted)."""
        if self._muted:
            return None
        for s in self._audio_stop:
            s.append_audio(frame.audio, frame.sample_rate)  # type: ignore[attr-defined]
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Run turn logic on ``frame`` and pass it on (unless muted or held)."""
        await super().process_frame(frame, direction)
        cls = type(frame)
        if cls in _AUDIO:  # hot path: 50 frames/s per call
            if self._muted:
                return
            for s in self._audio_stop:
                s.append_audio(frame.audio, frame.sample_rate)  # type: ignore[attr-defined]
            await self.push_frame(frame, direction)
            return
        if cls is _Tick:
            await self._on_tick()
            return
        muted = self._muted
        if cls in self._mute_triggers:
            await self._update_mute(frame)
        if muted and cls in _MUTABLE:
            return
        loop = self._timer.loop
        if loop is None:
            loop = self._timer.loop = asyncio.get_running_loop()
        now = loop.time()
        if cls in _VAD_TEXT or (cls in self._ext_classes and direction is DOWNSTREAM):
            await self._on_user_frame(frame, direction, cls, now)
        else:
            await self._on_other_frame(frame, direction, cls, now)
        self._timer.arm(self._next_deadline())

    async def _on_user_frame(self, frame: Frame, direction: FrameDirection, cls: type, now: float) -> None:
        words = 0
        if cls is VADUserStartedSpeakingFrame:
            self._vad_speaking = True
            self._speech_start = now - frame.start_secs  # type: ignore[attr-defined]
            self._idle.user_started()
            if self._spec is not None:  # the user goes on
                await self._cancel_speculation()
        elif cls is VADUserStoppedSpeakingFrame:
            self._vad_speaking = False
            self._last_activity = now
        elif cls in _TEXT:
            self._last_activity = now
            words = count_words(frame.text)  # type: ignore[attr-defined]
            if cls is TranscriptionFrame:
                self._words_final += words
                self._words_interim = 0
                if self.preemptive_generation and words:
                    self._turn_text.append(frame.text.strip())  # type: ignore[attr-defined]
                    if self._spec is not None:  # the words changed: that answer is stale
                        await self._cancel_speculation()
            else:
                self._words_interim = words
        else:  # a service's (or an upstream processor's) turn signal
            self._last_activity = now
            # The user speaks between its start and stop: no stop timeout meanwhile.
            self._vad_speaking = cls is ProposedUserStartedSpeakingFrame or cls is UserStartedSpeakingFrame
        stop_now: UserTurnStopStrategy | None = None
        for s in self._stop:
            if cls in s.triggers and s.process(frame, now):
                stop_now = s
        barge = self._barge
        if barge.pending and cls in _TEXT and await self._immediate_start(frame, cls):
            if len(self._held) < _MAX_HELD:
                self._held.append((frame, direction))
            frame = None  # type: ignore[assignment]
            barge.reset()
            await self._commit(now, interrupt=True)
        elif barge.pending:
            if cls is VADUserStartedSpeakingFrame:
                action = barge.speech_started(now, self._speech_start)
            elif cls is VADUserStoppedSpeakingFrame:
                action = barge.speech_stopped(now, frame.stop_secs)  # type: ignore[attr-defined]
            else:
                action = barge.transcription(now, words, cls is TranscriptionFrame)
                if len(self._held) < _MAX_HELD:  # held until the barge-in is judged
                    self._held.append((frame, direction))
                frame = None  # type: ignore[assignment]
            await self._barge_action(action, now)
        elif not self._in_turn:
            bot = self._bot_speaking
            for st in self._start:
                if cls in st.triggers and st.process(frame, bot):
                    if not st.announce:  # adopt a turn announced upstream: pass its frame first
                        await self.push_frame(frame, direction)
                        frame = None  # type: ignore[assignment]
                    if await self._begin(now, st) and cls in _TEXT:
                        if len(self._held) < _MAX_HELD:
                            self._held.append((frame, direction))
                        frame = None  # type: ignore[assignment]
                    elif cls in st.consumes:
                        frame = None  # type: ignore[assignment]
                    break
        if stop_now is not None and self._in_turn and not self._vad_speaking:
            if cls is UserStoppedSpeakingFrame:  # adopted turn end: hooks first, then its frame
                await self._end_turn(now, strategy=stop_now)
                stop_now = None
        if frame is not None:
            await self._pass_user_frame(frame, direction, cls)
        if cls in _TEXT and not self._barge.pending and not self._in_turn:
            self._words_final = self._words_interim = 0  # words outside any turn are not carried over
            self._turn_text.clear()
            for s in self._stop:
                s.discard_transcripts()
        if stop_now is not None and self._in_turn and not self._vad_speaking:
            await self._end_turn(now, strategy=stop_now)
        elif self.preemptive_generation and self._in_turn:
            await self._maybe_speculate()

    async def _immediate_start(self, frame: Frame, cls: type) -> bool:
        """While a barge-in is judged: does an immediate start strategy (min words) fire?"""
        for st in self._immediate:
            if cls in st.triggers and st.process(frame, self._bot_speaking):
                self._start_strategy = st
                return True
        return False

    async def _on_other_frame(self, frame: Frame, direction: FrameDirection, cls: type, now: float) -> None:
        if cls is BotStartedSpeakingFrame:
            self._bot_speaking = True
            self._idle.bot_started()
        elif cls is BotStoppedSpeakingFrame:
            self._bot_speaking = False
            self._idle.bot_stopped(now)
            if self._barge.pending:  # the bot finished anyway: the speech is a normal turn
                self._barge.reset()
                await self._commit(now, interrupt=self.enable_interruptions)
        elif cls is FunctionCallsStartedFrame:
            self._idle.function_calls_started(len(frame.function_calls))  # type: ignore[attr-defined]
        elif cls is FunctionCallResultFrame or cls is FunctionCallCancelFrame:
            self._idle.function_call_done()
        elif cls is UserIdleTimeoutUpdateFrame:
            self._idle.update_timeout(frame.timeout, now)  # type: ignore[attr-defined]
        elif cls is EagerEndOfTurnCancelFrame and direction is UPSTREAM:
            await self._speculation_withdrawn(frame.generation_id)  # type: ignore[attr-defined]
        elif cls is STTMetadataFrame:
            for s in self._stop:
                s.stt_timeout = frame.ttfs_p99_latency  # type: ignore[attr-defined]
        elif cls is EmulateUserStartedSpeakingFrame:
            if not self._in_turn:
                self._barge.reset()
                self._start_strategy = None
                await self._commit(now, interrupt=self.enable_interruptions, emulated=True)
            return
        elif cls is EmulateUserStoppedSpeakingFrame:
            if self._in_turn:
                await self._end_turn(now, emulated=True)
            return
        elif cls is EndFrame or cls is CancelFrame:
            self._timer.close()
            self._spec = None
        await self._pass_other_frame(frame, direction)
