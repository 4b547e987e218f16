"""Control frames: end/stop, response boundaries, TTS boundaries, settings, filters.

Control frames are ordered with data. They are dropped by an interruption unless
they opt out: :class:`EndFrame`, :class:`StopFrame`, :class:`FunctionCallInProgressFrame`,
settings updates and mixer/filter control survive.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ._base import ControlFrame, frame_dataclass

__all__ = [
    "TransferCallFrame",
    "EndFrame",
    "EndTaskFrame",
    "EndWorkerFrame",
    "FilterControlFrame",
    "FilterEnableFrame",
    "FunctionCallInProgressFrame",
    "HeartbeatFrame",
    "LLMAssistantPushAggregationFrame",
    "LLMContextSummaryRequestFrame",
    "LLMContextSummaryResultFrame",
    "LLMFullResponseEndFrame",
    "LLMFullResponseStartFrame",
    "LLMSummarizeContextFrame",
    "LLMThoughtEndFrame",
    "LLMThoughtStartFrame",
    "LLMUpdateSettingsFrame",
    "MixerControlFrame",
    "MixerEnableFrame",
    "MixerUpdateSettingsFrame",
    "OutputTransportReadyFrame",
    "PipelineFlushFrame",
    "STTUpdateSettingsFrame",
    "ServiceUpdateSettingsFrame",
    "StopFrame",
    "StopTaskFrame",
    "StopWorkerFrame",
    "TTSStartedFrame",
    "TTSStoppedFrame",
    "TTSUpdateSettingsFrame",
    "VADParamsUpdateFrame",
]


@frame_dataclass
class EndFrame(ControlFrame):
    """End the pipeline gracefully: everything queued before it is processed first."""

    reason: Any = None
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class StopFrame(ControlFrame):
    """Stop the pipeline but keep processors (and their connections) alive."""

    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class EndTaskFrame(ControlFrame):
    """Upstream request asking the pipeline task to end gracefully."""

    reason: Any = None
    interruptible: bool = field(init=False, repr=False, default=False)


EndWorkerFrame = EndTaskFrame


@frame_dataclass
class TransferCallFrame(ControlFrame):
    """Hand the call to ``target`` (a number, SIP URI or queue name).

    Pushed downstream by :class:`~flowcat.agent.BrainProcessor` after the words that
    announce the transfer, so it reaches the output transport once they have been played.
    A transport (or a processor watching for it) that can transfer acts on it; others
    ignore it. Survives interruptions.
    """

    target: str = ""
    reason: Any = None
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class StopTaskFrame(ControlFrame):
    """Upstream request asking the pipeline task to stop."""

    interruptible: bool = field(init=False, repr=False, default=False)


StopWorkerFrame = StopTaskFrame


@frame_dataclass
class PipelineFlushFrame(ControlFrame):
    """Flush buffered output through the pipeline."""

    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class HeartbeatFrame(ControlFrame):
    """Sent periodically by the task to check the pipeline is moving."""

    timestamp: int = 0


@frame_dataclass
class OutputTransportReadyFrame(ControlFrame):
    """The output transport is ready to send."""


@frame_dataclass
class LLMAssistantPushAggregationFrame(ControlFrame):
    """Ask the assistant aggregator to commit the text it holds to the context now."""


@frame_dataclass
class LLMFullResponseStartFrame(ControlFrame):
    """An LLM response begins."""


@frame_dataclass
class LLMFullResponseEndFrame(ControlFrame):
    """An LLM response ends."""


@frame_dataclass
class LLMThoughtStartFrame(ControlFrame):
    """An LLM's reasoning begins; ``append_to_context`` keeps it (as a vendor message for ``llm``)."""

    append_to_context: bool = False
    llm: str | None = None


@frame_dataclass
class LLMThoughtEndFrame(ControlFrame):
    """An LLM's reasoning ends; ``signature`` is the vendor's (Anthropic signs thinking blocks)."""

    signature: Any = None


@frame_dataclass
class TTSStartedFrame(ControlFrame):
    """A TTS utterance begins."""

    context_id: str | None = None


@frame_dataclass
class TTSStoppedFrame(ControlFrame):
    """A TTS utterance ends."""

    context_id: str | None = None


@frame_dataclass
class FunctionCallInProgressFrame(ControlFrame):
    """A tool call is running. Uninterruptible."""

    function_name: str
    tool_call_id: str
    arguments: Any = None
    cancel_on_interruption: bool = True
    group_id: str | None = None
    """Shared by the calls of one LLM response (``group_parallel_tools``); None: ungrouped."""
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class LLMSummarizeContextFrame(ControlFrame):
    """Ask the assistant aggregator to summarize the context now (``config``: a summary config, or None)."""

    config: Any = None


@frame_dataclass
class LLMContextSummaryRequestFrame(ControlFrame):
    """The assistant aggregator asks the LLM service for a summary of ``messages``.

    ``messages`` are the context's messages ``first_index`` … ``last_summarized_index``; the
    answer is a :class:`LLMContextSummaryResultFrame` with the same ``request_id``.
    """

    request_id: str
    context: Any
    messages: list[Any]
    first_index: int
    last_summarized_index: int
    target_context_tokens: int
    summarization_prompt: str
    summarization_timeout: float | None = None


@frame_dataclass
class LLMContextSummaryResultFrame(ControlFrame):
    """The summary asked for by ``request_id`` (``error`` set: none was made). Uninterruptible."""

    request_id: str
    summary: str
    last_summarized_index: int
    error: str | None = None
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class ServiceUpdateSettingsFrame(ControlFrame):
    """Update a service's settings (a mapping or a settings model). Uninterruptible."""

    settings: Any = None
    service: Any = None
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class LLMUpdateSettingsFrame(ServiceUpdateSettingsFrame):
    """Update LLM settings."""


@frame_dataclass
class TTSUpdateSettingsFrame(ServiceUpdateSettingsFrame):
    """Update TTS settings."""


@frame_dataclass
class STTUpdateSettingsFrame(ServiceUpdateSettingsFrame):
    """Update STT settings."""


@frame_dataclass
class VADParamsUpdateFrame(ControlFrame):
    """Replace the VAD parameters."""

    params: Any = None
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class FilterControlFrame(ControlFrame):
    """Base of audio-filter control frames."""

    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class FilterEnableFrame(FilterControlFrame):
    """Enable or disable the input audio filter."""

    enable: bool = True


@frame_dataclass
class MixerControlFrame(ControlFrame):
    """Base of output-mixer control frames."""

    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class MixerUpdateSettingsFrame(MixerControlFrame):
    """Update mixer settings (e.g. ``{"volume": 0.3}``)."""

    settings: dict[str, Any] = field(default_factory=dict)


@frame_dataclass
class MixerEnableFrame(MixerControlFrame):
    """Enable or disable the output mixer."""

    enable: bool = True
