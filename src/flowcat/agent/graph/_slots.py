"""Slot extraction from one transcript: names, numbers (digits or spoken), days, dates, times, yes/no.

Rule-based and deterministic (English): what it finds is exact, so tests can assert replies.
Each extractor returns the value or None.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["extract_slot", "normalize", "parse_number"]

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "a": 1, "an": 1,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
             "fifteenth": 15, "twentieth": 20, "thirtieth": 30}
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_YES = {"yes", "yeah", "yep", "yup", "sure", "correct", "right", "ok", "okay", "absolutely", "affirmative",
        "definitely", "please do", "that's right", "that is right", "sounds good", "of course"}
_NO = {"no", "nope", "nah", "not", "wrong", "incorrect", "negative", "don't", "do not", "cancel"}
_NAME_INTRO = re.compile(
    r"\b(?:my name is|my name's|name is|i am|i'm|this is|it's|it is|call me)\s+([a-z][a-z'\-]*(?:\s+[a-z][a-z'\-]*)?)")
_NOT_NAMES = {"yes", "no", "hi", "hello", "hey", "okay", "ok", "sure", "thanks", "thank", "calling", "here",
              "good", "fine", "not", "just", "looking", "trying", "a", "the", "sorry", "well", "um", "uh", "hmm", "mm", "er", "erm", "what", "pardon"}


def normalize(text: str) -> str:
    """Lower case, punctuation except apostrophes dropped, spaces collapsed."""
    return " ".join(re.sub(r"[^\w'\s\-:]", " ", text.lower()).replace("-", " ").split())


def parse_number(text: str) -> int | None:
    """The first number in ``text``: digits (``"42"``) or words (``"forty two"``, ``"two hundred and five"``)."""
    t = normalize(text)
    m = re.search(r"\d+", t)
    if m:
        return int(m.group())
    total = current = 0
    found = False
    for w in t.split():
        if w in _UNITS and (w not in ("a", "an", "oh") or found):
            current += _UNITS[w]
            found = True
        elif w in _TENS:
            current += _TENS[w]
            found = True
        elif w in _SCALES and found:
            if _SCALES[w] == 100:
                current *= 100
            else:
                total += current * _SCALES[w]
                current = 0
        elif w == "and" and found:
            continue
        elif found:
            break
    return total + current if found else None


def _yes_no(t: str) -> bool | None:
    words = set(t.split())
    padded = f" {t} "
    no = bool(words & _NO) or any(f" {p} " in padded for p in _NO if " " in p)
    yes = bool(words & _YES) or any(f" {p} " in padded for p in _YES if " " in p)
    if no and not (yes and "not" not in words and "no" not in words):
        return False
    return True if yes else None


def _name(t: str, raw: str) -> str | None:
    m = _NAME_INTRO.search(t)
    words: list[str]
    if m:
        words = [w for w in m.group(1).split() if w not in _NOT_NAMES]
    else:
        words = t.split()
        if not 1 <= len(words) <= 3 or any(w in _NOT_NAMES or w in _YES or w in _NO for w in words):
            return None
    if not words or words[0] in _NOT_NAMES:
        return None
    return " ".join(w.capitalize() for w in words)


def _day(t: str, today: date) -> str | None:
    for w in t.split():
        if w in _DAYS:
            return w.capitalize()
    if "today" in t.split():
        return _DAYS[today.weekday()].capitalize()
    if "tomorrow" in t.split():
        return _DAYS[(today.weekday() + 1) % 7].capitalize()
    return None


def _date(t: str, today: date) -> str | None:
    words = t.split()
    if "today" in words:
        return today.isoformat()
    if "tomorrow" in words:
        return (today + timedelta(days=1)).isoformat()
    m = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", t)
    if m:
        return m.group()
    for i, w in enumerate(words):
        if w in _MONTHS:
            around = " ".join(words[max(0, i - 3) : i] + words[i + 1 : i + 4])
            day = _ordinal(around)
            if day and 1 <= day <= 31:
                month = _MONTHS.index(w) + 1
                year = today.year + (1 if (month, day) < (today.month, today.day) else 0)
                try:
                    return date(year, month, day).isoformat()
                except ValueError:
                    return None
    return None


def _ordinal(t: str) -> int | None:
    m = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", t)
    if m:
        return int(m.group(1))
    for w in t.split():
        if w in _ORDINALS:
            return _ORDINALS[w]
    return parse_number(t)


def _time(t: str) -> str | None:
    m = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a m|p m|o'clock)?\b", t)
    hour: int | None = None
    minute = 0
    mer = None
    if m and (m.group(2) or m.group(3)):
        hour, minute, mer = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    else:
        m2 = re.search(r"\b(?:at\s+)?([a-z]+)(?:\s+(thirty|fifteen|forty five))?\s*(am|pm|a m|p m|o'clock)\b", t)
        if m2 and (m2.group(1) in _UNITS or m2.group(1) in ("eleven", "twelve", "ten")):
            hour = _UNITS.get(m2.group(1))
            minute = {"thirty": 30, "fifteen": 15, "forty five": 45}.get(m2.group(2) or "", 0)
            mer = m2.group(3)
        elif "noon" in t.split():
            hour, mer = 12, None
    if hour is None or hour > 23 or minute > 59:
        return None
    if mer and mer.replace(" ", "") == "pm" and hour < 12:
        hour += 12
    if mer and mer.replace(" ", "") == "am" and hour == 12:
        hour = 0
    return f"{hour:02d}:{minute:02d}"


def extract_slot(kind: str, text: str, *, now: datetime) -> Any:
    """The value of a ``kind`` slot in ``text`` (None when absent). ``now`` anchors today/tomorrow."""
    t = normalize(text)
    today = now.date()
    extractors: dict[str, Callable[[], Any]] = {
        "name": lambda: _name(t, text),
        "number": lambda: parse_number(t),
        "day": lambda: _day(t, today),
        "date": lambda: _date(t, today),
        "time": lambda: _time(t),
        "yes_no": lambda: _yes_no(t),
        "text": lambda: text.strip() or None,
    }
    fn = extractors.get(kind)
    return fn() if fn is not None else None
