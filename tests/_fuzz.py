"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py): settings, input strategies, the corpus.

Every parser is fuzzed with hypothesis. The number of inputs per target comes from
``FLOWCAT_FUZZ_EXAMPLES`` (default 200, so CI stays fast); the long run is::

    FLOWCAT_FUZZ_EXAMPLES=10000 uv run --frozen pytest tests/test_fuzz_*.py -p no:randomly

Runs are derandomized (the same inputs every time) unless ``FLOWCAT_FUZZ_RANDOM=1``.
Inputs that found a bug, and a few interesting ones, are kept under
``tests/fixtures/fuzz/<target>/`` and replayed by every run (``corpus(target)``):
``*.txt`` is a text message (UTF-8), ``*.bin`` a binary one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FLOWCAT_FUZZ_EXAMPLES", "200"))

settings.register_profile(
    "flowcat-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FLOWCAT_FUZZ_RANDOM") != "1",
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
FUZZ = settings.get_profile("flowcat-fuzz")

CORPUS = Path(__file__).parent / "fixtures" / "fuzz"


def corpus(target: str) -> list[tuple[str, str | bytes]]:
    """The saved inputs of ``target``: ``(file name, message)``, sorted by name."""
    out: list[tuple[str, str | bytes]] = []
    folder = CORPUS / target
    for path in sorted(folder.glob("*")) if folder.is_dir() else ():
        if path.suffix == ".txt":
            out.append((path.name, path.read_text(encoding="utf-8")))
        elif path.suffix == ".bin":
            out.append((path.name, path.read_bytes()))
    return out


def corpus_params(target: str) -> list[Any]:
    """``corpus(target)`` as pytest params ``(file, message)`` with the file name as id."""
    import pytest

    return [pytest.param(f, m, id=f) for f, m in corpus(target)]


# ------------------------------------------------------------------ strategies

_ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1 << 31, 1 << 63, 10**30, -(10**30)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "inbound", "outbound", "media", "start", "stop", "dtmf", "mark", "PCMU", "L16",
                     "audio/x-mulaw", "audio/x-l16;rate=16000", "\x00", "\ud7ff\ue000", "💥" * 3, "A" * 5000]),
)
JSON_VALUES = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _paths(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*here, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*here, i))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def mutated_json(draw: st.DrawFn, seeds: list[Any]) -> Any:
    """One of ``seeds`` (JSON values) with 1-3 fields replaced, removed or added."""
    obj = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(obj)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "retype"]))
        if not path:
            if op in ("replace", "retype"):
                obj = draw(JSON_VALUES)
            continue
        parent = _get(obj, path[:-1])
        key = path[-1]
        if op == "replace":
            parent[key] = draw(JSON_VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        else:  # the same value as another type
            value = parent[key]
            parent[key] = draw(st.sampled_from([str(value), [value], {"v": value}, None, 7, 7.5, True]))
    return obj


def deep_json(depth: int) -> str:
    """Nesting deeper than the interpreter's recursion limit (json.loads raises RecursionError)."""
    return "[" * depth + "]" * depth


@st.composite
def messages_from(draw: st.DrawFn, seeds: list[Any]) -> str | bytes:
    """A WebSocket message near ``seeds`` (JSON values): mutated, truncated, binary, huge or random."""
    kind = draw(st.sampled_from(["json", "json", "json", "truncated", "bytes", "spliced", "random_text",
                                 "random_bytes", "deep", "huge"]))
    if kind == "random_text":
        return draw(st.text(max_size=200))
    if kind == "random_bytes":
        return draw(st.binary(max_size=400))
    if kind == "deep":
        return deep_json(draw(st.sampled_from([100, 2000, 100_000])))
    text = json.dumps(draw(mutated_json(seeds)), ensure_ascii=draw(st.booleans()))
    if kind == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "bytes":
        return text.encode()
    if kind == "spliced":  # random characters in the middle of a valid-looking message
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(min_size=1, max_size=8)) + text[at:]
    if kind == "huge":  # one string field a megabyte long
        return text.replace('"', '"' + "9" * (1 << 20), 1) if '"' in text else text * 1000
    return text


def chunked(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at random places (a network read boundary anywhere)."""
    rnd = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        n = rnd.choice((1, 2, 3, 7, 64, 4096))
        out.append(data[pos : pos + n])
        pos += n
    return out
