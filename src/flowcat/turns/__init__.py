"""Turn-taking: when the user's turn starts and stops, mute, barge-in and idle.

:class:`UserTurnProcessor` is the user half's turn logic (pipecat's user
aggregator without the context). Strategies are small pure objects with pipecat's
names; :class:`SmartTurnAnalyzer` runs the smart-turn v3 end-of-turn model, one
ONNX session per process, batched across calls. See ``docs/turns.md``.
"""

from __future__ import annotations

from ._external import ExternalUserTurnStartStrategy as ExternalUserTurnStartStrategy
from ._external import ExternalUserTurnStopStrategy as ExternalUserTurnStopStrategy
from ._features import log_mel_features as log_mel_features
from ._idle import UserIdleTimer as UserIdleTimer
from ._interruption import BargeIn as BargeIn
from ._interruption import InterruptionParams as InterruptionParams
from ._mute import AlwaysUserMuteStrategy as AlwaysUserMuteStrategy
from ._mute import FirstSpeechUserMuteStrategy as FirstSpeechUserMuteStrategy
from ._mute import FunctionCallUserMuteStrategy as FunctionCallUserMuteStrategy
from ._mute import MuteUntilFirstBotCompleteUserMuteStrategy as MuteUntilFirstBotCompleteUserMuteStrategy
from ._mute import UninterruptibleSpeechUserMuteStrategy as UninterruptibleSpeechUserMuteStrategy
from ._mute import UserMuteStrategy as UserMuteStrategy
from ._preemptive import PreemptiveGate as PreemptiveGate
from ._preemptive import UserTurnSpeculation as UserTurnSpeculation
from ._processor import UserTurnProcessor as UserTurnProcessor
from ._smart_turn import SmartTurnAnalyzer as SmartTurnAnalyzer
from ._smart_turn import TurnPrediction as TurnPrediction
from ._smart_turn import default_smart_turn_model_path as default_smart_turn_model_path
from ._start import MinWordsUserTurnStartStrategy as MinWordsUserTurnStartStrategy
from ._start import TranscriptionUserTurnStartStrategy as TranscriptionUserTurnStartStrategy
from ._start import UserTurnStartStrategy as UserTurnStartStrategy
from ._start import VADUserTurnStartStrategy as VADUserTurnStartStrategy
from ._stop import SpeechTimeoutUserTurnStopStrategy as SpeechTimeoutUserTurnStopStrategy
from ._stop import TranscriptionUserTurnStopStrategy as TranscriptionUserTurnStopStrategy
from ._stop import UserTurnStopStrategy as UserTurnStopStrategy
from ._strategies import ExternalUserTurnStrategies as ExternalUserTurnStrategies
from ._strategies import UserTurnStrategies as UserTurnStrategies
from ._strategies import default_user_turn_start_strategies as default_user_turn_start_strategies
from ._strategies import default_user_turn_stop_strategies as default_user_turn_stop_strategies
from ._turn_analyzer import TurnAnalyzerUserTurnStopStrategy as TurnAnalyzerUserTurnStopStrategy

__all__ = [
    "AlwaysUserMuteStrategy",
    "BargeIn",
    "ExternalUserTurnStartStrategy",
    "ExternalUserTurnStopStrategy",
    "ExternalUserTurnStrategies",
    "FirstSpeechUserMuteStrategy",
    "FunctionCallUserMuteStrategy",
    "InterruptionParams",
    "MinWordsUserTurnStartStrategy",
    "MuteUntilFirstBotCompleteUserMuteStrategy",
    "PreemptiveGate",
    "SmartTurnAnalyzer",
    "SpeechTimeoutUserTurnStopStrategy",
    "TranscriptionUserTurnStartStrategy",
    "TranscriptionUserTurnStopStrategy",
    "TurnAnalyzerUserTurnStopStrategy",
    "TurnPrediction",
    "UninterruptibleSpeechUserMuteStrategy",
    "UserIdleTimer",
    "UserMuteStrategy",
    "UserTurnProcessor",
    "UserTurnSpeculation",
    "UserTurnStartStrategy",
    "UserTurnStopStrategy",
    "UserTurnStrategies",
    "VADUserTurnStartStrategy",
    "default_smart_turn_model_path",
    "default_user_turn_start_strategies",
    "default_user_turn_stop_strategies",
    "log_mel_features",
]
