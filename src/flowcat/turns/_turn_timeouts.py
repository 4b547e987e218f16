"""The timeouts of a :class:`~flowcat.turns.UserTurnProcessor`: the next deadline its one timer is
armed for (barge-in, stop strategies, the turn's stop timeout, user idle), and what is due when it
fires."""

from __future__ import annotations

import asyncio

from ._turn_transitions import UserTurnTransitions

__all__ = ["UserTurnTimeouts"]


class UserTurnTimeouts(UserTurnTransitions):
    """The timer's deadlines and what fires at them (a base of :class:`~flowcat.turns.UserTurnProcessor`)."""

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
