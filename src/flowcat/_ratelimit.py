"""One rate-limited logger for bad input, usable from every layer (it imports only :mod:`logging`).

Bad input from a peer (a malformed carrier message, an odd-length audio packet, a
refused connection) is logged with context and survived. A misbehaving peer can send
thousands of them a second, so each kind is logged in full the first ``first``
times and afterwards once in every ``every`` occurrences, the count in the message
telling how many there were. Whoever sees the input keeps the count (a public
attribute such as ``bad_messages``, which tests and health checks read); this
module only decides whether occurrence ``n`` is logged, and logs it::

    _BAD = RateLimitedLog(logger)

    self.bad_messages += 1
    _BAD(self.bad_messages, "%s: skipped message #%d (%s)", self.name, self.bad_messages, reason)

The check is two integer comparisons; nothing is formatted unless the line is logged.
"""

from __future__ import annotations

import logging

from .errors import ConfigError

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs occurrence ``n`` of one kind of event if it is among the first ``first`` or a multiple of ``every``.

    Args:
        logger: Where the lines go.
        first: How many occurrences are logged in full (per counter, e.g. per call).
        every: After those, one in every ``every`` occurrences is logged.
        level: The log level (WARNING for bad input; INFO for notable but harmless changes).
    """

    __slots__ = ("every", "first", "level", "logger")

    def __init__(
        self, logger: logging.Logger, *, first: int = 20, every: int = 1000, level: int = logging.WARNING
    ) -> None:
        if first < 0 or every < 1:
            raise ConfigError(f"first must be >= 0 and every >= 1, got {first} and {every}")
        self.logger = logger
        self.first = first
        self.every = every
        self.level = level

    def due(self, n: int) -> bool:
        """Whether occurrence ``n`` (counting from 1) is one that is logged."""
        return n <= self.first or n % self.every == 0

    def __call__(self, n: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` if occurrence ``n`` is due; returns whether it was logged.

        The line for occurrence ``first`` says that from then on only one in ``every`` is logged.
        """
        if n > self.first and n % self.every:
            return False
        if n == self.first:
            self.logger.log(self.level, msg + " (further ones: one in every %d is logged)", *args, self.every)
        else:
            self.logger.log(self.level, msg, *args)
        return True
