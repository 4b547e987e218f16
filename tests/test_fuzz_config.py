"""Fuzzing the config loader: :func:`flowcat.config.parse_config` raises :class:`ConfigError` only.

Inputs: the example configs (examples/agents/*.yaml) as YAML and as JSON with fields
replaced, removed and retyped; the same texts truncated or with characters spliced
in; YAML's own odd corners (tags, anchors and aliases, complex keys, merge keys,
deep nesting); random text. See tests/_fuzz.py for the settings and the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from _fuzz import FUZZ, corpus_params, deep_json, mutated_json
from flowcat.config import parse_config
from flowcat.errors import ConfigError

pytestmark = pytest.mark.fuzz

EXAMPLES_DIR = Path(__file__).parent.parent / "examples" / "agents"
SEED_TEXTS = [p.read_text() for p in sorted(EXAMPLES_DIR.glob("*.yaml"))]
SEEDS = [yaml.safe_load(t) for t in SEED_TEXTS]

YAML_ODDITIES = [
    "? [a, b]\n: 1\n",  # a complex (unhashable) key
    "agents:\n  ? {x: 1}\n  : {}\n",
    "!!python/object:os.system {}\n",
    "agents: !!binary aGVsbG8=\n",
    "a: &a [1, 2]\nb: *a\nagents: *a\n",
    "base: &b {brain: {type: llm}}\nagents:\n  x:\n    <<: *b\n",
    "agents:\n  x:\n    <<: [1, 2]\n",
    "- 1\n- 2\n",
    "just a string",
    "42",
    "agents: {}\n---\nagents: {}\n",
    "\t\x00\x07",
    "agents:\n  1: {}\n  null: {}\n  true: {}\n",
    "agents: {x: {brain: {type: llm, llm: {provider: openai, api_key: 12}}}}\n",
    "agents: [" * 40 + "]" * 40,
    "%YAML 1.1\n%TAG ! tag:x,2000:\n--- !foo\na: 1\n",
    "a: 2001-12-14t21:59:43.10-05:00\nb: .nan\nc: 0x1F\nd: 1_000\n",
]


def check_config(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc)  # a message for the operator


@st.composite
def _configs(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["json", "yaml", "yaml", "truncated", "spliced", "oddity", "random", "deep"]))
    if kind == "random":
        return draw(st.text(max_size=200))
    if kind == "oddity":
        return draw(st.sampled_from(YAML_ODDITIES))
    if kind == "deep":
        depth = draw(st.sampled_from([50, 400, 2000]))
        return draw(st.sampled_from([deep_json(depth), "a:\n" + "".join(" " * i + "- \n" for i in range(depth)),
                                     "{a: " * depth + "}" * depth]))
    data = draw(mutated_json(SEEDS))
    text = json.dumps(data, indent=1) if kind == "json" else yaml.safe_dump(data, allow_unicode=draw(st.booleans()))
    if kind == "truncated":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "spliced":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from(["&a ", "*a", "!!str ", "? ", "<<: ", ": ", "\t", "{", "[", "'"])) + text[at:]
    return text


def test_examples_parse() -> None:  # the seeds are valid configs
    for text in SEED_TEXTS:
        parse_config(text, "example.yaml", EXAMPLES_DIR)


@pytest.mark.parametrize("text", YAML_ODDITIES)
def test_yaml_oddities_raise_config_error_only(text: str) -> None:
    check_config(text)


@FUZZ
@given(text=_configs())
def test_parse_config_raises_config_error_only(text: str) -> None:
    check_config(text)


@pytest.mark.parametrize(("file", "message"), corpus_params("config"))
def test_config_corpus(file: str, message: str | bytes) -> None:
    assert isinstance(message, str)
    check_config(message)
