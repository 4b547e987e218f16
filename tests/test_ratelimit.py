"""The one rate-limited bad-input logger: the first N lines in full, then one in every 1000th."""

from __future__ import annotations

import logging

import pytest

from flowcat._ratelimit import RateLimitedLog
from flowcat.errors import ConfigError


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.ratelimit"]


def test_first_n_then_every_1000th_with_context(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), first=20, every=1000)
    caplog.set_level(logging.DEBUG, logger="test.ratelimit")
    logged = [
        n for n in range(1, 3001) if log(n, "call %s: skipped message #%d (%s)", "c-7", n, "odd length")
    ]
    assert logged == [*range(1, 21), 1000, 2000, 3000]
    lines = _lines(caplog)
    assert len(lines) == 23
    assert lines[0] == "call c-7: skipped message #1 (odd length)"
    assert (
        lines[19] == "call c-7: skipped message #20 (odd length) (further ones: one in every 1000 is logged)"
    )
    assert lines[20] == "call c-7: skipped message #1000 (odd length)"
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_level_and_other_limits(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), first=2, every=5, level=logging.INFO)
    caplog.set_level(logging.DEBUG, logger="test.ratelimit")
    assert [n for n in range(1, 12) if log.due(n)] == [1, 2, 5, 10]
    for n in range(1, 12):
        log(n, "change #%d", n)
    assert _lines(caplog) == [
        "change #1",
        "change #2 (further ones: one in every 5 is logged)",
        "change #5",
        "change #10",
    ]
    assert {r.levelno for r in caplog.records} == {logging.INFO}


def test_nothing_is_formatted_when_not_due() -> None:
    class Loud:
        def __str__(self) -> str:  # would fail the test if the line were formatted
            raise AssertionError("formatted a line that is not logged")

    log = RateLimitedLog(logging.getLogger("test.ratelimit"), first=1, every=1000)
    assert log(2, "%s", Loud()) is False


def test_bad_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        RateLimitedLog(logging.getLogger("x"), every=0)
    with pytest.raises(ConfigError):
        RateLimitedLog(logging.getLogger("x"), first=-1)


def test_one_copy_of_the_rule_in_src() -> None:
    """The 'first N, then every 1000th' rule lives only in _ratelimit (no inline copies)."""
    import re
    from pathlib import Path

    import flowcat

    root = Path(flowcat.__file__).parent
    pattern = re.compile(r"%\s*(1000|100)\s*==\s*0")
    hits = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "_ratelimit.py" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert hits == []
