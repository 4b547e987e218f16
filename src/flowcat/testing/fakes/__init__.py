"""Local fake servers that speak the vendors' documented wire protocols (Deepgram live
STT, OpenAI Chat Completions, Cartesia WebSocket TTS), for provider tests, the
conformance suite and the agent benchmark; and :class:`FakeRealtimeMemory`, an OpenAI
Realtime fake that bills its context and recalls only what it holds, and
:class:`SummarizingOpenAI`, a Chat Completions fake that summarizes by a fixed extractive rule
(both for the ContextRelay eval); :class:`FakeUltravox`, Ultravox's call API and ``joinUrl``
socket (realtime conformance).

Each fake serves on 127.0.0.1 (an ephemeral port), answers from a script with set
delays, can be told to fail (:class:`Behaviour`), records what clients sent
(:class:`Received`, credentials redacted) and never logs a key. ``python -m
flowcat.testing.fakes`` runs all three in one process (see :mod:`.__main__`).
"""

from __future__ import annotations

from ._base import Behaviour as Behaviour
from ._base import FakeServer as FakeServer
from ._base import Received as Received
from ._base import serve as serve
from ._cartesia import FakeCartesia as FakeCartesia
from ._deepgram import FakeDeepgram as FakeDeepgram
from ._openai import FakeOpenAI as FakeOpenAI
from ._openai import Reply as Reply
from ._openai import ToolCall as ToolCall
from ._realtime_memory import FakeRealtimeMemory as FakeRealtimeMemory
from ._realtime_memory import Rates as Rates
from ._realtime_memory import ScriptedTurn as ScriptedTurn
from ._summarizer import SummarizingOpenAI as SummarizingOpenAI
from ._summarizer import extractive_summary as extractive_summary
from ._tones import decode_tones as decode_tones
from ._tones import synthesize_tones as synthesize_tones
from ._ultravox import FakeUltravox as FakeUltravox
from ._ultravox import UltravoxCall as UltravoxCall

__all__ = [
    "Behaviour",
    "FakeCartesia",
    "FakeDeepgram",
    "FakeOpenAI",
    "FakeRealtimeMemory",
    "FakeServer",
    "FakeUltravox",
    "Rates",
    "Received",
    "Reply",
    "ScriptedTurn",
    "SummarizingOpenAI",
    "ToolCall",
    "UltravoxCall",
    "decode_tones",
    "extractive_summary",
    "serve",
    "synthesize_tones",
]
