"""Test helpers: a frame-sequence harness, a virtual clock, and a check that a call leaves nothing behind."""

from __future__ import annotations

from ._clock import VirtualTimeEventLoop as VirtualTimeEventLoop
from ._clock import run_virtual as run_virtual
from ._harness import CaptureProcessor as CaptureProcessor
from ._harness import SleepFrame as SleepFrame
from ._harness import run_test as run_test
from ._harness import upstream as upstream
from ._leftovers import CallLeftovers as CallLeftovers
from ._leftovers import assert_call_leaves_nothing as assert_call_leaves_nothing
from ._leftovers import call_leftovers as call_leftovers

__all__ = [
    "CallLeftovers",
    "CaptureProcessor",
    "SleepFrame",
    "VirtualTimeEventLoop",
    "assert_call_leaves_nothing",
    "call_leftovers",
    "run_test",
    "run_virtual",
    "upstream",
]
