"""``flowcat config check FILE`` and ``flowcat config schema``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["main", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="check a configuration file, or print its JSON Schema")
    cmds = p.add_subparsers(dest="config_command", metavar="ACTION")
    check = cmds.add_parser("check", help="validate FILE and every agent in it (providers, extras, keys)")
    check.add_argument("file")
    check.set_defaults(func=main)
    schema = cmds.add_parser("schema", help="print the JSON Schema of configuration files")
    schema.set_defaults(func=main)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def main(args: argparse.Namespace) -> int:
    from ..config import FlowcatConfig, check_agent, load_config
    from ..errors import ConfigError

    if args.config_command == "schema":
        print(json.dumps(FlowcatConfig.model_json_schema(), indent=2))
        return 0
    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    failed = 0
    for name in loaded.config.agents:
        problems = check_agent(loaded, name)
        if problems:
            failed += 1
            for problem in problems:
                print(problem, file=sys.stderr)
        else:
            print(f"{loaded.file}: agent {name!r}: ok")
    return 1 if failed else 0
