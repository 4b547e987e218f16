"""The public surface is explicit and locked."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import flowcat

# The whole public surface: every public module (no ``_`` in its dotted path) and its
# ``__all__``, in order. Adding, removing or renaming a public name means changing this list
# in the same commit (and the docs that name it).
EXPECTED: dict[str, list[str]] = {
    "flowcat": [
        "BaseObserver",
        "FrameDirection",
        "FrameProcessor",
        "FramePushed",
        "ParallelPipeline",
        "Pipeline",
        "PipelineParams",
        "PipelineRunner",
        "PipelineTask",
        "__version__",
    ],
    "flowcat.agent": [],
    "flowcat.audio": [
        "AudioChunker",
        "AudioFilterProcessor",
        "AudioRecorder",
        "BaseAudioFilter",
        "BaseAudioMixer",
        "LoopingFileMixer",
        "RNNoiseFilter",
        "StreamResampler",
        "WavWriter",
        "alaw_to_pcm16",
        "apply_gain",
        "float_to_pcm16",
        "mix",
        "pcm16_to_alaw",
        "pcm16_to_float",
        "pcm16_to_ulaw",
        "read_wav",
        "rms_dbfs",
        "silence",
        "tone",
        "ulaw_to_pcm16",
    ],
    "flowcat.audio.dtmf": [
        "COL_FREQS_HZ",
        "DTMFAggregator",
        "DTMFToneGenerator",
        "DTMFToneInjector",
        "EVENT_TO_KEY",
        "GoertzelDTMFDetector",
        "InbandDTMFDetector",
        "KEY_FREQS_HZ",
        "KEY_TO_EVENT",
        "ROW_FREQS_HZ",
        "TelephoneEvent",
        "TelephoneEventDecoder",
        "TelephoneEventEncoder",
        "TelephoneEventPacket",
        "build_telephone_event",
        "parse_telephone_event",
        "parse_telephone_event_pt",
        "telephone_event_codes",
    ],
    "flowcat.audio.vad": [
        "BatcherStats",
        "EnergyVADAnalyzer",
        "PreGate",
        "SileroBatcher",
        "SileroLane",
        "SileroModel",
        "SileroVADAnalyzer",
        "VADAnalyzer",
        "VADEvent",
        "VADListener",
        "VADParams",
        "VADProcessor",
        "VADState",
        "VolumeMeter",
        "WebRTCVADGate",
        "mean_square",
        "silero_model_path",
        "vad_executor",
    ],
    "flowcat.bench": [],
    "flowcat.bench.capacity": [
        "add_arguments",
        "ensure_pipecat_venv",
        "main",
        "run_point",
    ],
    "flowcat.bench.micro": [
        "TARGETS",
        "add_arguments",
        "main",
        "summarize",
    ],
    "flowcat.bench.vad": [
        "add_arguments",
        "main",
        "run",
    ],
    "flowcat.cli": [
        "build_parser",
        "main",
    ],
    "flowcat.config": [],
    "flowcat.errors": [
        "BenchError",
        "CapacityError",
        "CarrierError",
        "ConfigError",
        "FlowcatError",
        "InferenceError",
        "JWTError",
        "MissingExtraError",
        "PipelineStateError",
        "PipelineTimeoutError",
        "ProcessorError",
        "ProtocolError",
        "SFVError",
        "ServiceConnectionError",
        "ServiceError",
        "ServiceStatusError",
        "ServiceTimeout",
        "SignatureError",
        "TransportError",
        "require_extra",
    ],
    "flowcat.frames": [
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
        "LLMContext",
        "LLMContextFrame",
        "LLMFullResponseEndFrame",
        "LLMFullResponseStartFrame",
        "LLMMessagesAppendFrame",
        "LLMMessagesTransformFrame",
        "LLMMessagesUpdateFrame",
        "LLMRunFrame",
        "LLMSetToolChoiceFrame",
        "LLMSetToolsFrame",
        "LLMTextFrame",
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
        "TurnMetricsData",
        "URLImageRawFrame",
        "UserAudioRawFrame",
        "UserIdleTimeoutUpdateFrame",
        "UserSpeakingFrame",
        "UserStartedSpeakingFrame",
        "UserStoppedSpeakingFrame",
        "VADParamsUpdateFrame",
        "VADUserStartedSpeakingFrame",
        "VADUserStoppedSpeakingFrame",
        "frame_dataclass",
    ],
    "flowcat.runtime": [
        "BaseObserver",
        "CallScheduler",
        "EventEmitter",
        "FrameDirection",
        "FrameProcessor",
        "FramePushed",
        "ParallelPipeline",
        "Pipeline",
        "PipelineParams",
        "PipelineRunner",
        "PipelineSink",
        "PipelineSource",
        "PipelineTask",
        "SchedulerStats",
        "TaskStats",
        "current_generation",
    ],
    "flowcat.serializers": [
        "AsteriskFrameSerializer",
        "CallInfo",
        "CloudonixFrameSerializer",
        "ExotelFrameSerializer",
        "FrameSerializer",
        "GenesysFrameSerializer",
        "MarkTracker",
        "PlivoFrameSerializer",
        "TelnyxFrameSerializer",
        "TwilioFrameSerializer",
        "VobizFrameSerializer",
        "VonageFrameSerializer",
        "Wire",
        "WireOut",
    ],
    "flowcat.serializers.asterisk": [
        "AsteriskFrameSerializer",
    ],
    "flowcat.serializers.cloudonix": [
        "CloudonixFrameSerializer",
    ],
    "flowcat.serializers.exotel": [
        "ExotelFrameSerializer",
    ],
    "flowcat.serializers.genesys": [
        "GenesysFrameSerializer",
    ],
    "flowcat.serializers.plivo": [
        "PlivoFrameSerializer",
    ],
    "flowcat.serializers.telnyx": [
        "L16ByteOrder",
        "TelnyxFrameSerializer",
    ],
    "flowcat.serializers.twilio": [
        "TwilioFrameSerializer",
        "twiml_connect_stream",
    ],
    "flowcat.serializers.vobiz": [
        "VobizFrameSerializer",
    ],
    "flowcat.serializers.vonage": [
        "SIGNED_EVENTS",
        "VonageFrameSerializer",
    ],
    "flowcat.server": [
        "Admission",
        "AppFactory",
        "CallInfo",
        "CarrierError",
        "EchoProcessor",
        "Opened",
        "PassThrough",
        "ServeOptions",
        "ServerConfig",
        "ServerState",
        "carrier_names",
        "create_app",
        "default_app",
        "default_capacity",
        "drain",
        "get_carrier",
        "load_app",
        "run_call",
        "run_worker",
        "serve_audiosocket",
        "supervise",
    ],
    "flowcat.server.worker": [
        "main",
    ],
    "flowcat.services": [],
    "flowcat.testing": [
        "CaptureProcessor",
        "SleepFrame",
        "VirtualTimeEventLoop",
        "run_test",
        "run_virtual",
        "upstream",
    ],
    "flowcat.transports": [
        "AudioClock",
        "AudioSocketInputTransport",
        "AudioSocketListener",
        "AudioSocketOutputTransport",
        "AudioSocketParams",
        "AudioSocketParser",
        "AudioSocketTransport",
        "BaseInputTransport",
        "BaseOutputTransport",
        "BaseTransport",
        "OutputStats",
        "Pending",
        "PicowsListener",
        "PicowsTransport",
        "ProtobufFrameSerializer",
        "RawPCMSerializer",
        "TransportParams",
        "WebsocketClientTransport",
        "WebsocketInputTransport",
        "WebsocketOutputTransport",
        "WebsocketParams",
        "WebsocketServerTransport",
        "WebsocketTransport",
        "drive",
    ],
    "flowcat.turns": [
        "AlwaysUserMuteStrategy",
        "BargeIn",
        "FirstSpeechUserMuteStrategy",
        "FunctionCallUserMuteStrategy",
        "InterruptionParams",
        "MinWordsUserTurnStartStrategy",
        "MuteUntilFirstBotCompleteUserMuteStrategy",
        "SmartTurnAnalyzer",
        "SpeechTimeoutUserTurnStopStrategy",
        "TranscriptionUserTurnStartStrategy",
        "TranscriptionUserTurnStopStrategy",
        "TurnAnalyzerUserTurnStopStrategy",
        "TurnPrediction",
        "UserIdleTimer",
        "UserMuteStrategy",
        "UserTurnProcessor",
        "UserTurnStartStrategy",
        "UserTurnStopStrategy",
        "VADUserTurnStartStrategy",
        "default_smart_turn_model_path",
        "log_mel_features",
    ],
}


def _public_modules() -> list[str]:
    names = ["flowcat"]
    for info in pkgutil.walk_packages(flowcat.__path__, "flowcat."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def test_every_public_module_is_locked() -> None:
    assert _public_modules() == sorted(EXPECTED)


def test_the_lock_covers_the_layers() -> None:
    packages = {"flowcat", "flowcat.frames", "flowcat.runtime", "flowcat.audio", "flowcat.audio.vad"}
    packages |= {"flowcat.audio.dtmf", "flowcat.turns", "flowcat.serializers", "flowcat.transports"}
    packages |= {"flowcat.server", "flowcat.testing", "flowcat.bench", "flowcat.services", "flowcat.agent"}
    packages |= {"flowcat.config", "flowcat.errors", "flowcat.cli"}
    assert packages <= set(EXPECTED)


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_all_is_locked_and_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == EXPECTED[module]
    assert names == sorted(names), f"{module}.__all__ is not sorted"
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"
    if hasattr(mod, "__path__"):  # a package exposes exactly its __all__
        public = {
            n for n in vars(mod) if not n.startswith("_") and not isinstance(getattr(mod, n), type(importlib))
        }
        public -= {"annotations"}
        extra = public - set(names)
        assert not extra, f"{module} exposes names not in __all__: {sorted(extra)}"


def test_one_call_info_class() -> None:
    import ast
    from pathlib import Path

    import flowcat.serializers
    import flowcat.server

    assert flowcat.server.CallInfo is flowcat.serializers.CallInfo
    root = Path(flowcat.__file__).parent
    defs = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "CallInfo"
    ]
    assert defs == ["serializers/_call.py"]


def test_audiosocket_names_are_public() -> None:
    import flowcat.server
    import flowcat.transports

    names = {
        "AudioSocketInputTransport",
        "AudioSocketListener",
        "AudioSocketOutputTransport",
        "AudioSocketParams",
        "AudioSocketParser",
        "AudioSocketTransport",
    }
    assert names <= set(flowcat.transports.__all__)
    assert "serve_audiosocket" in flowcat.server.__all__
    assert callable(flowcat.server.serve_audiosocket)


def test_carrier_auth_errors_are_in_the_hierarchy() -> None:
    from flowcat.errors import FlowcatError, ProtocolError, SignatureError, TransportError
    from flowcat.serializers._jwt import JWTError, verify_hs256
    from flowcat.serializers._sfv import SFVError, parse_dictionary

    assert issubclass(SignatureError, TransportError)
    with pytest.raises(SignatureError):
        verify_hs256("not-a-token", b"k")
    with pytest.raises(JWTError):
        verify_hs256("a.b.c", b"k")
    with pytest.raises(ProtocolError) as exc_info:
        parse_dictionary('sig1=("@authority"')
    assert isinstance(exc_info.value, SFVError) and isinstance(exc_info.value, FlowcatError)
