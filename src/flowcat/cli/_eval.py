"""``flowcat eval <name>``: offline evaluations against local fakes.

``flowcat eval context-relay``: the ContextRelay A/B (:mod:`flowcat.bench.context_relay_eval`)
against :class:`flowcat.testing.fakes.FakeRealtimeMemory` (and, for the summarizer of the
``relay+summary`` arm, :class:`flowcat.testing.fakes.SummarizingOpenAI`): a table, ``--json``, ``--plot FILE``
(matplotlib, the ``plot`` extra) and ``--results FILE`` (the "ContextRelay A/B" section).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from ..bench.context_relay_eval import ARMS, ArmResult, run_eval
from ..bench.context_relay_report import plot, render_section, table, write_section
from ..testing.fakes import FakeRealtimeMemory, SummarizingOpenAI

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``eval`` and its evaluations."""
    parser = sub.add_parser("eval", help="run an offline evaluation against local fakes")
    eval_sub = parser.add_subparsers(dest="eval", metavar="EVAL")
    p = eval_sub.add_parser("context-relay", help="ContextRelay A/B: no compaction, sliding window, relay")
    p.add_argument("--minutes", type=float, default=15.0, help="simulated length of the call (default 15)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default {','.join(ARMS)})")
    p.add_argument("--window-tokens", type=int, default=4000,
                   help="the sliding window's post_instructions token limit (default 4000)")
    p.add_argument("--relay-budget", type=int, default=2000,
                   help="ContextRelay max_context_tokens (default 2000)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", type=Path, default=None, help="write input tokens per turn over time (PNG)")
    p.add_argument("--results", type=Path, default=None, help="write the section into this RESULTS.md")
    p.set_defaults(func=main)
    parser.set_defaults(func=lambda _a: (parser.print_help(), 2)[1])


def main(args: argparse.Namespace) -> int:
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"unknown arm(s): {', '.join(unknown)} (choose from {', '.join(ARMS)})")
        return 2
    results: list[ArmResult] = asyncio.run(run_eval(
        FakeRealtimeMemory, minutes=args.minutes, arms=arms, window_tokens=args.window_tokens,
        relay_budget=args.relay_budget, make_summary_server=SummarizingOpenAI))
    png = args.plot
    if png is not None and not plot(results, png):
        print("matplotlib is missing (pip install 'flowcat[plot]'): no plot")
        png = None
    if args.json:
        print(json.dumps({"minutes": args.minutes, "arms": [r.as_dict() for r in results]}, indent=2))
    else:
        print(table(results, args.minutes))
    if args.results is not None:
        write_section(args.results, render_section(results, args.minutes, png, args.results.parent))
    return 0
