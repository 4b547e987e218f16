"""WebRTCVADGate: webrtcvad as a ~2 µs pre-gate in front of the Silero model."""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError, require_extra

__all__ = ["WebRTCVADGate"]


class WebRTCVADGate:
    """Calls a window speech if any of its 10 ms sub-frames is speech to webrtcvad.

    One per stream (webrtcvad adapts to the stream's noise). Given to
    ``SileroVADAnalyzer(pre_gate=...)`` it saves model inference on windows that are
    plainly silence while the VAD is quiet; once a start is under way every window
    goes to the model, so speech ends are never cut by the gate.

    Args:
        mode: webrtcvad aggressiveness 0..3 (higher calls less audio speech).
        frame_ms: Sub-frame length (10, 20 or 30 ms).

    Raises:
        MissingExtraError: ``webrtcvad-wheels`` is not installed (extra ``webrtcvad``).
    """

    __slots__ = ("_frame_ms", "_vad", "checked", "passed")

    def __init__(self, mode: int = 1, frame_ms: int = 10) -> None:
        if frame_ms not in (10, 20, 30):
            raise ConfigError("frame_ms must be 10, 20 or 30")
        webrtcvad: Any = require_extra("webrtcvad", "WebRTC VAD pre-gate", "webrtcvad")
        self._vad = webrtcvad.Vad(mode)
        self._frame_ms = frame_ms
        self.checked = 0
        """Windows checked."""
        self.passed = 0
        """Windows called (possible) speech."""

    def is_speech(self, window: bytes, sample_rate: int) -> bool:
        """True if any whole sub-frame of ``window`` (PCM16 mono) is speech."""
        self.checked += 1
        step = sample_rate * self._frame_ms // 1000 * 2
        vad = self._vad
        for off in range(0, len(window) - step + 1, step):
            if vad.is_speech(window[off : off + step], sample_rate):
                self.passed += 1
                return True
        return False
