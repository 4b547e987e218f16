"""Test helpers: a frame-sequence harness, a virtual clock, a check that a call leaves nothing behind,
and a fault-injecting proxy for provider-fault tests."""

from __future__ import annotations

from ._clock import VirtualTimeEventLoop as VirtualTimeEventLoop
from ._clock import run_virtual as run_virtual
from ._fault_proxy import Fault as Fault
from ._fault_proxy import FaultProxy as FaultProxy
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
    "Fault",
    "FaultProxy",
    "SleepFrame",
    "VirtualTimeEventLoop",
    "assert_call_leaves_nothing",
    "call_leftovers",
    "run_test",
    "run_virtual",
    "upstream",
]
