"""Templates: ``{{var}}``, ``{{var | fallback}}``, nested paths (``{{caller.name}}``, ``{{items.0}}``)
and the time built-ins ``current_time``, ``current_date``, ``current_weekday`` (in the graph's
zone, or another with a suffix: ``{{current_time_America/New_York}}``).

The clock is injectable (``clock() -> aware datetime``) so tests are deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Clock", "render", "resolve", "utc_now"]

Clock = Callable[[], datetime]

_TAG = re.compile(r"\{\{\s*([^{}|]+?)\s*(?:\|\s*([^{}]*?)\s*)?\}\}")
_BUILTIN = re.compile(r"current_(time|date|weekday)(?:_(.+))?$")
_MISSING = object()


def utc_now() -> datetime:
    return datetime.now(UTC)


def resolve(variables: Mapping[str, Any], path: str) -> Any:
    """``a.b.0`` through mappings, attributes and sequences; a missing step gives ``_MISSING``."""
    cur: Any = variables
    for step in path.split("."):
        if isinstance(cur, Mapping):
            cur = cur.get(step, _MISSING)
        elif isinstance(cur, list | tuple) and step.lstrip("-").isdigit():
            i = int(step)
            cur = cur[i] if -len(cur) <= i < len(cur) else _MISSING
        else:
            cur = getattr(cur, step, _MISSING) if not step.startswith("_") else _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def _builtin(name: str, tz: str, clock: Clock) -> str | None:
    m = _BUILTIN.match(name)
    if m is None:
        return None
    try:
        zone = ZoneInfo(m.group(2) or tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    now = clock().astimezone(zone)
    kind = m.group(1)
    if kind == "time":
        return now.strftime("%H:%M")
    if kind == "date":
        return now.strftime("%Y-%m-%d")
    return now.strftime("%A")


def render(template: str, variables: Mapping[str, Any], *, tz: str = "UTC", clock: Clock = utc_now) -> str:
    """``template`` with every ``{{...}}`` filled: the variable, else the fallback, else empty.

    A variable of the call wins over a built-in of the same name.
    """

    def fill(m: re.Match[str]) -> str:
        name, fallback = m.group(1), m.group(2)
        value = resolve(variables, name)
        if value is _MISSING or value is None or value == "":
            built = _builtin(name, tz, clock)
            if built is not None:
                return built
            return _unquote(fallback) if fallback is not None else ""
        return str(value)

    return _TAG.sub(fill, template)


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s
