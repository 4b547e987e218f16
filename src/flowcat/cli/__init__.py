"""The ``flowcat`` command.

Each subcommand lives in its own module exposing ``register(subparsers)``, which
adds a parser whose ``func`` attribute is ``main(args) -> int``. Benchmarks are
``flowcat bench <name>``; each lives in :mod:`flowcat.bench` as a module exposing
``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import typing

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# Subcommand modules, in help order. A module that is absent is skipped.
_COMMANDS = ("_pipeline", "_ws_echo", "_serve", "_sip", "_config", "_console", "_bench", "_eval")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="flowcat", description="Real-time voice agent runtime.")
    parser.add_argument("--version", action="version", version=f"flowcat {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowcat`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
