"""A small adaptive reorder (jitter) buffer for one RTP stream, driven by arrivals.

Packets are released in sequence order as soon as they are next. A packet that
arrives after a later one was released is *late*: it is dropped (counted in
``late``) and the buffer depth grows by one packet, up to ``max_depth``. While the
depth is N, up to N out-of-order packets are held waiting for the missing one;
when more are held, the gap is given up (counted in ``lost``) and the held ones
are released. After ``shrink_after`` packets without a late one the depth shrinks
by one. A stream in order is released at once (depth 0: no added delay). There is
no timer: a held packet waits for later arrivals.

A run of ``late_resync`` late packets in a row, with nothing released between them,
means the buffer's position is wrong rather than the packets late: one corrupted or
spoofed packet of the stream's SSRC with a sequence number far ahead would otherwise
make every real packet after it "late" for as many packets as it jumped. The buffer
then restarts at the late packet's sequence number (found by the RTP fuzz test).

Reordering before decoding matters for in-band DTMF: a Goertzel detector fed a
late packet sees the tone stop and start again and reports the key twice.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["JitterBuffer"]

T = TypeVar("T")
_MOD = 1 << 16
_HALF = 1 << 15
_RESYNC = 1000  # a jump of more sequence numbers than this restarts the stream


class JitterBuffer(Generic[T]):
    __slots__ = (
        "_held",
        "_late_run",
        "_next",
        "_quiet",
        "depth",
        "late",
        "late_resync",
        "lost",
        "max_depth",
        "shrink_after",
    )

    def __init__(
        self, max_depth: int = 5, *, initial_depth: int = 0, shrink_after: int = 500, late_resync: int = 8
    ) -> None:
        self.max_depth = max_depth
        self.late_resync = late_resync
        self._late_run = 0
        self.depth = min(initial_depth, max_depth)
        self.shrink_after = shrink_after
        self.late = 0
        """Packets dropped because a later one had already been released."""
        self.lost = 0
        """Sequence numbers given up on (never arrived in time)."""
        self._held: dict[int, T] = {}
        self._next: int | None = None
        self._quiet = 0

    def reset(self) -> None:
        """Forget the stream (a new SSRC)."""
        self._held.clear()
        self._next = None
        self._late_run = 0

    def in_order(self, seq: int) -> bool:
        """If ``seq`` is the next packet and nothing is held, take it (the caller releases
        it at once) and return True; else False (call :meth:`push`)."""
        if seq == self._next and not self._held:
            self._next = (seq + 1) & 0xFFFF
            # _adapt_quiet, inline (every packet of every call takes this path)
            self._late_run = 0
            self._quiet += 1
            if self._quiet >= self.shrink_after:
                self._quiet = 0
                if self.depth > 0:
                    self.depth -= 1
            return True
        return False

    def push(self, seq: int, item: T) -> list[T]:
        """Add packet ``seq``; returns the items now released, in order."""
        nxt = self._next
        if nxt is None:
            self._next = (seq + 1) % _MOD
            return [item]
        d = (seq - nxt) % _MOD
        if d == 0 and not self._held:
            self._next = (seq + 1) % _MOD
            self._adapt_quiet()
            return [item]
        if d >= _HALF:
            if _MOD - d > _RESYNC:
                return self._resync(seq, item)
            self.late += 1
            self._late_run += 1
            if self._late_run >= self.late_resync:
                return self._resync(seq, item)
            self._quiet = 0
            if self.depth < self.max_depth:
                self.depth += 1
            return []
        if d > _RESYNC:
            return self._resync(seq, item)
        if seq in self._held:
            return []  # duplicate
        self._held[seq] = item
        return self._release()

    def _release(self) -> list[T]:
        out: list[T] = []
        held = self._held
        nxt: int = self._next if self._next is not None else 0
        while True:
            while nxt in held:
                out.append(held.pop(nxt))
                nxt = (nxt + 1) % _MOD
            if len(held) <= self.depth:
                break
            base = nxt
            first = min(held, key=lambda s: (s - base) % _MOD)
            self.lost += (first - base) % _MOD
            nxt = first
        self._next = nxt
        if out:
            self._adapt_quiet()
        return out

    def _resync(self, seq: int, item: T) -> list[T]:
        nxt = self._next
        out = [self._held[s] for s in sorted(self._held, key=lambda s: (s - nxt) % _MOD)]  # type: ignore[operator]
        self._held.clear()
        self._next = (seq + 1) % _MOD
        out.append(item)
        self._late_run = 0
        return out

    def _adapt_quiet(self) -> None:
        self._late_run = 0
        self._quiet += 1
        if self._quiet >= self.shrink_after:
            self._quiet = 0
            if self.depth > 0:
                self.depth -= 1
