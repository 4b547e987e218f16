"""Agent logic on top of services (empty: later issues fill it).

Layer: above :mod:`flowcat.services`, below :mod:`flowcat.config`.

Planned: the conversation context, the user/assistant context aggregators that turn
transcripts and LLM output into context messages, function calling (tool schemas,
dispatch, results), and "brains" that decide what the bot says next.
"""

from __future__ import annotations

__all__: list[str] = []
