"""Test helpers: a frame-sequence harness and a virtual clock."""

from __future__ import annotations

from ._clock import VirtualTimeEventLoop as VirtualTimeEventLoop
from ._clock import run_virtual as run_virtual
from ._harness import CaptureProcessor as CaptureProcessor
from ._harness import SleepFrame as SleepFrame
from ._harness import run_test as run_test
from ._harness import upstream as upstream

__all__ = ["CaptureProcessor", "SleepFrame", "VirtualTimeEventLoop", "run_test", "run_virtual", "upstream"]
