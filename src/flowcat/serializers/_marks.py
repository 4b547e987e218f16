"""Playback marks: which bot audio the carrier confirmed as played.

The serializer counts every sample it sends. A mark records that position; when
the carrier echoes the mark, everything sent before it has played, so
``played_up_to`` moves there. An interruption (clear) voids the marks still
outstanding: Twilio and Telnyx echo them anyway when they flush, and those echoes
must not count as "played".
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["MarkTracker"]

logger = logging.getLogger("flowcat.serializers")


class MarkTracker:
    """Outstanding marks and the confirmed playback position of one call.

    Attributes:
        sent_samples: Bot audio samples sent to the carrier so far.
        marked_samples: ``sent_samples`` when the last mark was placed.
        played_samples: Samples confirmed as played.
        rate: The carrier sample rate the counts are in (Hz).
        on_played: Called with ``(mark_name, played_up_to_seconds)`` on each confirmation.
        voided: How many echoed marks were ignored because a clear had voided them.
    """

    __slots__ = (
        "_outstanding",
        "_seq",
        "_voided_names",
        "marked_samples",
        "on_played",
        "played_samples",
        "rate",
        "sent_samples",
        "voided",
    )

    def __init__(self) -> None:
        self._seq = 0
        self._outstanding: dict[str, int] = {}
        self._voided_names: set[str] = set()
        self.sent_samples = 0
        self.marked_samples = 0
        self.played_samples = 0
        self.rate = 8000
        self.on_played: Callable[[str, float], None] | None = None
        self.voided = 0

    @property
    def played_up_to(self) -> float:
        """Seconds of bot audio the carrier confirmed as played."""
        return self.played_samples / self.rate

    @property
    def sent_up_to(self) -> float:
        """Seconds of bot audio sent to the carrier."""
        return self.sent_samples / self.rate

    @property
    def outstanding(self) -> list[str]:
        """Names of marks sent and not yet echoed, oldest first."""
        return list(self._outstanding)

    def sent(self, samples: int, rate: int) -> None:
        """Count ``samples`` of bot audio sent at ``rate`` Hz."""
        self.rate = rate
        self.sent_samples += samples

    def place(self, name: str | None = None) -> str:
        """Record a mark at the current send position and return its name."""
        self._seq += 1
        if name is None:
            name = f"fc-{self._seq}"
        self._outstanding[name] = self.sent_samples
        self.marked_samples = self.sent_samples
        return name

    def cleared(self) -> None:
        """The carrier's buffer was cleared: outstanding marks no longer mean "played"."""
        if self._outstanding:
            self._voided_names.update(self._outstanding)
            self._outstanding.clear()

    def echoed(self, name: str) -> bool:
        """The carrier echoed ``name``; True if that confirms playback."""
        pos = self._outstanding.pop(name, None)
        if pos is None:
            if name in self._voided_names:
                self._voided_names.discard(name)
                self.voided += 1
            else:
                logger.debug("mark %r echoed but never sent", name)
            return False
        # Echoes arrive in order; an older mark still outstanding has played as well.
        for older in [n for n, p in self._outstanding.items() if p <= pos]:
            del self._outstanding[older]
        self._confirm(name, pos)
        return True

    def all_played(self, name: str = "") -> None:
        """The carrier reported its queue drained: everything sent has played."""
        self._outstanding.clear()
        self._confirm(name, self.sent_samples)

    def _confirm(self, name: str, pos: int) -> None:
        if pos > self.played_samples:
            self.played_samples = pos
        cb = self.on_played
        if cb is not None:
            cb(name, self.played_samples / self.rate)
