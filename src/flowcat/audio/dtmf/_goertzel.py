"""In-band DTMF detection over PCM16: Goertzel bins per block plus a press state machine.

Audio is cut into fixed blocks of ``block_ms`` (102 samples at 8 kHz, 204 at
16 kHz). For every block the powers at the 8 DTMF frequencies are computed at the
exact (non-integer-bin) frequencies — the values a Goertzel filter yields — as one
matrix product with a precomputed cosine/sine basis, so a 20 ms frame costs one
small ``matmul`` instead of a per-sample Python loop.

A block *hits* key K when all of these hold:

* energy: both tones are at least ``min_level_dbfs`` (per tone, dBFS peak);
* twist: the row tone is at most ``normal_twist_db`` above the column tone and
  the column tone at most ``reverse_twist_db`` above the row tone;
* relative peak: in each group the winner beats the runner-up by ``relative_peak_db``;
* ratio: the two tones hold at least ``min_tone_ratio`` of the block's energy
  (speech, music, chords and noise spread theirs; this also rejects blocks only
  partly filled with tone).

A press needs ``min_hits`` hits (with at least two in a row) — about 40 ms — and
is reported once. It ends after ``hangover_blocks`` blocks without its key
(≈ 38 ms): a 20 ms hole from a lost packet (≤ 2 blocks) does not split a press,
and the usual ≥ 40 ms inter-digit gap does end it, so the same key pressed twice
is reported twice.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ...frames import KeypadEntry
from ._keypad import COL_FREQS_HZ, KEY_GRID, ROW_FREQS_HZ

__all__ = ["GoertzelDTMFDetector"]

_KEYS: tuple[KeypadEntry, ...] = tuple(k for row in KEY_GRID for k in row)


class GoertzelDTMFDetector:
    """Streaming DTMF detector for mono PCM16 little-endian audio.

    Args:
        sample_rate: Input sample rate, Hz (8000 and 16000 are the usual; any ≥ 4000 works).
        block_ms: Analysis block, milliseconds (12.75 ms keeps adjacent rows 73 Hz apart
            separable by ~20 dB).
        min_level_dbfs: Minimum level of each tone, dBFS (peak amplitude).
        normal_twist_db: How much louder the row tone may be than the column tone, dB.
        reverse_twist_db: How much louder the column tone may be than the row tone, dB.
        relative_peak_db: Margin of each group's winner over its runner-up, dB.
        min_tone_ratio: Share of block energy the two tones must hold (0–1).
        min_hits: Hit blocks needed to report a press (3 × 12.75 ms ≈ 40 ms).
        hangover_blocks: Blocks without the key that end a press.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        block_ms: float = 12.75,
        min_level_dbfs: float = -40.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 4.0,
        relative_peak_db: float = 6.0,
        min_tone_ratio: float = 0.6,
        min_hits: int = 3,
        hangover_blocks: int = 3,
    ) -> None:
        if sample_rate < 4000:
            raise ConfigError(f"sample_rate {sample_rate} Hz is too low for DTMF (needs ≥ 4000 Hz)")
        self.sample_rate = sample_rate
        n = max(16, round(sample_rate * block_ms / 1000.0))
        self.block_size = n
        """Samples per analysis block."""
        freqs = np.asarray(ROW_FREQS_HZ + COL_FREQS_HZ, dtype=np.float64)
        phase = 2.0 * np.pi * np.outer(np.arange(n), freqs) / sample_rate  # (n, 8)
        self._basis = np.ascontiguousarray(np.hstack((np.cos(phase), np.sin(phase))), dtype=np.float32)
        amp = 32768.0 * 10.0 ** (min_level_dbfs / 20.0)
        self._min_power = (amp * n / 2.0) ** 2  # bin power of a full-block tone at that level
        self._normal_twist = 10.0 ** (normal_twist_db / 10.0)
        self._reverse_twist = 10.0 ** (reverse_twist_db / 10.0)
        self._rel_peak = 10.0 ** (relative_peak_db / 10.0)
        self._ratio_scale = min_tone_ratio * n / 2.0  # tones' bin power ≥ this × block energy
        self._energy_gate = 2.0 * 2.0 * self._min_power / n  # both tones at the minimum level
        self.min_hits = min_hits
        self.hangover_blocks = hangover_blocks
        self._rest = b""
        self.reset()

    def reset(self) -> None:
        """Forget buffered audio and any press in progress."""
        self._rest = b""
        self._cur = -1  # key index being tracked, -1 none
        self._hits = 0
        self._run = 0  # consecutive hits
        self._misses = 0
        self._reported = False
        self._cand = -1  # another key seen while a reported press is still held
        self._cand_hits = 0

    @property
    def block_ms(self) -> float:
        """Analysis block length, milliseconds."""
        return self.block_size * 1000.0 / self.sample_rate

    def process(self, pcm: bytes) -> list[KeypadEntry]:
        """Feed audio (any length); returns the presses that became certain, in order."""
        data = self._rest + pcm if self._rest else pcm
        n = self.block_size
        blocks = len(data) // (2 * n)
        if blocks == 0:
            self._rest = bytes(data)
            return []
        self._rest = bytes(data[blocks * 2 * n :])
        x = np.frombuffer(data, dtype="<i2", count=blocks * n).reshape(blocks, n).astype(np.float32)
        energy = np.einsum("ij,ij->i", x, x).tolist()
        gate = self._energy_gate
        out: list[KeypadEntry] = []
        if max(energy) < gate:
            for _ in range(blocks):
                self._step(-1, out)
            return out
        y = x @ self._basis
        power = (y[:, :8] * y[:, :8] + y[:, 8:] * y[:, 8:]).tolist()
        for i in range(blocks):
            e = energy[i]
            self._step(self._classify(power[i], e) if e >= gate else -1, out)
        return out

    def _classify(self, p: list[float], energy: float) -> int:
        """Key index (row * 4 + col) hit by one block's bin powers, or -1."""
        r0, r1, r2, r3, c0, c1, c2, c3 = p
        rows = (r0, r1, r2, r3)
        cols = (c0, c1, c2, c3)
        pr = max(rows)
        pc = max(cols)
        min_p = self._min_power
        if pr < min_p or pc < min_p:
            return -1
        if pr > pc * self._normal_twist or pc > pr * self._reverse_twist:
            return -1
        if (pr + pc) < self._ratio_scale * energy:
            return -1
        ri = rows.index(pr)
        ci = cols.index(pc)
        lim_r = pr / self._rel_peak
        lim_c = pc / self._rel_peak
        for i in range(4):
            if (i != ri and rows[i] > lim_r) or (i != ci and cols[i] > lim_c):
                return -1
        return ri * 4 + ci

    def _step(self, d: int, out: list[KeypadEntry]) -> None:
        """Advance the press state machine by one block whose hit is ``d`` (-1: none)."""
        cur = self._cur
        if d >= 0 and d == cur:
            self._hits += 1
            self._run += 1
            self._misses = 0
            self._cand = -1
            if not self._reported and self._hits >= self.min_hits and self._run >= 2:
                self._reported = True
                out.append(_KEYS[d])
            return
        if d >= 0 and (cur < 0 or not self._reported):
            self._start(d, 1, out)
            return
        if cur < 0:
            return
        # The tracked key is absent from this block (silence, noise or another key).
        self._run = 0
        self._misses += 1
        if d >= 0:
            self._cand_hits = self._cand_hits + 1 if d == self._cand else 1
            self._cand = d
        else:
            self._cand = -1
            self._cand_hits = 0
        if self._misses >= self.hangover_blocks:
            if self._cand >= 0:
                self._start(self._cand, self._cand_hits, out)
            else:
                self._cur = -1
                self._reported = False
                self._hits = 0

    def _start(self, d: int, hits: int, out: list[KeypadEntry]) -> None:
        self._cur = d
        self._hits = hits
        self._run = hits
        self._misses = 0
        self._reported = False
        self._cand = -1
        self._cand_hits = 0
        if hits >= self.min_hits and (hits >= 2 or self.min_hits <= 1):
            self._reported = True
            out.append(_KEYS[d])
