"""The flowcat voice agent of ``flowcat bench agent``, as a ``flowcat serve --app`` factory.

``flowcat serve --app flowcat.bench._agent_app:agent_app`` with ``FLOWCAT_BENCH_FAKES`` naming the
port file of ``python -m flowcat.testing.fakes`` (its ``deepgram_url``, ``openai_base_url``).
Per call: transport → VAD (Silero, default ``VADParams``) → ``DeepgramSTTService`` → user
aggregator (flowcat's default turn rule: VAD or transcription start, stop 0.6 s after the VAD
stop once a transcript came) → ``OpenAILLMService`` → ``CartesiaTTSService`` → output →
assistant aggregator (:func:`~flowcat.server.after_output`). Every service points at the fakes
on 127.0.0.1; flowcat's providers have no fallback host.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..agent import LLMContext, LLMContextAggregatorPair, LLMUserAggregatorParams
from ..audio.vad import SileroVADAnalyzer, VADProcessor
from ..errors import ConfigError
from ..runtime import FrameProcessor
from ..server import CallInfo, after_output
from ..turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies

__all__ = ["FAKES_ENV", "SYSTEM_PROMPT", "agent_app", "fakes_urls"]

FAKES_ENV = "FLOWCAT_BENCH_FAKES"
SYSTEM_PROMPT = "You are a helpful voice assistant."
USER_SPEECH_TIMEOUT = 0.6

_urls: dict[str, str] | None = None


def fakes_urls() -> dict[str, str]:
    """The fakes' URLs from the port file named by ``FLOWCAT_BENCH_FAKES`` (read once)."""
    global _urls
    if _urls is None:
        path = os.environ.get(FAKES_ENV)
        if not path:
            raise ConfigError(f"{FAKES_ENV} must name the port file of python -m flowcat.testing.fakes")
        with open(path, encoding="utf-8") as f:
            _urls = json.load(f)
    return _urls


def agent_app(call: CallInfo) -> list[FrameProcessor]:
    """The cascaded agent for one call, every provider on the local fakes."""
    from ..services.llm.openai import OpenAILLMService
    from ..services.stt.deepgram import DeepgramSTTService
    from ..services.tts.cartesia import CartesiaTTSService

    urls = fakes_urls()
    stt = DeepgramSTTService(api_key="bench", base_url=urls["deepgram_url"])
    llm = OpenAILLMService(api_key="bench", base_url=urls["openai_base_url"], model="gpt-4.1")
    tts = CartesiaTTSService(api_key="bench", base_url=urls["deepgram_url"], voice_id="bench-voice")
    context = LLMContext([{"role": "system", "content": SYSTEM_PROMPT}])
    pair = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=USER_SPEECH_TIMEOUT)]
            )
        ),
    )
    procs: list[Any] = [VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt, pair.user(), llm, tts]
    return [*procs, after_output(pair.assistant())]


def _warm_up() -> None:
    """Load the Silero model once per worker before the first call (``flowcat serve`` runs an
    ``--app`` factory's ``warm_up`` off the loop at start): otherwise the first call's
    ``SileroVADAnalyzer()`` builds the ONNX session on the event loop, stalling every call."""
    from ..audio.vad import SileroModel

    SileroModel.shared()


agent_app.warm_up = _warm_up  # type: ignore[attr-defined]

