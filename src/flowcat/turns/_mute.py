"""User **mute** strategies: when is the user's speech ignored?

While any mute strategy says "muted", :class:`~flowcat.turns.UserTurnProcessor`
drops the user's VAD frames, transcriptions, input audio and speaking frames (as
pipecat's user aggregator does): no turn starts, nothing interrupts the bot,
nothing reaches the LLM. The state is decided *before* each frame: the frame
that ends a mute (e.g. ``BotStoppedSpeakingFrame``) unmutes what follows it.
"""

from __future__ import annotations

from ..frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    UninterruptibleSpeechFrame,
)

__all__ = [
    "AlwaysUserMuteStrategy",
    "FirstSpeechUserMuteStrategy",
    "FunctionCallUserMuteStrategy",
    "MuteUntilFirstBotCompleteUserMuteStrategy",
    "UninterruptibleSpeechUserMuteStrategy",
    "UserMuteStrategy",
]


class UserMuteStrategy:
    """Base class: says whether the user is muted after seeing a frame."""

    triggers: tuple[type[Frame], ...] = (BotStartedSpeakingFrame, BotStoppedSpeakingFrame)
    """Frame types that can change this strategy's state."""

    def __init__(self) -> None:
        self.muted = False

    def process(self, frame: Frame) -> bool:
        """Update on a trigger frame; return whether the user is muted now."""
        return self.muted


class AlwaysUserMuteStrategy(UserMuteStrategy):
    """Mute the user whenever the bot speaks (no barge-in at all)."""

    def process(self, frame: Frame) -> bool:
        """Muted between BotStarted and BotStopped."""
        cls = type(frame)
        if cls is BotStartedSpeakingFrame:
            self.muted = True
        elif cls is BotStoppedSpeakingFrame:
            self.muted = False
        return self.muted


class FirstSpeechUserMuteStrategy(UserMuteStrategy):
    """Mute the user while the bot speaks for the first time (e.g. the greeting).

    Muted from the bot's first ``BotStartedSpeakingFrame`` until its first
    ``BotStoppedSpeakingFrame``; never again afterwards.
    """

    def __init__(self) -> None:
        super().__init__()
        self._done = False

    def process(self, frame: Frame) -> bool:
        """Muted during the bot's first speech only."""
        if self._done:
            return False
        cls = type(frame)
        if cls is BotStartedSpeakingFrame:
            self.muted = True
        elif cls is BotStoppedSpeakingFrame:
            self.muted = False
            self._done = True
        return self.muted


class MuteUntilFirstBotCompleteUserMuteStrategy(UserMuteStrategy):
    """Mute the user from the start of the call until the bot's first speech ended."""

    def __init__(self) -> None:
        super().__init__()
        self.muted = True

    def process(self, frame: Frame) -> bool:
        """Unmuted for good at the first ``BotStoppedSpeakingFrame``."""
        if type(frame) is BotStoppedSpeakingFrame:
            self.muted = False
        return self.muted


class FunctionCallUserMuteStrategy(UserMuteStrategy):
    """Mute the user while function (tool) calls are running.

    Muted from ``FunctionCallsStartedFrame`` until each of its calls has a
    ``FunctionCallResultFrame`` or ``FunctionCallCancelFrame`` (by ``tool_call_id``).
    """

    triggers = (FunctionCallsStartedFrame, FunctionCallResultFrame, FunctionCallCancelFrame)

    def __init__(self) -> None:
        super().__init__()
        self._running: set[str] = set()

    def process(self, frame: Frame) -> bool:
        """Track running tool calls."""
        if type(frame) is FunctionCallsStartedFrame:
            for call in frame.function_calls:
                self._running.add(call.tool_call_id)
        else:
            self._running.discard(frame.tool_call_id)  # type: ignore[attr-defined]
        self.muted = bool(self._running)
        return self.muted


class UninterruptibleSpeechUserMuteStrategy(UserMuteStrategy):
    """Mute the user while the bot speaks words that must not be cut.

    ``UninterruptibleSpeechFrame(active=True)`` (pushed upstream by ``BrainProcessor``
    for a ``Say(allow_interruptions=False)``) mutes at once, before the words are even
    synthesized; ``active=False`` (all of them sent) arms the end: the user is unmuted at
    the first ``BotStoppedSpeakingFrame`` after the bot started speaking under the mute
    (or at once, if the bot already spoke and is silent again). ``UserTurnProcessor``
    always includes one: it does nothing until such a frame comes.
    """

    triggers = (UninterruptibleSpeechFrame, BotStartedSpeakingFrame, BotStoppedSpeakingFrame)

    def __init__(self) -> None:
        super().__init__()
        self._spoke = False  # the bot started speaking since the mute began
        self._speaking = False
        self._sent = False  # every uninterruptible word was sent

    def process(self, frame: Frame) -> bool:
        """Mute on ``active=True``; unmute when the bot stopped after ``active=False``."""
        cls = type(frame)
        if cls is UninterruptibleSpeechFrame:
            if frame.active:  # type: ignore[attr-defined]
                self.muted = True
                self._spoke = self._speaking
                self._sent = False
            elif self.muted:
                self._sent = True
                if self._spoke and not self._speaking:
                    self.muted = False
        elif cls is BotStartedSpeakingFrame:
            self._speaking = True
            self._spoke = True
        elif cls is BotStoppedSpeakingFrame:
            self._speaking = False
            if self.muted and self._sent and self._spoke:
                self.muted = False
        return self.muted
