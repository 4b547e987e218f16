"""Admission control: a fixed number of concurrent calls per worker.

Past ``capacity`` a new call is refused before any per-call work is done (HTTP
503 before the WebSocket upgrade), so admitted calls keep their latency instead
of every call degrading together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Admission", "default_capacity"]


def default_capacity() -> int:
    """Calls per worker when ``--capacity`` is not given (env ``FLOWCAT_CAPACITY`` or 1500)."""
    raw = os.environ.get("FLOWCAT_CAPACITY", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1500


@dataclass
class Admission:
    """Counters and the admit/release decision of one worker (one event loop, no locks)."""

    capacity: int = field(default_factory=default_capacity)
    active: int = 0
    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    draining: bool = False

    def try_admit(self) -> bool:
        """Take a slot for a new call; False (and counted) when full or draining."""
        if self.draining or self.active >= self.capacity:
            self.rejected += 1
            return False
        self.active += 1
        self.accepted += 1
        return True

    def release(self) -> None:
        """A call admitted by :meth:`try_admit` has ended."""
        if self.active > 0:
            self.active -= 1
        self.completed += 1

    def undo_admit(self) -> None:
        """Give back a slot :meth:`try_admit` just took (another check refused the call):
        counted as rejected, not accepted."""
        if self.active > 0:
            self.active -= 1
        self.accepted -= 1
        self.rejected += 1

    def has_room(self) -> bool:
        """Whether a new call would be admitted now (without taking a slot)."""
        return not self.draining and self.active < self.capacity

    def snapshot(self) -> dict[str, Any]:
        """Counters for ``/healthz``."""
        return {
            "active": self.active,
            "capacity": self.capacity,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "completed": self.completed,
            "draining": self.draining,
        }
