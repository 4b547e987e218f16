"""DTMF tone synthesis (PCM16) for in-band sending."""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ...frames import KeypadEntry
from ._keypad import KEY_FREQS_HZ, to_keypad_entry

__all__ = ["DTMFToneGenerator"]


class DTMFToneGenerator:
    """Synthesises keypad tones as mono PCM16 little-endian bytes.

    Each tone is the sum of its row and column sine waves at equal amplitude,
    with short raised-cosine ramps at both ends (no clicks), followed by silence.
    Results are cached per (key, duration, gap, level): sending a key again
    allocates nothing.

    Args:
        sample_rate: Output sample rate, Hz.
        ramp_ms: Fade-in / fade-out length, milliseconds.
    """

    __slots__ = ("_cache", "ramp_ms", "sample_rate")

    def __init__(self, sample_rate: int, ramp_ms: float = 2.0) -> None:
        if sample_rate < 4000:
            raise ConfigError(f"sample_rate {sample_rate} Hz is too low for DTMF (needs ≥ 4000 Hz)")
        self.sample_rate = sample_rate
        self.ramp_ms = ramp_ms
        self._cache: dict[tuple[KeypadEntry, int, int, float], bytes] = {}

    def tone(
        self,
        digit: KeypadEntry | str,
        duration_ms: int = 100,
        gap_ms: int = 60,
        amplitude_dbfs: float = -10.0,
    ) -> bytes:
        """One key: ``duration_ms`` of tone then ``gap_ms`` of silence.

        Args:
            digit: The key ("0"–"9", "*", "#", "A"–"D" or a KeypadEntry).
            duration_ms: Tone length, milliseconds.
            gap_ms: Silence after the tone, milliseconds.
            amplitude_dbfs: Peak level of the two-tone sum, dBFS (each tone is 6 dB lower).
        """
        key = to_keypad_entry(digit)
        cache_key = (key, duration_ms, gap_ms, amplitude_dbfs)
        out = self._cache.get(cache_key)
        if out is None:
            out = self._synth(key, duration_ms, gap_ms, amplitude_dbfs)
            if len(self._cache) < 64:
                self._cache[cache_key] = out
        return out

    def sequence(
        self,
        digits: str,
        duration_ms: int = 100,
        gap_ms: int = 60,
        amplitude_dbfs: float = -10.0,
    ) -> bytes:
        """Several keys back to back, each as :meth:`tone` makes it."""
        return b"".join(self.tone(d, duration_ms, gap_ms, amplitude_dbfs) for d in digits)

    def _synth(self, key: KeypadEntry, duration_ms: int, gap_ms: int, amplitude_dbfs: float) -> bytes:
        rate = self.sample_rate
        n = rate * duration_ms // 1000
        gap = rate * gap_ms // 1000
        f_row, f_col = KEY_FREQS_HZ[key]
        t = np.arange(n, dtype=np.float64) / rate
        amp = 32767.0 * 10.0 ** (amplitude_dbfs / 20.0) / 2.0
        wave = amp * (np.sin(2 * np.pi * f_row * t) + np.sin(2 * np.pi * f_col * t))
        ramp = min(int(rate * self.ramp_ms / 1000), n // 2)
        if ramp > 0:
            env = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
            wave[:ramp] *= env
            wave[n - ramp :] *= env[::-1]
        pcm = np.zeros(n + gap, dtype="<i2")
        pcm[:n] = np.clip(np.rint(wave), -32768, 32767)
        return pcm.tobytes()
