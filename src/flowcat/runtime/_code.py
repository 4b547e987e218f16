"""Copies of functions with their own code objects."""

from __future__ import annotations

import types
from typing import Any

__all__ = ["clone_function", "clone_of"]


def clone_function(fn: Any) -> Any:
    """A copy of function ``fn`` with its own code object (own inline caches)."""
    clone = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    clone.__kwdefaults__ = fn.__kwdefaults__
    clone.__qualname__ = fn.__qualname__
    clone.__doc__ = fn.__doc__
    clone.__module__ = fn.__module__
    clone.__annotations__ = fn.__annotations__
    clone.__dict__["_cloned_from"] = clone_of(fn)
    return clone


def clone_of(fn: Any) -> Any:
    """The original function of a clone (``fn`` itself if it is not one)."""
    return getattr(fn, "_cloned_from", fn)
