"""Text aggregation for TTS: turn a stream of LLM tokens into speakable units.

:class:`BaseTextAggregator` is the seam (sentences, clauses, whole responses, custom
markup); :class:`SentenceAggregator` is the default. It cuts after ``.``, ``!``,
``?``, ``…`` (and their CJK forms) followed by white space, and does not cut:

* after common abbreviations (``Mr.``, ``Dr.``, ``e.g.``, ``etc.`` ...) and initials (``J. R.``);
* inside numbers, versions, URLs and e-mail addresses (no white space follows the dot);
* after a list number at the start of a line (``1. First``);
* after a ``.`` followed by a lower-case word (``approx. five``) — so a ``.`` followed
  only by white space waits for the next word before deciding.

CJK sentence enders need no following space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["BaseTextAggregator", "SentenceAggregator", "SimpleTextAggregator"]

_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx dept est fig inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec no nos vol pp ed eds p.m a.m u.s u.k""".split()
)
_ENDERS = ".!?…"
_CJK_ENDERS = "。！？"
_CLOSERS = "\"')]}»”’"


class BaseTextAggregator(ABC):
    """Collects text and hands out complete units."""

    @abstractmethod
    def aggregate(self, text: str) -> list[str]:
        """Add ``text``; return the units it completed (possibly none)."""

    @abstractmethod
    def flush(self) -> str:
        """Return what is pending (may be empty) and start over."""

    def reset(self) -> None:
        """Drop what is pending (interruption)."""
        self.flush()

    @property
    @abstractmethod
    def text(self) -> str:
        """What is pending."""


class SimpleTextAggregator(BaseTextAggregator):
    """No cutting: everything until the flush is one unit (whole responses)."""

    def __init__(self) -> None:
        self._buf: list[str] = []

    def aggregate(self, text: str) -> list[str]:
        self._buf.append(text)
        return []

    def flush(self) -> str:
        out = "".join(self._buf).strip()
        self._buf.clear()
        return out

    @property
    def text(self) -> str:
        return "".join(self._buf)


class SentenceAggregator(BaseTextAggregator):
    """Cuts at sentence ends (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self._buf = ""
        self._scan = 0

    @property
    def text(self) -> str:
        return self._buf

    def flush(self) -> str:
        out = self._buf.strip()
        self._buf = ""
        self._scan = 0
        return out

    def aggregate(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            sentence = self._buf[:cut].strip()
            self._buf = self._buf[cut:].lstrip()
            self._scan = 0
            if sentence:
                out.append(sentence)
        return out

    def _find_cut(self) -> int | None:
        buf = self._buf
        n = len(buf)
        i = self._scan
        while i < n:
            ch = buf[i]
            if ch in _CJK_ENDERS:
                j = i + 1
                while j < n and buf[j] in _CLOSERS:
                    j += 1
                return j
            if ch not in _ENDERS:
                i += 1
                continue
            j = i + 1
            while j < n and (buf[j] in _CLOSERS or buf[j] in _ENDERS):
                j += 1
            if j >= n:
                self._scan = i
                return None  # wait: we do not know what follows
            if not buf[j].isspace():
                i = j
                continue
            if ch == "." and buf[j - 1] not in "!?":
                k = j
                while k < n and buf[k].isspace():
                    k += 1
                if k >= n:
                    self._scan = i
                    return None  # wait for the next word
                if self._abbreviation_before(i) or buf[k].islower():
                    i = j
                    continue
            return j
        self._scan = n
        return None

    def _abbreviation_before(self, dot: int) -> bool:
        buf = self._buf
        start = dot
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:dot].lstrip("\"'([{«“‘").lower()
        if not word:
            return False
        if len(word) == 1 and word.isalpha():
            return True  # an initial
        if word in _ABBREVIATIONS:
            return True
        if word.isdigit() and len(word) <= 2:
            line_start = buf.rfind("\n", 0, start) + 1
            if not buf[line_start:start].strip():
                return True  # "1. First item"
        return False
