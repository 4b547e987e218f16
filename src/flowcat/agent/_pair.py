"""LLMContextAggregatorPair: the user and assistant halves over one shared context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..frames import LLMContext
from ._assistant import LLMAssistantAggregator, LLMAssistantAggregatorParams
from ._realtime_mode import RealtimeLink, RealtimeServiceModeConfig
from ._user import LLMUserAggregator, LLMUserAggregatorParams

__all__ = ["LLMContextAggregatorPair"]


class LLMContextAggregatorPair:
    """Builds both halves over ``context``.

    Put ``pair.user()`` after the STT (and VAD) and ``pair.assistant()`` after the
    output transport. ``user, assistant = LLMContextAggregatorPair(context)`` works too.

    Args:
        context: The conversation context both halves write.
        user_params: Parameters of the user half.
        assistant_params: Parameters of the assistant half.
        add_tool_change_messages: If not None, sets this on both halves' params.
        realtime_service_mode: When a speech-to-speech service drives the call: write the
            context from its transcripts, trailing, and let turns end without waiting for
            transcripts (see :class:`RealtimeServiceModeConfig` and ``docs/agent.md``).
            None: cascade behaviour.
    """

    def __init__(
        self,
        context: LLMContext,
        *,
        user_params: LLMUserAggregatorParams | None = None,
        assistant_params: LLMAssistantAggregatorParams | None = None,
        add_tool_change_messages: bool | None = None,
        realtime_service_mode: RealtimeServiceModeConfig | None = None,
    ) -> None:
        user_params = user_params or LLMUserAggregatorParams()
        assistant_params = assistant_params or LLMAssistantAggregatorParams()
        if add_tool_change_messages is not None:
            user_params.add_tool_change_messages = add_tool_change_messages
            assistant_params.add_tool_change_messages = add_tool_change_messages
        self._user = LLMUserAggregator(context, params=user_params)
        self._assistant = LLMAssistantAggregator(context, params=assistant_params)
        self._assistant.paired_user = self._user
        self.realtime_service_mode = realtime_service_mode
        if realtime_service_mode is not None:
            link = RealtimeLink(realtime_service_mode, self._user, self._assistant)
            self._user._rt = link
            self._assistant._rt = link
            if not realtime_service_mode.turns_await_transcripts:
                self._user.stop_waiting_for_transcripts()

    def user(self) -> LLMUserAggregator:
        """The user half."""
        return self._user

    def assistant(self) -> LLMAssistantAggregator:
        """The assistant half."""
        return self._assistant

    def __iter__(self) -> Iterator[Any]:
        return iter((self._user, self._assistant))
