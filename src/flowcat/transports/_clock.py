"""AudioClock: one timer per process paces the bot audio of every call.

Each active output registers with the clock of its event loop and chunk period.
Every tick (one ``loop.call_at`` handle for the whole process, on an absolute
grid so it does not drift) the clock calls :meth:`ClockClient.on_clock` of each
registered output, which sends what its send-ahead window allows. An output
that has nothing more to do returns False and is dropped until it registers
again, so idle calls cost nothing and no call owns a pacing task or timer.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

__all__ = ["IDLE", "AudioClock", "ClockClient"]

logger = logging.getLogger("flowcat.transports.clock")

_MAX_LAG_TICKS = 5  # when the loop fell further behind than this, re-anchor the grid

IDLE = 2
"""What :meth:`ClockClient.on_clock` returns when it needs only a look now and
then (a bot that counts as speaking with nothing queued): such clients are
served every :attr:`AudioClock.idle_every` ticks instead of every tick."""


class ClockClient(Protocol):
    """What the clock drives (an output transport)."""

    def on_clock(self, now: float) -> bool | int:
        """Send what is due at ``now``; True: serve every tick, ``IDLE``: now and then, False: done."""
        ...


class AudioClock:
    """The process-wide pacing clock for one chunk period.

    Use :meth:`for_loop` to get the shared instance; do not construct per call.

    Args:
        loop: The event loop.
        period: Tick period in seconds.
    """

    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, AudioClock]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self.loop = loop
        self.period = period
        self._clients: dict[ClockClient, None] = {}
        self._idle: dict[ClockClient, None] = {}
        self.idle_every = max(1, round(0.06 / period))
        """Ticks between looks at idle clients (about 60 ms)."""
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self._ticking = False
        self.ticks = 0
        """Ticks run so far."""
        self.late_ticks = 0
        """Ticks that ran more than a period late (the grid was re-anchored)."""

    @classmethod
    def for_loop(cls, period: float, loop: asyncio.AbstractEventLoop | None = None) -> AudioClock:
        """The shared clock of ``loop`` (default: the running loop) for ``period`` seconds."""
        if loop is None:
            loop = asyncio.get_running_loop()
        per_loop = cls._clocks.get(loop)
        if per_loop is None:
            per_loop = cls._clocks[loop] = {}
        clock = per_loop.get(period)
        if clock is None:
            clock = per_loop[period] = cls(loop, period)
        return clock

    @classmethod
    def clocks(cls, loop: asyncio.AbstractEventLoop | None = None) -> list[AudioClock]:
        """Every clock of ``loop`` (default: the running loop)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        return list(cls._clocks.get(loop, {}).values())

    @property
    def running(self) -> bool:
        """Whether the tick timer is armed."""
        return self._handle is not None

    def __len__(self) -> int:
        return len(self._clients) + len(self._idle)

    def __contains__(self, client: object) -> bool:
        return client in self._clients or client in self._idle

    def add(self, client: ClockClient) -> None:
        """Register ``client`` (or make an idle one busy); it is served from the next tick on."""
        if client in self._clients:
            return  # already served every tick (and the timer is armed)
        if self._idle:
            self._idle.pop(client, None)
        self._clients[client] = None
        if self._handle is None and not self._ticking:
            self._next = self.loop.time() + self.period
            self._handle = self.loop.call_at(self._next, self._tick)

    def discard(self, client: ClockClient) -> None:
        """Unregister ``client`` (the timer stops when nobody is left)."""
        self._clients.pop(client, None)
        self._idle.pop(client, None)
        if not self._clients and not self._idle and self._handle is not None and not self._ticking:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self.loop
        now = loop.time()
        self.ticks += 1
        self._handle = None
        self._ticking = True
        clients = self._clients
        idle = self._idle
        try:
            _serve_busy(clients, idle, now)
            if idle and self.ticks % self.idle_every == 0:
                _serve_idle(idle, clients, now)
        finally:
            self._ticking = False
        if not clients and not idle:
            self._handle = None
            return
        nxt = self._next + self.period
        if nxt < now - _MAX_LAG_TICKS * self.period:
            self.late_ticks += 1
            nxt = now + self.period
        self._next = nxt
        self._handle = loop.call_at(nxt, self._tick)


def _serve_busy(busy: dict[ClockClient, None], idle: dict[ClockClient, None], now: float) -> None:
    """Call ``on_clock`` on each client served every tick; one that answers ``IDLE`` moves to
    ``idle``, one that answers False leaves. (Inline, no callback per client: at 500 calls this
    runs 25,000 times a second.)"""
    for client in tuple(busy):
        if client not in busy:
            continue
        try:
            keep = client.on_clock(now)
        except Exception:
            logger.exception("audio clock: %r failed; dropped", client)
            keep = False
        if keep is not True:
            busy.pop(client, None)
            if keep:
                idle[client] = None


def _serve_idle(idle: dict[ClockClient, None], busy: dict[ClockClient, None], now: float) -> None:
    """Call ``on_clock`` on each idle client; one that answers True moves to ``busy``, one
    that answers False leaves."""
    for client in tuple(idle):
        if client not in idle:
            continue
        try:
            keep = client.on_clock(now)
        except Exception:
            logger.exception("audio clock: %r failed; dropped", client)
            keep = False
        if keep != IDLE:
            idle.pop(client, None)
            if keep is True:
                busy[client] = None
