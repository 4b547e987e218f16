"""Check that a finished call leaves nothing behind: no reference cycle, no task.

A call's objects should be freed by reference counting the moment the last
reference to the call goes, so that the cycle collector never has to look for
them and the process can keep long-lived objects frozen out of its way (see
:mod:`flowcat.runtime._collector`). :func:`assert_call_leaves_nothing` runs a
call with the collector disabled, then collects with ``gc.DEBUG_SAVEALL`` and
fails when any object of the given modules was left to the collector (it was
part of, or only reachable from, a reference cycle), or when an asyncio task
started during the call is still running after a bounded wait.

The call must be built and run *inside* ``run`` and ``run`` must return plain
data (frames, counters, bytes): an object of the call still referenced from
outside is not garbage, so its cycles could not be seen.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ..errors import CallLeftovers

__all__ = ["CallLeftovers", "assert_call_leaves_nothing", "call_leftovers", "describe_cycles"]

T = TypeVar("T")

_OWNED = ("flowcat",)


def _leftovers_error(cycles: list[Any], tasks: list[asyncio.Task[Any]], detail: str) -> CallLeftovers:
    counts = Counter(_type_name(o) for o in cycles)
    parts = []
    if cycles:
        kinds = ", ".join(f"{n} × {k}" for k, n in counts.most_common(12))
        parts.append(f"{len(cycles)} objects left in reference cycles ({kinds})")
    if tasks:
        parts.append(f"{len(tasks)} tasks still running: " + ", ".join(t.get_name() for t in tasks[:8]))
    message = "; ".join(parts) + (f"\n{detail}" if detail else "")
    return CallLeftovers(message, cycles, list(tasks))


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _owned(obj: Any, modules: tuple[str, ...]) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith(modules)


def call_leftovers(modules: Iterable[str] = _OWNED) -> tuple[list[Any], list[Any]]:
    """Collect now and return ``(owned, garbage)``: the objects of ``modules`` that were
    left in reference cycles, and everything the collection found.

    Call it with the collector disabled since the call began (else an automatic
    collection may already have freed some of them), after a ``gc.collect()``
    taken before the call, so that older garbage is not counted.
    """
    mods = tuple(modules)
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(flags)
    return [o for o in garbage if _owned(o, mods)], garbage


def describe_cycles(owned: list[Any], garbage: list[Any], limit: int = 24) -> str:
    """The references between garbage objects that point at ``owned`` ones, one per line
    (``Referrer.attribute -> Target``): the edges a teardown should cut."""
    ids = {id(o) for o in garbage}
    edges: Counter[str] = Counter()
    for target in owned:
        for ref in gc.get_referrers(target):
            if id(ref) not in ids:
                continue
            edges[f"{_holder(ref, target, garbage)} -> {type(target).__qualname__}"] += 1
    return "\n".join(f"  {n} × {e}" for e, n in edges.most_common(limit))


def _holder(ref: Any, target: Any, garbage: list[Any]) -> str:
    """``Type.attr`` naming how ``ref`` holds ``target`` (best effort)."""
    name = type(ref).__qualname__
    if isinstance(ref, dict):
        # An instance's __dict__: name its owner and the key.
        key = next((k for k, v in ref.items() if v is target), None)
        owner = next((o for o in garbage if _dict_of(o) is ref), None)
        if owner is not None:
            return f"{type(owner).__qualname__}.{key}"
        return f"dict[{key!r}]"
    for cls in type(ref).__mro__:
        for slot in cls.__dict__.get("__slots__", ()):
            try:
                if getattr(ref, slot) is target:
                    return f"{name}.{slot}"
            except Exception:  # noqa: S112 - an unset slot, a dead proxy: not this one
                continue
    if hasattr(ref, "__self__") and getattr(ref, "__self__", None) is target:
        fn = getattr(ref, "__func__", None)
        return f"bound method {getattr(fn, '__qualname__', '?')}"
    return name


def _dict_of(obj: Any) -> Any:
    try:
        return getattr(obj, "__dict__", None)
    except Exception:  # a dead weak proxy
        return None


async def assert_call_leaves_nothing(
    run: Callable[[], Awaitable[T]],
    *,
    modules: Iterable[str] = _OWNED,
    task_timeout: float = 5.0,
) -> T:
    """Run ``await run()`` and check that what it built leaves nothing behind.

    With the cycle collector disabled while ``run`` builds and runs the call, every
    object of ``modules`` (type defined in a module whose name starts with one of
    them; default ``flowcat``) must be freed by reference counting once ``run``
    returned; and every asyncio task started meanwhile must be done within
    ``task_timeout`` seconds.

    Returns:
        What ``run`` returned (keep it to plain data: see the module docstring).

    Raises:
        CallLeftovers: Objects were left in reference cycles or tasks still run;
            the message names the types and the references that hold them.
    """
    mods = tuple(modules)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = asyncio.all_tasks()
        result = await run()
        tasks = _started_since(before)
        if tasks:
            await asyncio.wait(tasks, timeout=task_timeout)
        # Let done-callbacks (a task's removal from its owner, closing transports) run.
        for _ in range(3):
            await asyncio.sleep(0)
        pending = [t for t in _started_since(before) if not t.done()]
        del tasks
        owned, garbage = call_leftovers(mods)
        if owned or pending:
            detail = describe_cycles(owned, garbage)
            del garbage
            raise _leftovers_error(owned, pending, detail)
        return result
    finally:
        if enabled:
            gc.enable()


def _started_since(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t not in before and t is not me]
