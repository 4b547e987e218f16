"""Output mixers: background sound mixed into every outgoing audio chunk."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..frames import Frame, MixerEnableFrame, MixerUpdateSettingsFrame
from ._resampler import StreamResampler
from ._wav import read_wav

__all__ = ["BaseAudioMixer", "LoopingFileMixer"]

logger = logging.getLogger("flowcat.audio")

_I16 = np.dtype("<i2")


class BaseAudioMixer:
    """Base of output mixers.

    The output transport calls :meth:`start` with its sample rate, then
    :meth:`mix` for every outgoing chunk -- with silence while the bot is quiet, so
    a background keeps playing -- forwards ``MixerControlFrame`` frames to
    :meth:`process_frame`, and calls :meth:`stop` at the end. :meth:`mix` runs on
    the hot path: keep it synchronous and cheap.
    """

    async def start(self, sample_rate: int) -> None:
        """Prepare for output at ``sample_rate`` Hz (load and resample assets here)."""

    async def stop(self) -> None:
        """Release resources."""

    async def process_frame(self, frame: Frame) -> None:
        """Handle a ``MixerUpdateSettingsFrame`` or ``MixerEnableFrame``."""

    def mix(self, audio: bytes) -> bytes:
        """Return ``audio`` (mono 16-bit PCM at the start rate) with the mixer's sound added."""
        return audio


class LoopingFileMixer(BaseAudioMixer):
    """Mix a WAV file (e.g. office ambience) under the bot's audio, looping it.

    Files are read with stdlib ``wave`` at :meth:`start`, down-mixed to mono and
    resampled to the output rate, then held in memory (a 30 s ambience is ~1.4 MB
    at 24 kHz; share one mixer's sounds across calls by loading them once if you
    run many). Settings frames switch the sound (``{"sound": name}``, which
    restarts it) or change the volume (``{"volume": 0.2}``); ``MixerEnableFrame``
    turns mixing on and off (off returns the input unchanged).

    Args:
        sound_files: Sound name -> WAV path (8/16/24/32-bit PCM, any rate).
        default_sound: Name of the sound playing at start.
        volume: Linear gain applied to the sound (0..1, default 0.4).
        loop: Wrap around at the end of the sound; otherwise it plays once.
        enabled: Start with mixing on.
    """

    def __init__(
        self,
        sound_files: Mapping[str, str | os.PathLike[str]],
        default_sound: str,
        volume: float = 0.4,
        loop: bool = True,
        enabled: bool = True,
    ) -> None:
        if default_sound not in sound_files:
            raise ConfigError(f"default_sound {default_sound!r} is not in sound_files")
        self._files = dict(sound_files)
        self._sounds: dict[str, npt.NDArray[np.float32]] = {}
        self._current = default_sound
        self._volume = float(volume)
        self._loop = loop
        self._enabled = enabled
        self._scaled: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._pos = 0
        self.sample_rate = 0

    # ------------------------------------------------------------ settings

    @property
    def volume(self) -> float:
        """Current linear gain of the sound."""
        return self._volume

    @property
    def current_sound(self) -> str:
        """Name of the sound playing."""
        return self._current

    @property
    def enabled(self) -> bool:
        """Whether :meth:`mix` adds the sound."""
        return self._enabled

    def set_volume(self, volume: float) -> None:
        """Change the gain (linear, 0..1)."""
        self._volume = float(volume)
        self._rescale()

    def set_sound(self, name: str) -> None:
        """Switch to another loaded sound, from its beginning."""
        if name not in self._files:
            logger.warning("%s: unknown sound %r ignored", type(self).__name__, name)
            return
        self._current = name
        self._pos = 0
        self._rescale()

    # ----------------------------------------------------------- lifecycle

    async def start(self, sample_rate: int) -> None:
        """Load every sound file, resampled to ``sample_rate`` Hz."""
        self.sample_rate = sample_rate
        self._sounds = {name: self._load(path, sample_rate) for name, path in self._files.items()}
        self._pos = 0
        self._rescale()

    async def stop(self) -> None:
        """Free the loaded sounds."""
        self._sounds = {}
        self._scaled = np.zeros(0, dtype=np.float32)

    async def process_frame(self, frame: Frame) -> None:
        """Apply ``MixerUpdateSettingsFrame`` (``volume``, ``sound``, ``loop``) or ``MixerEnableFrame``."""
        if isinstance(frame, MixerUpdateSettingsFrame):
            settings = frame.settings
            if "sound" in settings:
                self.set_sound(str(settings["sound"]))
            if "volume" in settings:
                self.set_volume(float(settings["volume"]))
            if "loop" in settings:
                self._loop = bool(settings["loop"])
        elif isinstance(frame, MixerEnableFrame):
            self._enabled = frame.enable

    # ------------------------------------------------------------- mixing

    def mix(self, audio: bytes) -> bytes:
        """Add the next stretch of the sound to ``audio``, saturating.

        Args:
            audio: Mono 16-bit PCM at the start rate (silence when the bot is quiet).

        Returns:
            The mixed chunk, same length; ``audio`` itself when disabled or when a
            non-looping sound has finished.
        """
        snd = self._scaled
        total = len(snd)
        if not self._enabled or total == 0:
            return audio
        n = len(audio) >> 1
        pos = self._pos
        if not self._loop and pos >= total:
            return audio
        x = np.frombuffer(audio, dtype=_I16, count=n).astype(np.float32)
        end = pos + n
        if end <= total:
            x += snd[pos:end]
            self._pos = end
        else:
            done = 0
            while done < n and (self._loop or pos < total):
                take = min(n - done, total - pos)
                x[done : done + take] += snd[pos : pos + take]
                done += take
                pos += take
                if pos >= total and self._loop:
                    pos = 0
            self._pos = pos
        np.rint(x, out=x)
        np.clip(x, -32768, 32767, out=x)
        return x.astype(_I16).tobytes()

    # ----------------------------------------------------------- internals

    def _rescale(self) -> None:
        snd = self._sounds.get(self._current)
        self._scaled = np.zeros(0, dtype=np.float32) if snd is None else snd * np.float32(self._volume)

    @staticmethod
    def _load(path: str | os.PathLike[str], rate: int) -> npt.NDArray[np.float32]:
        pcm, src_rate, channels = read_wav(path)
        x = np.frombuffer(pcm, dtype=_I16)
        if channels > 1:
            x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1).astype(_I16)
        if src_rate != rate:
            r = StreamResampler(src_rate, rate)
            out = r.resample(x.tobytes()) + r.flush()
            x = np.frombuffer(out, dtype=_I16)
        return x.astype(np.float32)
