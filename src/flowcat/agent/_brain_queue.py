"""The event queue of a :class:`~flowcat.agent.BrainProcessor` call, and what fills it besides
the frames the processor reads: the silence timer (:class:`Silence`, re-armed while nothing
runs), runs of DTMF keys (:class:`Dtmf`) and the barge-in (the text the caller heard, for the
:class:`BotInterrupted` event that goes before the next one)."""

from __future__ import annotations

import asyncio
from collections import deque

from ..runtime import FrameProcessor
from ._brain import BrainEvent, Dtmf, Silence

__all__ = ["BrainQueue"]


class BrainQueue(FrameProcessor):
    """The queue, the silence timer and the DTMF keys (the base of
    :class:`~flowcat.agent.BrainProcessor`, whose constructor sets these fields)."""

    silence_timeout_secs: float | None
    dtmf_timeout_secs: float
    dtmf_terminator: str
    _queue: deque[BrainEvent]
    _wake: asyncio.Event | None
    _idle_evt: asyncio.Event
    _current: asyncio.Task[None] | None
    _in_turn: bool
    _bot_speaking: bool
    _reply_open: bool
    _reply_text: list[str]
    _pending_interrupt: str | None
    _silence: asyncio.TimerHandle | None
    _silence_count: int
    _dtmf: list[str]
    _dtmf_timer: asyncio.TimerHandle | None
    _ending: bool
    _finished: bool

    def _enqueue(self, event: BrainEvent) -> None:
        if self._finished:
            return
        self._disarm_silence()
        self._idle_evt.clear()
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    def _idle(self) -> bool:
        return self._current is None and not self._queue

    def _on_barge_in(self) -> None:
        running = self._current is not None
        if (self._bot_speaking or running) and self._reply_text:
            self._pending_interrupt = " ".join(self._reply_text)
            self._reply_text = []
        if running and self._current is not None:
            self._current.cancel()
        self._reply_open = False

    def _arm_silence(self) -> None:
        secs = self.silence_timeout_secs
        if secs is None or self._ending or self._finished or self._wake is None:
            return
        if self._in_turn or self._bot_speaking or not self._idle():
            return
        self._disarm_silence()
        self._silence = asyncio.get_running_loop().call_later(secs, self._on_silence)

    def _disarm_silence(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None

    def _on_silence(self) -> None:
        self._silence = None
        if self._in_turn or self._bot_speaking or self._ending or not self._idle():
            return
        self._silence_count += 1
        assert self.silence_timeout_secs is not None  # noqa: S101 - invariant (type narrowing), not input validation
        self._enqueue(Silence(self.silence_timeout_secs, self._silence_count))

    def _on_key(self, key: str) -> None:
        self._dtmf.append(key)
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        if key == self.dtmf_terminator:
            self._flush_keys()
        else:
            self._dtmf_timer = asyncio.get_running_loop().call_later(self.dtmf_timeout_secs, self._flush_keys)

    def _flush_keys(self) -> None:
        self._dtmf_timer = None
        if self._dtmf:
            digits, self._dtmf = "".join(self._dtmf), []
            self._silence_count = 0
            self._enqueue(Dtmf(digits))
