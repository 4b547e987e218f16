"""Typed frames: the units that flow through a pipeline.

Pipecat's class names and semantics. See ``docs/frames.md`` for the full list with
each frame's kind (system, data, control) and whether an interruption drops it.
"""

from __future__ import annotations

from ._base import (
    CONTROL as CONTROL,
)
from ._base import (
    DATA as DATA,
)
from ._base import (
    SYSTEM as SYSTEM,
)
from ._base import (
    ControlFrame as ControlFrame,
)
from ._base import (
    DataFrame as DataFrame,
)
from ._base import (
    Frame as Frame,
)
from ._base import (
    SystemFrame as SystemFrame,
)
from ._base import (
    frame_dataclass as frame_dataclass,
)
from ._control import (
    EndFrame as EndFrame,
)
from ._control import (
    EndTaskFrame as EndTaskFrame,
)
from ._control import (
    EndWorkerFrame as EndWorkerFrame,
)
from ._control import (
    FilterControlFrame as FilterControlFrame,
)
from ._control import (
    FilterEnableFrame as FilterEnableFrame,
)
from ._control import (
    FunctionCallInProgressFrame as FunctionCallInProgressFrame,
)
from ._control import (
    HeartbeatFrame as HeartbeatFrame,
)
from ._control import (
    LLMAssistantPushAggregationFrame as LLMAssistantPushAggregationFrame,
)
from ._control import (
    LLMFullResponseEndFrame as LLMFullResponseEndFrame,
)
from ._control import (
    LLMFullResponseStartFrame as LLMFullResponseStartFrame,
)
from ._control import (
    LLMThoughtEndFrame as LLMThoughtEndFrame,
)
from ._control import (
    LLMThoughtStartFrame as LLMThoughtStartFrame,
)
from ._control import (
    LLMUpdateSettingsFrame as LLMUpdateSettingsFrame,
)
from ._control import (
    MixerControlFrame as MixerControlFrame,
)
from ._control import (
    MixerEnableFrame as MixerEnableFrame,
)
from ._control import (
    MixerUpdateSettingsFrame as MixerUpdateSettingsFrame,
)
from ._control import (
    OutputTransportReadyFrame as OutputTransportReadyFrame,
)
from ._control import (
    PipelineFlushFrame as PipelineFlushFrame,
)
from ._control import (
    ServiceUpdateSettingsFrame as ServiceUpdateSettingsFrame,
)
from ._control import (
    StopFrame as StopFrame,
)
from ._control import (
    StopTaskFrame as StopTaskFrame,
)
from ._control import (
    StopWorkerFrame as StopWorkerFrame,
)
from ._control import (
    STTUpdateSettingsFrame as STTUpdateSettingsFrame,
)
from ._control import (
    TTSStartedFrame as TTSStartedFrame,
)
from ._control import (
    TTSStoppedFrame as TTSStoppedFrame,
)
from ._control import (
    TTSUpdateSettingsFrame as TTSUpdateSettingsFrame,
)
from ._control import (
    VADParamsUpdateFrame as VADParamsUpdateFrame,
)
from ._data import (
    AggregatedTextFrame as AggregatedTextFrame,
)
from ._data import (
    FunctionCallResultFrame as FunctionCallResultFrame,
)
from ._data import (
    FunctionCallResultProperties as FunctionCallResultProperties,
)
from ._data import (
    InterimTranscriptionFrame as InterimTranscriptionFrame,
)
from ._data import (
    LLMContextAssistantTimestampFrame as LLMContextAssistantTimestampFrame,
)
from ._data import (
    LLMContextAssistantTurnFrame as LLMContextAssistantTurnFrame,
)
from ._data import (
    LLMContextFrame as LLMContextFrame,
)
from ._data import (
    LLMContextUserTurnFrame as LLMContextUserTurnFrame,
)
from ._data import (
    LLMMessagesAppendFrame as LLMMessagesAppendFrame,
)
from ._data import (
    LLMMessagesTransformFrame as LLMMessagesTransformFrame,
)
from ._data import (
    LLMMessagesUpdateFrame as LLMMessagesUpdateFrame,
)
from ._data import (
    LLMRunFrame as LLMRunFrame,
)
from ._data import (
    LLMSetToolChoiceFrame as LLMSetToolChoiceFrame,
)
from ._data import (
    LLMSetToolsFrame as LLMSetToolsFrame,
)
from ._data import (
    LLMTextFrame as LLMTextFrame,
)
from ._data import (
    LLMThoughtTextFrame as LLMThoughtTextFrame,
)
from ._data import (
    OutputAudioRawFrame as OutputAudioRawFrame,
)
from ._data import (
    OutputDTMFFrame as OutputDTMFFrame,
)
from ._data import (
    OutputImageRawFrame as OutputImageRawFrame,
)
from ._data import (
    OutputTransportMessageFrame as OutputTransportMessageFrame,
)
from ._data import (
    SpeechOutputAudioRawFrame as SpeechOutputAudioRawFrame,
)
from ._data import (
    TextFrame as TextFrame,
)
from ._data import (
    TranscriptionFrame as TranscriptionFrame,
)
from ._data import (
    TranslationFrame as TranslationFrame,
)
from ._data import (
    TTSAudioRawFrame as TTSAudioRawFrame,
)
from ._data import (
    TTSSpeakFrame as TTSSpeakFrame,
)
from ._data import (
    TTSTextFrame as TTSTextFrame,
)
from ._data import (
    URLImageRawFrame as URLImageRawFrame,
)
from ._llm import (
    LLMContext as LLMContext,
)
from ._system import (
    AudioRawFrame as AudioRawFrame,
)
from ._system import (
    BotInterruptionFrame as BotInterruptionFrame,
)
from ._system import (
    BotSpeakingFrame as BotSpeakingFrame,
)
from ._system import (
    BotSpeechPauseFrame as BotSpeechPauseFrame,
)
from ._system import (
    BotSpeechResumeFrame as BotSpeechResumeFrame,
)
from ._system import (
    BotStartedSpeakingFrame as BotStartedSpeakingFrame,
)
from ._system import (
    BotStoppedSpeakingFrame as BotStoppedSpeakingFrame,
)
from ._system import (
    CancelFrame as CancelFrame,
)
from ._system import (
    CancelTaskFrame as CancelTaskFrame,
)
from ._system import (
    CancelWorkerFrame as CancelWorkerFrame,
)
from ._system import (
    ClientConnectedFrame as ClientConnectedFrame,
)
from ._system import (
    EmulateUserStartedSpeakingFrame as EmulateUserStartedSpeakingFrame,
)
from ._system import (
    EmulateUserStoppedSpeakingFrame as EmulateUserStoppedSpeakingFrame,
)
from ._system import (
    ErrorFrame as ErrorFrame,
)
from ._system import (
    FatalErrorFrame as FatalErrorFrame,
)
from ._system import (
    FrameProcessorPauseUrgentFrame as FrameProcessorPauseUrgentFrame,
)
from ._system import (
    FrameProcessorResumeUrgentFrame as FrameProcessorResumeUrgentFrame,
)
from ._system import (
    FunctionCallCancelFrame as FunctionCallCancelFrame,
)
from ._system import (
    FunctionCallsStartedFrame as FunctionCallsStartedFrame,
)
from ._system import (
    InputAudioRawFrame as InputAudioRawFrame,
)
from ._system import (
    InputDTMFFrame as InputDTMFFrame,
)
from ._system import (
    InputImageRawFrame as InputImageRawFrame,
)
from ._system import (
    InputTextRawFrame as InputTextRawFrame,
)
from ._system import (
    InputTransportMessageFrame as InputTransportMessageFrame,
)
from ._system import (
    InterruptionFrame as InterruptionFrame,
)
from ._system import (
    InterruptionTaskFrame as InterruptionTaskFrame,
)
from ._system import (
    InterruptionWorkerFrame as InterruptionWorkerFrame,
)
from ._system import (
    MetricsFrame as MetricsFrame,
)
from ._system import (
    OutputDTMFUrgentFrame as OutputDTMFUrgentFrame,
)
from ._system import (
    OutputTransportMessageUrgentFrame as OutputTransportMessageUrgentFrame,
)
from ._system import (
    SpeechControlParamsFrame as SpeechControlParamsFrame,
)
from ._system import (
    StartFrame as StartFrame,
)
from ._system import (
    StartInterruptionFrame as StartInterruptionFrame,
)
from ._system import (
    STTMuteFrame as STTMuteFrame,
)
from ._system import (
    UserAudioRawFrame as UserAudioRawFrame,
)
from ._system import (
    UserIdleTimeoutUpdateFrame as UserIdleTimeoutUpdateFrame,
)
from ._system import (
    UserSpeakingFrame as UserSpeakingFrame,
)
from ._system import (
    UserStartedSpeakingFrame as UserStartedSpeakingFrame,
)
from ._system import (
    UserStoppedSpeakingFrame as UserStoppedSpeakingFrame,
)
from ._system import (
    VADUserStartedSpeakingFrame as VADUserStartedSpeakingFrame,
)
from ._system import (
    VADUserStoppedSpeakingFrame as VADUserStoppedSpeakingFrame,
)
from ._turns import (
    EagerEndOfTurnCancelFrame as EagerEndOfTurnCancelFrame,
)
from ._turns import (
    EagerEndOfTurnConfirmFrame as EagerEndOfTurnConfirmFrame,
)
from ._turns import (
    ProposedUserStartedSpeakingFrame as ProposedUserStartedSpeakingFrame,
)
from ._turns import (
    ProposedUserStoppedSpeakingFrame as ProposedUserStoppedSpeakingFrame,
)
from ._turns import (
    STTMetadataFrame as STTMetadataFrame,
)
from ._turns import (
    UserTurnSpeculationFrame as UserTurnSpeculationFrame,
)
from ._values import (
    FunctionCallFromLLM as FunctionCallFromLLM,
)
from ._values import (
    KeypadEntry as KeypadEntry,
)
from ._values import (
    LLMTokenUsage as LLMTokenUsage,
)
from ._values import (
    LLMUsageMetricsData as LLMUsageMetricsData,
)
from ._values import (
    MetricsData as MetricsData,
)
from ._values import (
    ProcessingMetricsData as ProcessingMetricsData,
)
from ._values import (
    TTFBMetricsData as TTFBMetricsData,
)
from ._values import (
    TTSUsageMetricsData as TTSUsageMetricsData,
)
from ._values import (
    TurnLatencyMetricsData as TurnLatencyMetricsData,
)
from ._values import (
    TurnMetricsData as TurnMetricsData,
)

__all__ = [
    "AggregatedTextFrame",
    "AudioRawFrame",
    "BotInterruptionFrame",
    "BotSpeakingFrame",
    "BotSpeechPauseFrame",
    "BotSpeechResumeFrame",
    "BotStartedSpeakingFrame",
    "BotStoppedSpeakingFrame",
    "CONTROL",
    "CancelFrame",
    "CancelTaskFrame",
    "CancelWorkerFrame",
    "ClientConnectedFrame",
    "ControlFrame",
    "DATA",
    "DataFrame",
    "EagerEndOfTurnCancelFrame",
    "EagerEndOfTurnConfirmFrame",
    "EmulateUserStartedSpeakingFrame",
    "EmulateUserStoppedSpeakingFrame",
    "EndFrame",
    "EndTaskFrame",
    "EndWorkerFrame",
    "ErrorFrame",
    "FatalErrorFrame",
    "FilterControlFrame",
    "FilterEnableFrame",
    "Frame",
    "FrameProcessorPauseUrgentFrame",
    "FrameProcessorResumeUrgentFrame",
    "FunctionCallCancelFrame",
    "FunctionCallFromLLM",
    "FunctionCallInProgressFrame",
    "FunctionCallResultFrame",
    "FunctionCallResultProperties",
    "FunctionCallsStartedFrame",
    "HeartbeatFrame",
    "InputAudioRawFrame",
    "InputDTMFFrame",
    "InputImageRawFrame",
    "InputTextRawFrame",
    "InputTransportMessageFrame",
    "InterimTranscriptionFrame",
    "InterruptionFrame",
    "InterruptionTaskFrame",
    "InterruptionWorkerFrame",
    "KeypadEntry",
    "LLMAssistantPushAggregationFrame",
    "LLMContext",
    "LLMContextAssistantTimestampFrame",
    "LLMContextAssistantTurnFrame",
    "LLMContextFrame",
    "LLMContextUserTurnFrame",
    "LLMFullResponseEndFrame",
    "LLMFullResponseStartFrame",
    "LLMMessagesAppendFrame",
    "LLMMessagesTransformFrame",
    "LLMMessagesUpdateFrame",
    "LLMRunFrame",
    "LLMSetToolChoiceFrame",
    "LLMSetToolsFrame",
    "LLMTextFrame",
    "LLMThoughtEndFrame",
    "LLMThoughtStartFrame",
    "LLMThoughtTextFrame",
    "LLMTokenUsage",
    "LLMUpdateSettingsFrame",
    "LLMUsageMetricsData",
    "MetricsData",
    "MetricsFrame",
    "MixerControlFrame",
    "MixerEnableFrame",
    "MixerUpdateSettingsFrame",
    "OutputAudioRawFrame",
    "OutputDTMFFrame",
    "OutputDTMFUrgentFrame",
    "OutputImageRawFrame",
    "OutputTransportMessageFrame",
    "OutputTransportMessageUrgentFrame",
    "OutputTransportReadyFrame",
    "PipelineFlushFrame",
    "ProcessingMetricsData",
    "ProposedUserStartedSpeakingFrame",
    "ProposedUserStoppedSpeakingFrame",
    "STTMetadataFrame",
    "STTMuteFrame",
    "STTUpdateSettingsFrame",
    "SYSTEM",
    "ServiceUpdateSettingsFrame",
    "SpeechControlParamsFrame",
    "SpeechOutputAudioRawFrame",
    "StartFrame",
    "StartInterruptionFrame",
    "StopFrame",
    "StopTaskFrame",
    "StopWorkerFrame",
    "SystemFrame",
    "TTFBMetricsData",
    "TTSAudioRawFrame",
    "TTSSpeakFrame",
    "TTSStartedFrame",
    "TTSStoppedFrame",
    "TTSTextFrame",
    "TTSUpdateSettingsFrame",
    "TTSUsageMetricsData",
    "TextFrame",
    "TranscriptionFrame",
    "TranslationFrame",
    "TurnLatencyMetricsData",
    "TurnMetricsData",
    "URLImageRawFrame",
    "UserAudioRawFrame",
    "UserIdleTimeoutUpdateFrame",
    "UserSpeakingFrame",
    "UserStartedSpeakingFrame",
    "UserStoppedSpeakingFrame",
    "UserTurnSpeculationFrame",
    "VADParamsUpdateFrame",
    "VADUserStartedSpeakingFrame",
    "VADUserStoppedSpeakingFrame",
    "frame_dataclass",
]
