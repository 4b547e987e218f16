"""Preemptive generation: answer a predicted end of turn, release it only when confirmed.

The turn processor (``preemptive_generation=True``) predicts the end of a turn
and pushes a ``UserTurnSpeculationFrame(generation_id)``; the context aggregator
follows it with ``LLMContextFrame(speculation=True, generation_id=...)`` (a
provisional context). :class:`PreemptiveGate`, placed right after the LLM, holds
the response that follows the marker until ``EagerEndOfTurnConfirmFrame`` (or the
``UserStoppedSpeakingFrame`` of the turn) and drops it on
``EagerEndOfTurnCancelFrame``, which it also sends upstream so the LLM stops.
See ``docs/turns.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .._ratelimit import RateLimitedLog
from ..frames import (
    CancelFrame,
    EagerEndOfTurnCancelFrame,
    EagerEndOfTurnConfirmFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    StopFrame,
    SystemFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnSpeculationFrame,
)
from ..runtime import FrameDirection, FrameProcessor

__all__ = ["PreemptiveGate", "UserTurnSpeculation"]

logger = logging.getLogger("flowcat.turns")
_overflow = RateLimitedLog(logger, first=3, every=100)

DOWNSTREAM = FrameDirection.DOWNSTREAM
UPSTREAM = FrameDirection.UPSTREAM

OPEN = 0
ARMED = 1  # marker seen, its response not started yet
HOLDING = 2  # holding the speculative response (and what follows it)
DROPPING = 3  # the speculation was cancelled: drop the rest of its response

_WATCHED = frozenset(
    {
        UserTurnSpeculationFrame,
        EagerEndOfTurnConfirmFrame,
        EagerEndOfTurnCancelFrame,
        LLMFullResponseStartFrame,
        LLMFullResponseEndFrame,
        InterruptionFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        EndFrame,
        StopFrame,
        CancelFrame,
    }
)


@dataclass(slots=True)
class UserTurnSpeculation:
    """A speculative generation for a turn that has not ended (pipecat's name).

    Attributes:
        generation_id: Its id (per turn processor, from 1), carried by the
            speculation, confirm and cancel frames and the ``LLMContextFrame``.
        text: The user's final transcripts of the turn when it was predicted.
    """

    generation_id: int
    text: str


class PreemptiveGate(FrameProcessor):
    """Holds a speculative LLM response until its turn is confirmed; drops it if not.

    Place it right after the LLM service. Downstream, after a
    ``UserTurnSpeculationFrame(g)`` the next response (from its
    ``LLMFullResponseStartFrame``) and every non-system frame behind it are held,
    in order, until:

    * ``EagerEndOfTurnConfirmFrame(g)`` or ``UserStoppedSpeakingFrame`` — released;
    * ``EagerEndOfTurnCancelFrame(g)`` (or id 0) — dropped (frames that are not
      interruptible are still passed on), the rest of that response is dropped as
      it comes (up to its ``LLMFullResponseEndFrame`` or the next turn frame), and,
      with ``cancel_upstream``, the cancel frame is sent upstream so an LLM that
      only watches that direction stops too;
    * ``InterruptionFrame`` — dropped; ``EndFrame``/``StopFrame``/``CancelFrame`` —
      dropped, the end frame passes.

    System frames always pass. With no speculation in flight the gate costs one
    set lookup per frame.

    Args:
        cancel_upstream: Send a cancel upstream when a speculation is dropped. Default True.
        max_held: Held frames beyond which a (rate-limited) warning is logged; the
            turn processor's ``user_turn_stop_timeout`` bounds how long a
            speculation lasts. Default 4096.
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.

    Attributes:
        released: Speculative generations released so far.
        discarded: Speculative generations dropped so far.
    """

    def __init__(self, *, cancel_upstream: bool = True, max_held: int = 4096, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cancel_upstream = cancel_upstream
        self.max_held = max_held
        self.released = 0
        self.discarded = 0
        self._state = OPEN
        self._gen = 0
        self._held: list[Frame] = []
        self._overflows = 0

    @property
    def holding(self) -> bool:
        """Whether frames are being held now."""
        return self._state == HOLDING

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Hold, release or drop downstream frames of a speculative generation."""
        await super().process_frame(frame, direction)
        cls = type(frame)
        if direction is UPSTREAM or (self._state == OPEN and cls not in _WATCHED):
            await self.push_frame(frame, direction)
            return
        state = self._state
        if cls is UserTurnSpeculationFrame:
            if state == HOLDING:  # superseded without a verdict: the new one wins
                await self._discard(notify=True)
            self._state, self._gen = ARMED, frame.generation_id  # type: ignore[attr-defined]
        elif cls is EagerEndOfTurnConfirmFrame:
            if state in (ARMED, HOLDING) and frame.generation_id == self._gen:  # type: ignore[attr-defined]
                await self._release()
        elif cls is EagerEndOfTurnCancelFrame:
            gen = frame.generation_id  # type: ignore[attr-defined]
            if state in (ARMED, HOLDING) and gen in (0, self._gen):
                await self.push_frame(frame, direction)
                await self._discard(notify=self.cancel_upstream)
                self._state = DROPPING
                return
        elif cls is UserStoppedSpeakingFrame:
            if state in (ARMED, HOLDING):
                await self._release()  # the turn it answers ended (as pipecat)
            elif state == DROPPING:
                self._state = OPEN
        elif cls is UserStartedSpeakingFrame or cls is InterruptionFrame:
            if state == HOLDING:
                await self._discard(notify=False)
            self._state = OPEN
        elif cls is EndFrame or cls is StopFrame or cls is CancelFrame:
            self._held.clear()
            self._state = OPEN
        elif state == ARMED:
            if cls is LLMFullResponseStartFrame:
                self._state = HOLDING
                self._held.append(frame)
                return
        elif state == HOLDING:
            if not isinstance(frame, SystemFrame):
                self._hold(frame)
                return
        elif state == DROPPING:
            if cls is LLMFullResponseEndFrame:
                self._state = OPEN
            if not isinstance(frame, SystemFrame):
                if not frame.interruptible:
                    await self.push_frame(frame, direction)
                return
        await self.push_frame(frame, direction)

    def _hold(self, frame: Frame) -> None:
        held = self._held
        held.append(frame)
        if len(held) > self.max_held:
            self._overflows += 1
            _overflow(
                self._overflows,
                "%s: more than %d frames held for generation %d",
                self,
                self.max_held,
                self._gen,
            )

    async def _release(self) -> None:
        held, self._held = self._held, []
        self._state = OPEN
        self.released += 1
        for f in held:
            await self.push_frame(f, DOWNSTREAM)

    async def _discard(self, *, notify: bool) -> None:
        held, self._held = self._held, []
        self._state = OPEN
        self.discarded += 1
        for f in held:
            if not f.interruptible:
                await self.push_frame(f, DOWNSTREAM)
        if notify:
            await self.push_frame(EagerEndOfTurnCancelFrame(generation_id=self._gen), UPSTREAM)
