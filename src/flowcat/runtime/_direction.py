"""Frame direction."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["FrameDirection"]


class FrameDirection(IntEnum):
    """Which way a frame travels: towards the output (down) or back towards the input (up)."""

    DOWNSTREAM = 1
    UPSTREAM = 2
