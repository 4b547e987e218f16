"""``flowcat bench <name>``: benchmarks that compare against pipecat in the same run."""

from __future__ import annotations

import importlib
from typing import Any

# name -> module under flowcat.bench; a missing module is skipped.
_BENCHES = ("micro", "vad", "capacity", "gc", "agent", "sip", "soak")


def register(sub: Any) -> None:
    """Add ``bench`` and its available benchmarks."""
    parser = sub.add_parser("bench", help="run a benchmark (prints a table, or JSON with --json)")
    bench_sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    for name in _BENCHES:
        try:
            module = importlib.import_module(f"flowcat.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(name):
                continue
            raise
        p = bench_sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.main)
    parser.set_defaults(func=lambda _a: (parser.print_help(), 2)[1])
