"""A fake OpenAI Chat Completions server that summarizes, by a fixed extractive rule: the
summarizing LLM of the ContextRelay eval (``flowcat eval context-relay``, arm ``relay+summary``).

It speaks the wire of :class:`FakeOpenAI` (``POST /v1/chat/completions``, streamed as SSE; see
that module for the OpenAI reference pages) and answers every request with a summary of it made
by this rule (:func:`extractive_summary`), a stand-in for what an LLM asked by
:class:`~flowcat.agent.LLMSummarizer` would write:

1. The word cap is the ``N`` of "under N words" in the system message (120 if absent).
2. The text to summarize is the last user message: an optional ``Earlier summary: …`` line, then
   ``role: text`` lines. It is split into sentences (at ``.``, ``?`` or ``!`` followed by a space,
   and at line ends); a sentence from a ``user:`` line is prefixed ``Caller:``, from an
   ``assistant:`` line ``Agent:``; the earlier summary's sentences are kept as they are.
3. A sentence is kept when it carries a fact: a digit, a month name, or a capitalised word that
   does not start the sentence (a name). Duplicates are dropped.
4. The kept sentences, earlier ones first, are joined with spaces and cut at ``N`` words.

So it never invents anything and keeps every fact-bearing sentence while the summary has room
(earlier facts win when it has none); it drops small talk entirely. A real LLM paraphrases and can
drop or garble facts: this fake measures the relay's mechanics and token budget, not a model's
summary quality (``docs/context-relay.md``, "Limits").
"""

from __future__ import annotations

import re
from typing import Any

from ._openai import FakeOpenAI, Reply

__all__ = ["SummarizingOpenAI", "extractive_summary"]

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_FACT = re.compile(r"\d|\b(?:" + "|".join(_MONTHS) + r")\b|(?<=\w )[A-Z][a-z]+")
_SPLIT = re.compile(r"(?<=[.?!])\s+")
_CAP = re.compile(r"under (\d+) words")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def extractive_summary(body: dict[str, Any]) -> str:
    """The summary the fake answers a Chat Completions request ``body`` with (module docstring)."""
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    system = " ".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    cap_match = _CAP.search(system)
    cap = int(cap_match.group(1)) if cap_match else 120
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    sentences: list[str] = []
    for line in (users[-1] if users else "").splitlines():
        line = line.strip()
        prefix = ""
        if line.startswith("Earlier summary: "):
            line = line.removeprefix("Earlier summary: ")
        elif line.startswith("user: "):
            line, prefix = line.removeprefix("user: "), "Caller: "
        elif line.startswith("assistant: "):
            line, prefix = line.removeprefix("assistant: "), "Agent: "
        for sentence in _SPLIT.split(line):
            sentence = sentence.strip()
            if not sentence or not _FACT.search(sentence):
                continue
            if prefix and not sentence.startswith(prefix):
                sentence = prefix + sentence
            if sentence not in sentences:
                sentences.append(sentence)
    return " ".join(" ".join(sentences).split()[:cap])


class SummarizingOpenAI(FakeOpenAI):
    """:class:`FakeOpenAI` whose every reply is :func:`extractive_summary` of the request.

    Attributes:
        summaries: ``(request characters, summary)`` per request, in order.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(responder=self._summarize, **kw)
        self.summaries: list[tuple[int, str]] = []

    def _summarize(self, body: dict[str, Any]) -> Reply:
        summary = extractive_summary(body)
        chars = sum(len(_text(m.get("content"))) for m in body.get("messages", []) if isinstance(m, dict))
        self.summaries.append((chars, summary))
        return Reply(summary)
