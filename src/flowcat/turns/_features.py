"""Whisper-style log-mel features for the smart-turn v3 model, in numpy.

The smart-turn v3 ONNX model takes ``input_features`` of shape
``(batch, 80, 800)``: 80 mel bins by 800 frames of 10 ms, i.e. exactly 8 s of
16 kHz audio. The recipe (Whisper's feature extractor with an 8 s chunk):

1. Keep the **last** 8 s (128,000 samples); shorter audio is zero-padded at the
   **start**, so the end of the speech always sits at the right edge.
2. Normalise the waveform to zero mean, unit variance (``var + 1e-7``).
3. Centred STFT: reflect-pad 200 samples each side, periodic Hann window of
   400 samples (25 ms), hop 160 samples (10 ms), power spectrum ``|X|^2``
   over 201 bins: 801 frames.
4. Project on 80 triangular mel filters, Slaney mel scale (linear below 1 kHz,
   logarithmic above), 0–8 kHz, Slaney area normalisation.
5. ``log10(max(mel, 1e-10))``, drop the last frame (800 frames), clamp each
   example at its maximum minus 8 (80 dB of range), then ``(x + 4) / 4``.

All constants are computed once at import; the per-check cost is one batched
real FFT and one matrix product (~3–5 ms for 8 s on one core).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "CHUNK_SAMPLES",
    "HOP_LENGTH",
    "N_FFT",
    "N_FRAMES",
    "N_MELS",
    "SAMPLE_RATE",
    "fit_window",
    "log_mel_features",
    "mel_filterbank",
]

SAMPLE_RATE = 16000
"""Model sample rate (Hz)."""
N_FFT = 400
"""FFT size and window length (samples, 25 ms)."""
HOP_LENGTH = 160
"""Hop between frames (samples, 10 ms)."""
N_MELS = 80
"""Mel bins."""
CHUNK_SAMPLES = 8 * SAMPLE_RATE
"""Samples analysed per check: the last 8 s."""
N_FRAMES = CHUNK_SAMPLES // HOP_LENGTH
"""Feature frames per check (800)."""

_LOG_FLOOR = 1e-10
_VAR_EPS = 1e-7
_DYNAMIC_RANGE = 8.0  # log10 units = 80 dB


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: 3 mel per 200 Hz below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * (3.0 / 200.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``.

    Args:
        n_mels: Number of filters.
        n_fft: FFT size (samples).
        sample_rate: Sample rate (Hz); filters span 0 Hz to Nyquist.
    """
    n_bins = n_fft // 2 + 1
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_bins)
    edges_mel = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2)
    edges = _mel_to_hz(edges_mel)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    weights *= 2.0 / (upper - lower)  # equal area per filter
    out: np.ndarray = weights
    return out


_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
_MEL = mel_filterbank()


def fit_window(audio: np.ndarray) -> np.ndarray:
    """Return the last :data:`CHUNK_SAMPLES` of ``audio``, zero-padded at the start.

    Args:
        audio: 1-D float audio at 16 kHz.
    """
    n = audio.shape[0]
    if n >= CHUNK_SAMPLES:
        return audio[n - CHUNK_SAMPLES :]
    out = np.zeros(CHUNK_SAMPLES, dtype=audio.dtype)
    if n:
        out[CHUNK_SAMPLES - n :] = audio
    return out


def log_mel_features(audios: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Compute smart-turn input features for a batch of waveforms.

    Args:
        audios: Float waveforms at 16 kHz in [-1, 1] (any length: the last 8 s
            are used, shorter ones are left-padded with zeros), as a list or a
            ``(batch, samples)`` array.

    Returns:
        ``float32`` array of shape ``(batch, 80, 800)``.
    """
    batch = np.stack([fit_window(np.asarray(a, dtype=np.float32)) for a in audios])
    mean = batch.mean(axis=1, keepdims=True)
    var = batch.var(axis=1, keepdims=True)
    batch = (batch - mean) / np.sqrt(var + _VAR_EPS)
    pad = N_FFT // 2
    padded = np.pad(batch.astype(np.float64), ((0, 0), (pad, pad)), mode="reflect")
    n_frames = 1 + (padded.shape[1] - N_FFT) // HOP_LENGTH
    s0, s1 = padded.strides
    frames = as_strided(
        padded, (padded.shape[0], n_frames, N_FFT), (s0, s1 * HOP_LENGTH, s1), writeable=False
    )
    spec = np.fft.rfft(frames * _WINDOW, axis=-1)
    power = spec.real**2 + spec.imag**2  # (batch, frames, bins)
    mel = np.matmul(_MEL, power.transpose(0, 2, 1))  # (batch, mels, frames)
    logmel = np.log10(np.maximum(mel, _LOG_FLOOR))[:, :, :-1]
    floor = logmel.max(axis=(1, 2), keepdims=True) - _DYNAMIC_RANGE
    logmel = np.maximum(logmel, floor)
    out: np.ndarray = ((logmel + 4.0) / 4.0).astype(np.float32)
    return out
