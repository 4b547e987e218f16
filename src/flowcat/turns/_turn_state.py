"""The state of a :class:`~flowcat.turns.UserTurnProcessor`: its strategies wired at construction, the
turn's fields, the events it fires (the hooks its subclasses override) and the one timer's wake-up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..frames import (
    CancelFrame,
    Frame,
    InterimTranscriptionFrame,
    SystemFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
    frame_dataclass,
)
from ..runtime import FrameDirection, FrameProcessor
from ._idle import UserIdleTimer
from ._interruption import BargeIn, InterruptionParams
from ._mute import UninterruptibleSpeechUserMuteStrategy, UserMuteStrategy
from ._preemptive import UserTurnSpeculation
from ._start import UserTurnStartStrategy
from ._stop import UserTurnStopStrategy
from ._strategies import UserTurnStrategies
from ._timer import SingleTimer

__all__ = ["UserTurnState"]

DOWNSTREAM = FrameDirection.DOWNSTREAM

_TEXT = (TranscriptionFrame, InterimTranscriptionFrame)
_VAD_TEXT = frozenset(
    {TranscriptionFrame, InterimTranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame}
)


@frame_dataclass
class _Tick(SystemFrame):
    """Private: re-enter the processor for a timer or an async result."""


class UserTurnState(FrameProcessor):
    """The fields, events, hooks and lifecycle of :class:`~flowcat.turns.UserTurnProcessor` (its base;
    its arguments are documented there)."""

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
