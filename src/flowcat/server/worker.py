"""Entry point of one worker process: ``python -m flowcat.server.worker '<json options>' <id>``."""

from __future__ import annotations

import json
import logging
import sys

from ._workers import ServeOptions, run_worker

__all__ = ["main"]


def main(argv: list[str]) -> int:
    opts = ServeOptions(**json.loads(argv[0]))
    worker_id = int(argv[1]) if len(argv) > 1 else 0
    from ._logging import configure_logging

    configure_logging(opts.log_level, opts.log_format)
    if opts.log_level > logging.INFO:  # where the worker listens is shown by default (see cli serve)
        logging.getLogger("flowcat.server").setLevel(logging.INFO)
    return run_worker(opts, worker_id)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
