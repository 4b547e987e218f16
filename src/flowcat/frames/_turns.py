"""Frames of user-turn detection and preemptive (speculative) generation.

Pipecat's names where pipecat has the frame (``STTMetadataFrame``,
``Proposed…SpeakingFrame``, ``EagerEndOfTurnCancelFrame``); flowcat's own for the
rest. See ``docs/turns.md`` ("Preemptive generation").
"""

from __future__ import annotations

from dataclasses import field

from ._base import ControlFrame, SystemFrame, frame_dataclass

__all__ = [
    "EagerEndOfTurnCancelFrame",
    "EagerEndOfTurnConfirmFrame",
    "ProposedUserStartedSpeakingFrame",
    "ProposedUserStoppedSpeakingFrame",
    "RealtimeServiceMetadataFrame",
    "STTMetadataFrame",
    "UninterruptibleSpeechFrame",
    "UserTurnSpeculationFrame",
]


@frame_dataclass
class STTMetadataFrame(SystemFrame):
    """An STT service's latency profile, broadcast at the start of the call.

    ``ttfs_p99_latency`` (s): 99th percentile of the time from the end of speech to
    the final transcript. Turn stop strategies wait up to this long (less the VAD's
    ``stop_secs``) for a final transcript before they give up on it.
    """

    service_name: str = ""
    ttfs_p99_latency: float = 0.0


@frame_dataclass
class UninterruptibleSpeechFrame(SystemFrame):
    """Pushed upstream by whatever produces the bot's words (``BrainProcessor`` for a
    ``Say(allow_interruptions=False)``): ``active=True`` before the words that must not be
    cut, ``active=False`` once all of them were sent. The turn processor mutes the user
    from the first until the bot has stopped speaking after the second
    (:class:`~flowcat.turns.UninterruptibleSpeechUserMuteStrategy`)."""

    active: bool = True


@frame_dataclass
class RealtimeServiceMetadataFrame(SystemFrame):
    """A speech-to-speech (realtime) service announces itself, broadcast at the start of the call.

    ``server_turns``: the provider detects turns itself (server VAD) and reports them.
    The context aggregators use it to recommend their realtime-service mode when it is
    off (``docs/agent.md``).
    """

    service_name: str = ""
    server_turns: bool = True


@frame_dataclass
class ProposedUserStartedSpeakingFrame(SystemFrame):
    """An STT (or other service) with its own turn detection proposes that the user's turn started.

    An ``ExternalUserTurnStartStrategy`` resolves it into a ``UserStartedSpeakingFrame``
    (and the interruption); the proposal itself is consumed.
    """


@frame_dataclass
class ProposedUserStoppedSpeakingFrame(ControlFrame):
    """A service with its own turn detection proposes that the user's turn ended.

    A control frame, so it stays behind the final transcript the service pushed
    before it; an ``ExternalUserTurnStopStrategy`` resolves it.
    """


@frame_dataclass
class UserTurnSpeculationFrame(ControlFrame):
    """The turn is predicted to end: a speculative generation ``generation_id`` starts.

    Pushed downstream by the turn processor just before the speculative
    ``LLMContextFrame`` (same ``generation_id``), so it passes the LLM ahead of that
    response; a ``PreemptiveGate`` after the LLM holds the response that follows it.
    Not dropped by interruptions (the gate must see it in order).

    Attributes:
        generation_id: Id of the speculative generation (per turn processor, from 1).
        text: The user's final transcripts of the turn so far.
    """

    generation_id: int = 0
    text: str = ""
    interruptible: bool = field(init=False, repr=False, default=False)


@frame_dataclass
class EagerEndOfTurnConfirmFrame(SystemFrame):
    """The turn ended as predicted: generation ``generation_id`` answers it; release its output."""

    generation_id: int = 0


@frame_dataclass
class EagerEndOfTurnCancelFrame(SystemFrame):
    """The user went on: generation ``generation_id`` is void.

    The LLM service stops it (``generation_id`` 0: whatever speculative generation
    runs); a ``PreemptiveGate`` drops what it holds of it.
    """

    generation_id: int = 0
