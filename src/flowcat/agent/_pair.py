"""LLMContextAggregatorPair: the user and assistant halves over one shared context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..frames import LLMContext
from ._assistant import LLMAssistantAggregator, LLMAssistantAggregatorParams
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
    """

    def __init__(
        self,
        context: LLMContext,
        *,
        user_params: LLMUserAggregatorParams | None = None,
        assistant_params: LLMAssistantAggregatorParams | None = None,
        add_tool_change_messages: bool | None = None,
    ) -> None:
        user_params = user_params or LLMUserAggregatorParams()
        assistant_params = assistant_params or LLMAssistantAggregatorParams()
        if add_tool_change_messages is not None:
            user_params.add_tool_change_messages = add_tool_change_messages
            assistant_params.add_tool_change_messages = add_tool_change_messages
        self._user = LLMUserAggregator(context, params=user_params)
        self._assistant = LLMAssistantAggregator(context, params=assistant_params)
        self._assistant.paired_user = self._user

    def user(self) -> LLMUserAggregator:
        """The user half."""
        return self._user

    def assistant(self) -> LLMAssistantAggregator:
        """The assistant half."""
        return self._assistant

    def __iter__(self) -> Iterator[Any]:
        return iter((self._user, self._assistant))
