"""Deterministic "speech" for the fake TTS: one tone per character, so a test can tell
from the audio alone which text was spoken (and where playback was cut).

Each character lasts ``char_ms``; a space (or any whitespace) is silence, a character of
:data:`ALPHABET` is a sine at ``300 + 50 * index`` Hz (lower-cased first), anything else
sounds as ``?``. :func:`decode_tones` reads the text back (lower-cased, unknown
characters as ``?``), one window per character.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["ALPHABET", "decode_tones", "synthesize_tones"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;"
_BASE_HZ = 300.0
_STEP_HZ = 50.0
_AMPLITUDE = 0.3
_UNKNOWN = ALPHABET.index("?")


def _freq(ch: str) -> float | None:
    if ch.isspace():
        return None
    idx = ALPHABET.find(ch.lower())
    return _BASE_HZ + _STEP_HZ * (idx if idx >= 0 else _UNKNOWN)


@functools.lru_cache(maxsize=256)
def synthesize_tones(text: str, sample_rate: int, char_ms: int = 20) -> bytes:
    """PCM16 mono for ``text``: ``char_ms`` of tone (or silence) per character (the last 256
    texts are kept: a benchmark's fake TTS says the same sentences over and over)."""
    n = sample_rate * char_ms // 1000
    t = np.arange(n, dtype=np.float64) / sample_rate
    out = np.zeros(n * len(text), dtype=np.int16)
    for i, ch in enumerate(text):
        f = _freq(ch)
        if f is not None:
            out[i * n : (i + 1) * n] = (np.sin(2 * np.pi * f * t) * _AMPLITUDE * 32767).astype(np.int16)
    return out.tobytes()


def decode_tones(pcm: bytes, sample_rate: int, char_ms: int = 20) -> str:
    """The text :func:`synthesize_tones` made ``pcm`` from (lower-case; a trailing partial
    character is ignored)."""
    n = sample_rate * char_ms // 1000
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16).astype(np.float64)
    count = len(samples) // n
    if count == 0:
        return ""
    t = np.arange(n, dtype=np.float64) / sample_rate
    freqs = _BASE_HZ + _STEP_HZ * np.arange(len(ALPHABET))
    cos = np.cos(2 * np.pi * np.outer(freqs, t))
    sin = np.sin(2 * np.pi * np.outer(freqs, t))
    windows = samples[: count * n].reshape(count, n)
    power = (windows @ cos.T) ** 2 + (windows @ sin.T) ** 2
    rms = np.sqrt(np.mean(windows**2, axis=1))
    chars = []
    for i in range(count):
        chars.append(" " if rms[i] < 100 else ALPHABET[int(np.argmax(power[i]))])
    return "".join(chars)
