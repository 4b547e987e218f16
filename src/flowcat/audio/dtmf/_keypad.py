"""The DTMF keypad: RFC 4733 event codes and the two-frequency grid (Hz)."""

from __future__ import annotations

from ...frames import KeypadEntry

__all__ = [
    "COL_FREQS_HZ",
    "EVENT_TO_KEY",
    "KEY_FREQS_HZ",
    "KEY_GRID",
    "KEY_TO_EVENT",
    "ROW_FREQS_HZ",
    "to_keypad_entry",
]

ROW_FREQS_HZ: tuple[float, float, float, float] = (697.0, 770.0, 852.0, 941.0)
"""Low-group (row) frequencies, Hz."""

COL_FREQS_HZ: tuple[float, float, float, float] = (1209.0, 1336.0, 1477.0, 1633.0)
"""High-group (column) frequencies, Hz."""

KEY_GRID: tuple[tuple[KeypadEntry, ...], ...] = (
    (KeypadEntry.ONE, KeypadEntry.TWO, KeypadEntry.THREE, KeypadEntry.A),
    (KeypadEntry.FOUR, KeypadEntry.FIVE, KeypadEntry.SIX, KeypadEntry.B),
    (KeypadEntry.SEVEN, KeypadEntry.EIGHT, KeypadEntry.NINE, KeypadEntry.C),
    (KeypadEntry.STAR, KeypadEntry.ZERO, KeypadEntry.POUND, KeypadEntry.D),
)
"""``KEY_GRID[row][col]``: the key at the crossing of a row and a column frequency."""

KEY_FREQS_HZ: dict[KeypadEntry, tuple[float, float]] = {
    key: (ROW_FREQS_HZ[r], COL_FREQS_HZ[c]) for r, row in enumerate(KEY_GRID) for c, key in enumerate(row)
}
"""(row Hz, column Hz) of every key."""

EVENT_TO_KEY: tuple[KeypadEntry, ...] = (
    KeypadEntry.ZERO,
    KeypadEntry.ONE,
    KeypadEntry.TWO,
    KeypadEntry.THREE,
    KeypadEntry.FOUR,
    KeypadEntry.FIVE,
    KeypadEntry.SIX,
    KeypadEntry.SEVEN,
    KeypadEntry.EIGHT,
    KeypadEntry.NINE,
    KeypadEntry.STAR,
    KeypadEntry.POUND,
    KeypadEntry.A,
    KeypadEntry.B,
    KeypadEntry.C,
    KeypadEntry.D,
)
"""RFC 4733 event code (0–15) → key."""

KEY_TO_EVENT: dict[KeypadEntry, int] = {key: code for code, key in enumerate(EVENT_TO_KEY)}
"""Key → RFC 4733 event code."""


def to_keypad_entry(digit: KeypadEntry | str) -> KeypadEntry:
    """Normalise ``digit`` ("0"–"9", "*", "#", "A"–"D", case-insensitive) to a key.

    Raises:
        ValueError: Not a DTMF key.
    """
    if isinstance(digit, KeypadEntry):
        return digit
    return KeypadEntry(digit.upper())
