"""An echo app that keeps something of every call (a deliberate leak for tests/test_bench_soak.py)."""

from __future__ import annotations

from typing import Any

from flowcat.server import CallInfo, default_app

KEPT: list[Any] = []


class LeakedCallState:
    """What the leaky app keeps of each call."""

    def __init__(self, call: CallInfo) -> None:
        self.call_id = id(call)


def leaky_app(call: CallInfo) -> Any:
    KEPT.append(LeakedCallState(call))
    return default_app(call)
