"""AudioRecorder: both legs of a call on one wall-clock timeline, streamed to WAV.

:func:`recording_path` names a call's recording inside a directory from its call id
(which a carrier or a client chose: untrusted), so a recording can never be written
outside that directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from ..runtime import FrameDirection, FrameProcessor
from ._resampler import StreamResampler
from ._wav import WavWriter

__all__ = ["AudioRecorder", "recording_path"]

logger = logging.getLogger("flowcat.audio")

_I16 = np.dtype("<i2")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 96


def recording_path(directory: str | os.PathLike[str], call_id: str, suffix: str = ".wav") -> Path:
    """The file for ``call_id``'s recording, always directly inside ``directory``.

    The call id is reduced to letters, digits, ``-`` and ``_`` (at most 96 of them); an
    id that had to change (``../x``, ``/etc/passwd``, a NUL, a dot, a very long one)
    also gets 12 hex digits of its SHA-256, so two different ids never share a file.

    Raises:
        ConfigError: ``suffix`` is not a plain extension such as ``".wav"``.
    """
    if not re.fullmatch(r"(\.[A-Za-z0-9]{1,8})+", suffix):
        raise ConfigError(f"recording suffix must be like '.wav', not {suffix!r}")
    name = _UNSAFE.sub("_", call_id)[:_MAX_NAME]
    if name != call_id or not name:
        name = f"{name}-{hashlib.sha256(call_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
    base = Path(directory).resolve()
    path = base / (name + suffix)
    if path.parent != base:  # cannot happen with the names above; a last line of defence
        raise ConfigError(f"recording path escapes {base}")
    return path


class _Leg:
    """One side of the call: audio not yet committed to disk, placed on the timeline.

    ``pending`` holds mono samples at the recorder rate starting at the recorder's
    committed position; a contiguous run of input (a *segment*) is written from
    ``seg_start`` on, ``seg_out`` samples so far.
    """

    __slots__ = ("in_rate", "pending", "resampler", "seg_in", "seg_out", "seg_start")

    def __init__(self) -> None:
        self.pending = bytearray()
        self.resampler: StreamResampler | None = None
        self.in_rate = 0
        self.seg_start = 0
        self.seg_in = 0  # input samples in the current segment
        self.seg_out = 0  # output samples placed for the current segment

    def in_end(self, rate: int) -> int:
        """Timeline position (samples) where the segment's input audio ends."""
        return self.seg_start + (self.seg_in * rate) // self.in_rate if self.in_rate else self.seg_start

    def place(self, pcm: bytes, committed: int) -> None:
        """Write resampled output at the segment's next position."""
        if not pcm:
            return
        pos = (self.seg_start + self.seg_out - committed) * 2
        self.seg_out += len(pcm) >> 1
        if pos < 0:  # already on disk: cannot happen with the commit margin; drop
            pcm = pcm[-pos:]
            pos = 0
        buf = self.pending
        end = pos + len(pcm)
        if len(buf) < end:
            buf.extend(bytes(end - len(buf)))
        buf[pos:end] = pcm

    def end_segment(self, committed: int) -> None:
        """Release the resampler's tail into the current segment."""
        if self.resampler is not None:
            self.place(self.resampler.flush(), committed)


class AudioRecorder(FrameProcessor):
    """Record the user and bot legs of a call to WAV files, passing frames through.

    User audio is every :class:`~flowcat.frames.InputAudioRawFrame`, bot audio every
    :class:`~flowcat.frames.OutputAudioRawFrame` (subclasses included), in either
    direction. Audio is placed on one timeline measured with the event loop's
    clock from the StartFrame: a frame lands at its arrival time, or right after
    the leg's previous audio if that has not finished yet (bot audio produced
    faster than real time queues up as it would play). Gaps are silence, overlap
    is mixed. An interruption drops bot audio queued beyond "now" (it never
    played). Legs are down-mixed to mono and resampled to ``sample_rate``.

    Memory is bounded: audio older than ``commit_margin_s`` is appended to disk in
    blocks of ``block_s`` and the WAV headers are patched after each block and on
    stop/cancel, so only the margin, one block and not-yet-played bot audio are
    held (a few hundred KB at 16 kHz, independent of call length).

    Args:
        mono_path: Mono mix (user + bot, saturated) WAV file, or None.
        stereo_path: Stereo WAV file (left user, right bot), or None.
        sample_rate: Recording sample rate in Hz.
        block_s: Seconds of audio per disk write.
        commit_margin_s: Audio this close to "now" stays in memory, since a
            resampler may still release samples for it (soxr holds up to ~0.2 s).
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    def __init__(
        self,
        mono_path: str | os.PathLike[str] | None = None,
        stereo_path: str | os.PathLike[str] | None = None,
        *,
        sample_rate: int = 16000,
        block_s: float = 0.5,
        commit_margin_s: float = 0.25,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if mono_path is None and stereo_path is None:
            raise ConfigError("AudioRecorder needs mono_path or stereo_path")
        self.mono_path = mono_path
        self.stereo_path = stereo_path
        self.sample_rate = sample_rate
        self._block = max(1, int(block_s * sample_rate))
        self._margin = int(commit_margin_s * sample_rate)
        # Input running ahead of its arrival by less than this is treated as continuous.
        self._join = int(0.06 * sample_rate)
        self._user = _Leg()
        self._bot = _Leg()
        self._committed = 0
        self._t0: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mono: WavWriter | None = None
        self._stereo: WavWriter | None = None

    @classmethod
    def for_call(
        cls, directory: str | os.PathLike[str], call_id: str, *, mono: bool = False, stereo: bool = True,
        **kwargs: object,
    ) -> AudioRecorder:
        """A recorder writing ``<call id>.wav`` (stereo) and/or ``<call id>.mono.wav`` inside
        ``directory`` (see :func:`recording_path`: an untrusted id cannot escape it)."""
        return cls(recording_path(directory, call_id, ".mono.wav") if mono else None,
                   recording_path(directory, call_id) if stereo else None, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------ public

    @property
    def recording(self) -> bool:
        """True between start and stop/cancel."""
        return self._t0 is not None

    @property
    def buffered_bytes(self) -> int:
        """Bytes of audio held in memory (both legs), waiting to be committed."""
        return len(self._user.pending) + len(self._bot.pending)

    @property
    def duration_s(self) -> float:
        """Seconds of audio committed to disk so far."""
        return self._committed / self.sample_rate

    # --------------------------------------------------------- lifecycle

    async def start(self, frame: StartFrame) -> None:
        self._open()

    async def stop(self, frame: EndFrame) -> None:
        self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        self._close()

    async def cleanup(self) -> None:
        self._close()

    async def on_interruption(self) -> None:
        if self._t0 is None:
            return
        # Bot audio scheduled beyond now never played: drop it and restart the leg.
        bot = self._bot
        now = self._position()
        keep = max(0, now - self._committed) * 2
        del bot.pending[keep:]
        if bot.resampler is not None:
            bot.resampler.reset()
        bot.seg_start = max(now, self._committed)
        bot.seg_in = bot.seg_out = 0

    # ------------------------------------------------------------ frames

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if self._t0 is not None:
            if isinstance(frame, InputAudioRawFrame):
                self._add(self._user, frame.audio, frame.sample_rate, frame.num_channels)
            elif isinstance(frame, OutputAudioRawFrame):
                self._add(self._bot, frame.audio, frame.sample_rate, frame.num_channels)
        await self.push_frame(frame, direction)

    # ---------------------------------------------------------- internals

    def _position(self) -> int:
        assert self._loop is not None and self._t0 is not None  # noqa: S101 - set when the run started
        return int((self._loop.time() - self._t0) * self.sample_rate)

    def _open(self) -> None:
        if self._t0 is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._committed = 0
        self._user = _Leg()
        self._bot = _Leg()
        if self.mono_path is not None:
            self._mono = WavWriter(self.mono_path, self.sample_rate, 1)
        if self.stereo_path is not None:
            self._stereo = WavWriter(self.stereo_path, self.sample_rate, 2)

    def _add(self, leg: _Leg, audio: bytes, in_rate: int, channels: int) -> None:
        if channels > 1:
            x = np.frombuffer(audio, dtype=_I16, count=len(audio) // (2 * channels) * channels)
            audio = x.reshape(-1, channels).mean(axis=1).astype(_I16).tobytes()
        rate = self.sample_rate
        now = self._position()
        if in_rate != leg.in_rate:
            leg.end_segment(self._committed)
            leg.in_rate = in_rate
            leg.resampler = StreamResampler(in_rate, rate) if in_rate != rate else None
            leg.seg_start = max(now, leg.in_end(rate) if leg.seg_in else now)
            leg.seg_in = leg.seg_out = 0
        elif now > leg.in_end(rate) + self._join:
            # A gap: finish the previous run, start a new one at the arrival time.
            leg.end_segment(self._committed)
            leg.seg_start = now
            leg.seg_in = leg.seg_out = 0
        leg.seg_in += len(audio) >> 1
        out = leg.resampler.resample(audio) if leg.resampler is not None else audio
        leg.place(out, self._committed)
        if now - self._margin - self._committed >= self._block:
            self._commit(now - self._margin)

    def _commit(self, upto: int) -> None:
        """Write the timeline up to sample ``upto`` to disk and drop it from memory."""
        n = upto - self._committed
        if n <= 0:
            return
        nbytes = 2 * n
        user = self._take(self._user.pending, nbytes)
        bot = self._take(self._bot.pending, nbytes)
        u = np.frombuffer(user, dtype=_I16)
        b = np.frombuffer(bot, dtype=_I16)
        if self._mono is not None:
            m = u.astype(np.int32) + b
            np.clip(m, -32768, 32767, out=m)
            self._mono.write(m.astype(_I16).tobytes())
            self._mono.patch()
        if self._stereo is not None:
            st = np.empty(2 * n, dtype=_I16)
            st[0::2] = u
            st[1::2] = b
            self._stereo.write(st.tobytes())
            self._stereo.patch()
        self._committed = upto

    @staticmethod
    def _take(buf: bytearray, nbytes: int) -> bytes:
        out = bytes(buf[:nbytes])
        del buf[:nbytes]
        if len(out) < nbytes:
            out += bytes(nbytes - len(out))
        return out

    def _close(self) -> None:
        if self._t0 is None:
            return
        committed = self._committed
        self._user.end_segment(committed)
        self._bot.end_segment(committed)
        end = max(self._position(), committed + max(len(self._user.pending), len(self._bot.pending)) // 2)
        try:
            self._commit(end)
        finally:
            for w in (self._mono, self._stereo):
                if w is not None:
                    w.close()
            self._mono = self._stereo = None
            self._t0 = None
            logger.debug("%s: recorded %.2f s", self, self._committed / self.sample_rate)
