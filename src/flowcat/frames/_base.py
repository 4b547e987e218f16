"""Frame base classes and the three frame kinds.

Every frame is a ``__slots__`` dataclass. Ids come from a process-wide counter
(``itertools.count``: no lock, atomic under the GIL); names are derived lazily
from the class name and id, so building a frame formats no string.

Kinds (class attribute ``kind``):

* ``SYSTEM`` — handled ahead of queued data, never dropped by an interruption.
* ``DATA`` — ordered; dropped by an interruption unless ``interruptible`` is False.
* ``CONTROL`` — ordered; dropped by an interruption unless ``interruptible`` is False.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, dataclass_transform

__all__ = [
    "CONTROL",
    "DATA",
    "SYSTEM",
    "ControlFrame",
    "DataFrame",
    "Frame",
    "SystemFrame",
    "frame_dataclass",
]

SYSTEM = 0
DATA = 1
CONTROL = 2

_next_id = itertools.count(1).__next__

_T = TypeVar("_T")


@dataclass_transform(eq_default=False, field_specifiers=(field,))
def frame_dataclass(cls: type[_T]) -> type[_T]:
    """The decorator every frame class uses (``__slots__``, identity equality)."""
    return dataclass(slots=True, eq=False)(cls)


@frame_dataclass
class Frame:
    """Base of every frame.

    Attributes:
        id: Process-unique, monotonically increasing id.
        pts: Presentation timestamp in nanoseconds, or None.
        interruptible: Whether an interruption may drop this frame while queued.
        transport_source: Name of the transport the frame came from, if any.
        transport_destination: Name of the transport the frame is meant for, if any.
        broadcast_sibling_id: Id of the twin frame sent the other way by a broadcast.
    """

    id: int = field(init=False, repr=False, default_factory=_next_id)
    pts: int | None = field(init=False, repr=False, default=None)
    interruptible: bool = field(init=False, repr=False, default=True)
    transport_source: str | None = field(init=False, repr=False, default=None)
    transport_destination: str | None = field(init=False, repr=False, default=None)
    broadcast_sibling_id: int | None = field(init=False, repr=False, default=None)
    _metadata: dict[str, Any] | None = field(init=False, repr=False, default=None)

    kind: ClassVar[int] = DATA

    @property
    def name(self) -> str:
        """``ClassName#id`` — formatted only when asked for."""
        return f"{type(self).__name__}#{self.id}"

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form metadata, created on first use."""
        md = self._metadata
        if md is None:
            md = self._metadata = {}
        return md

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = value

    def __str__(self) -> str:
        return self.name


@frame_dataclass
class SystemFrame(Frame):
    """Out-of-band frame: processed ahead of queued data, never dropped by interruptions."""

    interruptible: bool = field(init=False, repr=False, default=False)
    kind: ClassVar[int] = SYSTEM


@frame_dataclass
class DataFrame(Frame):
    """Ordered payload frame (audio, text, images, LLM messages)."""

    kind: ClassVar[int] = DATA


@frame_dataclass
class ControlFrame(Frame):
    """Ordered control frame (end, response boundaries, settings)."""

    kind: ClassVar[int] = CONTROL
