"""The provider conformance suite (see ``docs/services.md``, "Adding a provider").

A provider test module supplies a :class:`FakeProvider` subclass (its vendor's
protocol on 127.0.0.1) and a service factory in a :class:`ConformanceTarget`, then
runs every scenario of :func:`scenarios` with :func:`run_scenario`.
"""

from __future__ import annotations

from ._fake import Behaviour as Behaviour
from ._fake import FakeProvider as FakeProvider
from ._suite import ConformanceTarget as ConformanceTarget
from ._suite import Scenario as Scenario
from ._suite import run_scenario as run_scenario
from ._suite import scenarios as scenarios

__all__ = ["Behaviour", "ConformanceTarget", "FakeProvider", "Scenario", "run_scenario", "scenarios"]
