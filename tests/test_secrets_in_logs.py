"""The session-wide leak check of tests/conftest.py: a fake credential in any log record
(any logger, any level, message or exception) is caught."""

from __future__ import annotations

import logging

import pytest

import conftest
from _secrets_registry import SECRETS


@pytest.mark.leaks_secret
def test_a_secret_in_any_logger_at_debug_is_caught() -> None:
    handler = conftest._leak_handler
    assert handler is not None
    before = len(handler.leaks)
    logging.getLogger("some.library").debug("connecting with %s", SECRETS[1])
    try:
        raise ValueError("bad key " + SECRETS[2])
    except ValueError:
        logging.getLogger("flowcat.x").warning("failed", exc_info=True)
    logging.getLogger("flowcat.x").info("nothing to see: %s", "***")
    leaks = handler.leaks[before:]
    assert len(leaks) == 2
    assert leaks[0].startswith("some.library DEBUG") and leaks[1].startswith("flowcat.x WARNING")
