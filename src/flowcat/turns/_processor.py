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
from collections.abc import Sequence
from typing import Any

from ..frames import (
    BotSpeechPauseFrame,
    BotSpeechResumeFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EagerEndOfTurnCancelFrame,
    EagerEndOfTurnConfirmFrame,
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
    ProposedUserStoppedSpeakingFrame,
    STTMetadataFrame,
    STTMuteFrame,
    SystemFrame,
    TranscriptionFrame,
    UserAudioRawFrame,
    UserIdleTimeoutUpdateFrame,
    UserSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnSpeculationFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
    frame_dataclass,
)
from ..runtime import FrameDirection, FrameProcessor
from ._idle import UserIdleTimer
from ._interruption import COMMIT, RESUME, BargeIn, InterruptionParams
from ._mute import UninterruptibleSpeechUserMuteStrategy, UserMuteStrategy
from ._preemptive import UserTurnSpeculation
from ._start import UserTurnStartStrategy, count_words
from ._stop import UserTurnStopStrategy
from ._strategies import UserTurnStrategies
from ._timer import SingleTimer

__all__ = ["UserTurnProcessor"]

logger = logging.getLogger("flowcat.turns")

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

_AUDIO = (InputAudioRawFrame, UserAudioRawFrame)
_TEXT = (TranscriptionFrame, InterimTranscriptionFrame)
_VAD_TEXT = frozenset(
    {TranscriptionFrame, InterimTranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame}
)
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


@frame_dataclass
class _Tick(SystemFrame):
    """Private: re-enter the processor for a timer or an async result."""


class UserTurnProcessor(FrameProcessor):
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

    def __init__(
        self,
        *,
        user_turn_strategies: UserTurnStrategies | None = None,
        start_strategies: Sequence[UserTurnStartStrategy] | None = None,
        stop_strategies: Sequence[UserTurnStopStrategy] | None = None,
        mute_strategies: Sequence[UserMuteStrategy] = (),
        interruption: InterruptionParams | None = None,
        enable_interruptions: bool = True,
        user_turn_stop_timeout: float = 5.0,
        user_idle_timeout: float = 0.0,
        user_idle_max_retries: int = 3,
        preemptive_generation: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if user_turn_strategies is None:
            user_turn_strategies = UserTurnStrategies(
                start=list(start_strategies) if start_strategies is not None else None,
                stop=list(stop_strategies) if stop_strategies is not None else None,
            )
        self.user_turn_strategies = user_turn_strategies
        self._start = tuple(user_turn_strategies.start or ())
        self._stop = tuple(user_turn_strategies.stop or ())
        self._immediate = tuple(st for st in self._start if st.immediate)
        triggers = [t for st in self._start for t in st.triggers] + [
            t for s in self._stop for t in s.triggers
        ]
        self._ext_classes = frozenset(triggers) - _VAD_TEXT
        self._mute = (*mute_strategies, UninterruptibleSpeechUserMuteStrategy())
        self._audio_stop = tuple(s for s in self._stop if s.wants_audio)
        self._mute_triggers = frozenset(t for m in self._mute for t in m.triggers)
        for s in self._stop:
            s.bind(self._wake)
        self.interruption = interruption or InterruptionParams()
        self.enable_interruptions = enable_interruptions
        self.user_turn_stop_timeout = user_turn_stop_timeout
        self._barge = BargeIn(self.interruption)
        self._idle = UserIdleTimer(user_idle_timeout, user_idle_max_retries)
        self._muted = any(m.muted for m in self._mute)
        self._in_turn = False
        self._announced = True
        self._bot_speaking = False
        self._vad_speaking = False  # the VAD (or a service's turn signals) hears the user
        self._speech_start = 0.0
        self._last_activity = 0.0
        self._words_final = 0
        self._words_interim = 0
        self._held: list[tuple[Frame, FrameDirection]] = []
        self._timer = SingleTimer(self._wake)
        self._tick = _Tick()
        self._start_strategy: UserTurnStartStrategy | None = None
        self._stop_strategy: UserTurnStopStrategy | None = None
        self.preemptive_generation = preemptive_generation
        self._turn_text: list[str] = []
        self._spec: UserTurnSpeculation | None = None
        self._withdrawn = ""  # text of a speculation the LLM withdrew in this turn
        self._generations = 0
        self.confirmed_speculation: UserTurnSpeculation | None = None
        """During ``_user_turn_ending``: the speculation this turn end confirms (its
        response exists already: write the context, do not run the LLM again)."""
        for event in (
            "on_user_turn_started",
            "on_user_turn_stopped",
            "on_user_idle",
            "on_user_turn_stop_timeout",
            "on_user_turn_inference_triggered",
        ):
            self._register_event_handler(event)
        self._register_event_handler("on_user_mute_started")
        self._register_event_handler("on_user_mute_stopped")

    # ---------------------------------------------------------------- state

    @property
    def user_turn_active(self) -> bool:
        """Whether a user turn is in progress."""
        return self._in_turn

    @property
    def muted(self) -> bool:
        """Whether the user is muted."""
        return self._muted

    @property
    def speculation(self) -> UserTurnSpeculation | None:
        """The speculative generation in flight for this turn, if any."""
        return self._spec

    @property
    def barge_in_pending(self) -> bool:
        """Whether speech over the bot is being judged (bot paused)."""
        return self._barge.pending

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

    async def _pass_user_frame(self, frame: Frame, direction: FrameDirection, cls: type) -> None:
        if cls in _TEXT:
            await self._pass_user_text(frame, direction)
        elif cls is not ProposedUserStartedSpeakingFrame and cls is not ProposedUserStoppedSpeakingFrame:
            await self.push_frame(frame, direction)  # proposals are resolved here, not passed on

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

    # ------------------------------------------------- hooks for subclasses

    async def _pass_user_text(self, frame: Frame, direction: FrameDirection) -> None:
        """A (interim) transcription the turn logic lets through; pushed on here.

        The context aggregator overrides this to aggregate the text instead.
        """
        await self.push_frame(frame, direction)

    async def _pass_other_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Any other frame (not audio, VAD, transcription or turn signal) after the turn logic saw it.

        Pushed on here; the context aggregator overrides this for its own frames, so
        the audio path stays this class's own ``process_frame``.
        """
        await self.push_frame(frame, direction)

    async def _user_turn_started(self) -> None:
        """The turn started (its frames are out); fires ``on_user_turn_started``."""
        await self._call_event_handler("on_user_turn_started", self._start_strategy)

    async def _user_turn_ending(self) -> None:
        """The turn is about to end: called before ``UserStoppedSpeakingFrame`` goes out.

        The context aggregator writes the turn and runs the LLM here — unless
        :attr:`confirmed_speculation` is set: that generation answers this turn
        already (its ``EagerEndOfTurnConfirmFrame`` follows this call).
        """

    async def _user_turn_stopped(self) -> None:
        """The turn ended (its frames are out); fires ``on_user_turn_stopped``."""
        await self._call_event_handler("on_user_turn_stopped", self._stop_strategy)

    async def _user_turn_speculated(self, speculation: UserTurnSpeculation) -> None:
        """The turn is predicted to end; ``UserTurnSpeculationFrame`` was just pushed.

        The context aggregator pushes ``LLMContextFrame(provisional_context,
        speculation=True, generation_id=speculation.generation_id)`` here (the
        context plus the turn's text, the real context left untouched).
        """

    async def _user_turn_speculation_cancelled(self, speculation: UserTurnSpeculation) -> None:
        """The user went on; ``EagerEndOfTurnCancelFrame`` was just pushed."""

    async def _user_idle(self, retry: int) -> None:
        """The user was idle for the timeout; fires ``on_user_idle(processor, retry)``."""
        await self._call_event_handler("on_user_idle", retry)

    # ----------------------------------------------------------------- timer

    async def _on_tick(self) -> None:
        now = (self._timer.loop or asyncio.get_running_loop()).time()
        if self._barge.pending and self._barge.deadline is not None and now >= self._barge.deadline - 1e-9:
            await self._barge_action(self._barge.poll(now), now)
        if self._in_turn and not self._vad_speaking:
            stop = next((s for s in self._stop if s.poll(now)), None)
            if stop is not None:
                await self._end_turn(now, strategy=stop)
            elif now >= self._last_activity + self.user_turn_stop_timeout - 1e-9:
                await self._call_event_handler("on_user_turn_stop_timeout")
                await self._end_turn(now)
            elif self.preemptive_generation:
                await self._maybe_speculate()
        retry = self._idle.poll(now)
        if retry:
            await self._user_idle(retry)
        self._timer.arm(self._next_deadline())

    def _next_deadline(self) -> float | None:
        at = self._barge.deadline if self._barge.pending else None
        if self._in_turn:
            for s in self._stop:
                d = s.deadline
                if d is not None and (at is None or d < at):
                    at = d
            if not self._vad_speaking:
                d = self._last_activity + self.user_turn_stop_timeout
                if at is None or d < at:
                    at = d
        d = self._idle.deadline
        if d is not None and (at is None or d < at):
            at = d
        return at

    def _wake(self) -> None:
        """Re-enter the processor (from a timer or a model result) as a chain of its own."""
        sched = self._sched
        if sched is not None:
            sched.submit(self, self._tick, DOWNSTREAM, to_self=True)

    async def cancel(self, frame: CancelFrame) -> None:
        """Stop the timer."""
        self._timer.close()

    async def cleanup(self) -> None:
        """Stop the timer and unbind the stop strategies (they held this processor: a cycle)."""
        self._timer.close()
        for s in self._stop:
            s.unbind()
