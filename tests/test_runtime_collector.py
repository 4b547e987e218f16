"""CollectorPolicy: live objects go to the permanent generation, full collections stay short,
a deep collection finds what was frozen and then dropped in a cycle; the worker's state uses it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from flowcat.runtime import CollectorPolicy


class Node:
    def __init__(self) -> None:
        self.me: Any = self  # a reference cycle


def _tracked(obj: object) -> bool:
    """Whether a collection of generations 0-2 would walk ``obj`` (it is not frozen)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def policy() -> Iterator[CollectorPolicy]:
    thresholds = gc.get_threshold()
    p = CollectorPolicy()
    try:
        yield p
    finally:
        p.uninstall()
        gc.unfreeze()
        assert gc.get_threshold() == thresholds


def test_install_freezes_what_is_alive_and_turns_off_automatic_full_collections(
    policy: CollectorPolicy,
) -> None:
    before = Node()
    assert _tracked(before)
    policy.install()
    assert not _tracked(before)  # frozen: no collection walks it
    assert gc.get_threshold()[2] > 10**9
    assert policy.installed


def test_the_survivors_of_a_young_collection_are_frozen(policy: CollectorPolicy) -> None:
    policy.install()
    live = Node()
    assert _tracked(live)
    gc.collect(1)
    assert not _tracked(live)
    assert policy.stats.frozen_collections == 1
    assert policy.stats.collections[1] == 1
    # A full collection now walks only what was made since (a short pause).
    assert all(o is not live for o in gc.get_objects())


def test_a_cycle_dropped_after_it_was_frozen_is_found_only_by_a_deep_collection(
    policy: CollectorPolicy,
) -> None:
    policy.install()
    node = Node()
    gc.collect(1)  # frozen with the survivors
    del node
    assert gc.collect() == 0  # frozen: invisible to a full collection (a leak)
    assert policy.deep_collect() >= 1
    assert policy.stats.deep_collections == 1 and policy.stats.leaked >= 1


def test_idle_runs_a_deep_collection_only_once_the_frozen_set_grew(policy: CollectorPolicy) -> None:
    policy.deep_growth = 500
    policy.install()
    assert not policy.idle()
    kept = [Node() for _ in range(1000)]
    gc.collect(1)
    assert policy.idle()  # grew by 1000 > 500
    assert not policy.idle()  # measured from the deep collection on
    del kept


@pytest.mark.parametrize("scan", [True, False])
def test_scan_collects_the_cycles_that_died_before_the_freeze(scan: bool) -> None:
    async def main() -> tuple[bool, bool]:
        p = CollectorPolicy(scan=scan)
        p.install()
        try:
            keep, drop = Node(), Node()
            gone = weakref.ref(drop)
            gc.collect(1)  # promoted (and, without scan, frozen at once)
            del drop  # dies in its cycle before the scheduled scan
            await asyncio.sleep(0)
            return gone() is None, _tracked(keep)
        finally:
            p.uninstall()
            gc.unfreeze()

    collected, keep_tracked = asyncio.run(main())
    assert collected is scan  # without a scan it was frozen: left for a deep collection
    assert not keep_tracked


def test_pauses_are_measured(policy: CollectorPolicy) -> None:
    policy.install()
    gc.collect(0)
    gc.collect(2)
    assert policy.stats.collections == [1, 0, 1]
    assert policy.stats.worst_pause_ms[0] > 0 and policy.stats.worst_pause_ms[2] > 0


async def test_the_worker_state_reports_the_collector_and_tells_it_when_calls_end() -> None:
    from flowcat.server import ServerConfig, ServerState
    from flowcat.server._calls import track

    class Watch(CollectorPolicy):
        idles = 0

        def idle(self) -> bool:
            self.idles += 1
            return False

    state = ServerState(ServerConfig(capacity=2))
    assert "gc" not in state.health()
    state.collector = watch = Watch()
    assert state.health()["gc"]["collections"] == [0, 0, 0]
    state.admission.try_admit()
    state.admission.try_admit()
    second = asyncio.Event()
    one = asyncio.ensure_future(track(state, second.wait()))
    two = asyncio.ensure_future(track(state, asyncio.sleep(0)))
    await two
    assert watch.idles == 0  # a call is still live
    second.set()
    await one
    assert watch.idles == 1


@pytest.mark.parametrize("young_secs", [0.05, None])
async def test_young_generation_stays_small_while_frozen_objects_are_freed(young_secs: float | None) -> None:
    """Calls ending free frozen objects while new calls allocate: CPython's young count hardly
    moves, so without the policy's own young collections the young generation keeps growing."""
    thresholds = gc.get_threshold()
    old = [[i] for i in range(120_000)]  # the live calls of a while ago: frozen at install
    p = CollectorPolicy(young_secs=young_secs)
    p.install()
    try:
        new: list[list[list[int]]] = []
        biggest = 0
        for _ in range(50):
            for _ in range(4):  # fewer than CPython's 700 between two frees: its count stays low
                new.append([[j] for j in range(499)])  # a call starts
                del old[:500]  # another ends: its frozen objects are freed
            biggest = max(biggest, len(gc.get_objects(0)))
            await asyncio.sleep(0.06)
    finally:
        p.uninstall()
        gc.unfreeze()
    assert gc.get_threshold() == thresholds
    if young_secs:
        assert p.stats.young_ticks > 0
        assert biggest < 10_000
    else:
        assert biggest > 60_000  # CPython alone: no collection while the churn goes on


async def test_no_young_collection_of_its_own_while_the_collector_is_disabled() -> None:
    """assert_call_leaves_nothing and ``flowcat bench gc`` count what a call left with the collector
    off: the policy's own young collections must not free it first."""
    p = CollectorPolicy(young_secs=0.02)
    p.install()
    gc.disable()
    try:
        a: list[object] = []
        a.append(a)  # a cycle, dropped
        del a
        await asyncio.sleep(0.1)
        assert p.stats.young_ticks == 0
    finally:
        gc.enable()
        p.uninstall()
        gc.unfreeze()


def test_generation_one_is_collected_after_every_third_young_collection(policy: CollectorPolicy) -> None:
    policy.install()
    assert gc.get_threshold()[1] == 3
    for _ in range(6):
        gc.collect(0)
    gc.collect(1)
    assert policy.stats.frozen_collections == 1  # each generation-1 collection freezes


async def test_a_context_copied_during_a_call_does_not_keep_the_call_alive() -> None:
    """A pooled connection opened during a call keeps a copy of the call's context (uvloop
    transports and handles do): once the call ended, its record no longer holds the call."""
    import contextvars
    import weakref

    from flowcat.server import ServerConfig, ServerState
    from flowcat.server._calls import track
    from flowcat.server._session import CURRENT_CALL

    class Task:  # stands for the call's PipelineTask
        pass

    kept: list[contextvars.Context] = []
    refs: list[weakref.ref[Task]] = []

    async def call() -> None:
        record = CURRENT_CALL.get()
        assert record is not None
        record.task = task = Task()  # type: ignore[assignment]
        refs.append(weakref.ref(task))
        kept.append(contextvars.copy_context())  # e.g. a keep-alive connection's transport

    state = ServerState(ServerConfig(capacity=1))
    state.admission.try_admit()
    await asyncio.ensure_future(track(state, call()))
    record = kept[0][CURRENT_CALL]
    assert record is not None and record.task is None and record.call_id
    assert refs[0]() is None
