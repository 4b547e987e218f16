"""Typed frames: the units that flow through a pipeline.

Pipecat's class names and semantics. See ``docs/frames.md`` for the full list with
each frame's kind (system, data, control) and whether an interruption drops it.
"""

from __future__ import annotations

from . import _base, _control, _data, _llm, _system, _turns, _values
from ._base import *  # noqa: F403
from ._control import *  # noqa: F403
from ._data import *  # noqa: F403
from ._llm import *  # noqa: F403
from ._system import *  # noqa: F403
from ._turns import *  # noqa: F403
from ._values import *  # noqa: F403

# One list of names: each submodule's ``__all__`` (the package re-exports them all).
__all__ = sorted(
    [
        *_base.__all__,
        *_control.__all__,
        *_data.__all__,
        *_llm.__all__,
        *_system.__all__,
        *_turns.__all__,
        *_values.__all__,
    ]
)
