"""System frames: lifecycle, interruption, speaking state, input media, urgent messages.

System frames are delivered ahead of queued data and are never dropped by an
interruption. Input media (:class:`InputAudioRawFrame` and friends) is system
priority, as in pipecat; output media is data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any

from ._base import SystemFrame, frame_dataclass
from ._values import FunctionCallFromLLM, KeypadEntry, MetricsData

__all__ = [
    "AudioRawFrame",
    "BotInterruptionFrame",
    "BotSpeakingFrame",
    "BotSpeechPauseFrame",
    "BotSpeechResumeFrame",
    "BotStartedSpeakingFrame",
    "BotStoppedSpeakingFrame",
    "CancelFrame",
    "CancelTaskFrame",
    "CancelWorkerFrame",
    "ClientConnectedFrame",
    "EmulateUserStartedSpeakingFrame",
    "EmulateUserStoppedSpeakingFrame",
    "ErrorFrame",
    "FatalErrorFrame",
    "FrameProcessorPauseUrgentFrame",
    "FrameProcessorResumeUrgentFrame",
    "FunctionCallCancelFrame",
    "FunctionCallsStartedFrame",
    "InputAudioRawFrame",
    "InputDTMFFrame",
    "InputImageRawFrame",
    "InputTextRawFrame",
    "InputTransportMessageFrame",
    "InterruptionFrame",
    "InterruptionTaskFrame",
    "InterruptionWorkerFrame",
    "MetricsFrame",
    "OutputDTMFUrgentFrame",
    "OutputTransportMessageUrgentFrame",
    "STTMuteFrame",
    "SpeechControlParamsFrame",
    "StartFrame",
    "StartInterruptionFrame",
    "UserAudioRawFrame",
    "UserIdleTimeoutUpdateFrame",
    "UserSpeakingFrame",
    "UserStartedSpeakingFrame",
    "UserStoppedSpeakingFrame",
    "VADUserStartedSpeakingFrame",
    "VADUserStoppedSpeakingFrame",
]


class AudioRawFrame:
    """Marker mix-in for frames carrying raw PCM16 audio.

    Concrete classes declare ``audio`` (little-endian int16 bytes), ``sample_rate``
    and ``num_channels``.
    """

    __slots__ = ()
    audio: bytes
    sample_rate: int
    num_channels: int

    @property
    def num_frames(self) -> int:
        """Samples per channel."""
        return len(self.audio) // (2 * self.num_channels)

    def _audio_repr(self) -> str:
        """Size and format, never the bytes (the concrete classes' ``__repr__``)."""
        name: str = self.name  # type: ignore[attr-defined]  # every concrete class is a Frame
        return (
            f"{name}(size: {len(self.audio)}, frames: {self.num_frames}, "
            f"sample_rate: {self.sample_rate}, channels: {self.num_channels})"
        )


@frame_dataclass
class StartFrame(SystemFrame):
    """First frame of every pipeline run; carries the run's parameters."""

    audio_in_sample_rate: int = 16000
    audio_out_sample_rate: int = 24000
    allow_interruptions: bool = True
    enable_metrics: bool = False
    enable_usage_metrics: bool = False
    report_only_initial_ttfb: bool = False
    start_metadata: dict[str, Any] = field(default_factory=dict)


@frame_dataclass
class CancelFrame(SystemFrame):
    """Stop the pipeline immediately, without draining."""

    reason: Any = None


@frame_dataclass
class ErrorFrame(SystemFrame):
    """An error reported by a processor (usually pushed upstream)."""

    error: str
    fatal: bool = False
    processor: Any = None
    exception: BaseException | None = None

    def __str__(self) -> str:
        return f"{self.name}(error: {self.error}, fatal: {self.fatal})"


@frame_dataclass
class FatalErrorFrame(ErrorFrame):
    """An unrecoverable error: the pipeline task cancels itself when it sees one."""

    fatal: bool = True


@frame_dataclass
class InterruptionFrame(SystemFrame):
    """The user interrupted the bot: queued interruptible frames are dropped."""


StartInterruptionFrame = InterruptionFrame
"""Deprecated pipecat alias of :class:`InterruptionFrame`."""


@frame_dataclass
class BotInterruptionFrame(SystemFrame):
    """Upstream request to interrupt the bot (turned into an interruption by the task)."""


@frame_dataclass
class InterruptionTaskFrame(SystemFrame):
    """Upstream request asking the pipeline task to broadcast an interruption."""


InterruptionWorkerFrame = InterruptionTaskFrame


@frame_dataclass
class CancelTaskFrame(SystemFrame):
    """Upstream request asking the pipeline task to cancel."""

    reason: Any = None


CancelWorkerFrame = CancelTaskFrame


@frame_dataclass
class UserStartedSpeakingFrame(SystemFrame):
    """The user's turn started."""

    emulated: bool = False


@frame_dataclass
class UserStoppedSpeakingFrame(SystemFrame):
    """The user's turn ended."""

    emulated: bool = False


@frame_dataclass
class UserSpeakingFrame(SystemFrame):
    """Periodic while the user speaks."""


@frame_dataclass
class EmulateUserStartedSpeakingFrame(SystemFrame):
    """Ask the turn logic to act as if the user started speaking."""


@frame_dataclass
class EmulateUserStoppedSpeakingFrame(SystemFrame):
    """Ask the turn logic to act as if the user stopped speaking."""


@frame_dataclass
class VADUserStartedSpeakingFrame(SystemFrame):
    """The VAD detected speech (after ``start_secs`` of voiced audio)."""

    start_secs: float = 0.0
    timestamp: float = 0.0


@frame_dataclass
class VADUserStoppedSpeakingFrame(SystemFrame):
    """The VAD detected the end of speech (after ``stop_secs`` of silence)."""

    stop_secs: float = 0.0
    timestamp: float = 0.0


@frame_dataclass
class BotStartedSpeakingFrame(SystemFrame):
    """The output transport started sending bot audio."""


@frame_dataclass
class BotStoppedSpeakingFrame(SystemFrame):
    """The output transport finished sending bot audio."""


@frame_dataclass
class BotSpeakingFrame(SystemFrame):
    """Periodic while bot audio is being sent."""


@frame_dataclass
class BotSpeechPauseFrame(SystemFrame):
    """Hold bot audio output without discarding it (a possible barge-in is being judged)."""


@frame_dataclass
class BotSpeechResumeFrame(SystemFrame):
    """Resume bot audio held by :class:`BotSpeechPauseFrame` (it was a false interruption)."""


@frame_dataclass
class MetricsFrame(SystemFrame):
    """Metrics records (TTFB, processing time, usage)."""

    data: list[MetricsData] = field(default_factory=list)


@frame_dataclass
class FunctionCallsStartedFrame(SystemFrame):
    """The LLM requested one or more tool calls (``group_id``: their group, None if ungrouped)."""

    function_calls: Sequence[FunctionCallFromLLM] = ()
    group_id: str | None = None


@frame_dataclass
class FunctionCallCancelFrame(SystemFrame):
    """A running tool call was cancelled."""

    function_name: str = ""
    tool_call_id: str = ""


@frame_dataclass
class STTMuteFrame(SystemFrame):
    """Mute or unmute speech-to-text."""

    mute: bool = True


@frame_dataclass
class InputTransportMessageFrame(SystemFrame):
    """An application message received by a transport."""

    message: Any = None


@frame_dataclass
class OutputTransportMessageUrgentFrame(SystemFrame):
    """An application message to send now, ahead of queued output."""

    message: Any = None


@frame_dataclass
class InputDTMFFrame(SystemFrame):
    """A keypad press received from the caller."""

    button: KeypadEntry = KeypadEntry.ONE


@frame_dataclass
class OutputDTMFUrgentFrame(SystemFrame):
    """A keypad tone to send now, ahead of queued output."""

    button: KeypadEntry = KeypadEntry.ONE


@frame_dataclass
class SpeechControlParamsFrame(SystemFrame):
    """Announces the VAD and turn parameters in force."""

    vad_params: Any = None
    turn_params: Any = None


@frame_dataclass
class ClientConnectedFrame(SystemFrame):
    """A client connected to the transport."""


@frame_dataclass
class UserIdleTimeoutUpdateFrame(SystemFrame):
    """Change the user-idle timeout (seconds; 0 disables)."""

    timeout: float = 0.0


@frame_dataclass
class FrameProcessorPauseUrgentFrame(SystemFrame):
    """Pause a processor's frame handling (urgent)."""

    processor: Any = None


@frame_dataclass
class FrameProcessorResumeUrgentFrame(SystemFrame):
    """Resume a processor's frame handling (urgent)."""

    processor: Any = None


@frame_dataclass
class InputAudioRawFrame(SystemFrame, AudioRawFrame):
    """Audio received from the user (PCM16 little-endian)."""

    audio: bytes
    sample_rate: int
    num_channels: int = 1

    __repr__ = AudioRawFrame._audio_repr  # set here: the dataclass would write its own


@frame_dataclass
class UserAudioRawFrame(InputAudioRawFrame):
    """Input audio from a named user."""

    user_id: str = ""


@frame_dataclass
class InputImageRawFrame(SystemFrame):
    """An image received from the user."""

    image: bytes
    size: tuple[int, int]
    format: str | None = None


@frame_dataclass
class InputTextRawFrame(SystemFrame):
    """Text typed by the user."""

    text: str
