"""Declarative configuration of a voice agent (empty: later issues fill it).

Layer: above :mod:`flowcat.agent` (it builds pipelines from every layer below),
below :mod:`flowcat.server` and :mod:`flowcat.cli`, which load it.

Planned: the configuration schema (typed, validated; a mistake raises
:class:`flowcat.errors.ConfigError` naming the setting and the value) and loading it
from files and the environment.
"""

from __future__ import annotations

__all__: list[str] = []
