"""The offline voice agent, as a ``flowcat serve --app`` factory: no provider, no key, no network.

``flowcat serve --app flowcat.bench._offline_app:offline_app --sample-rate 8000``. Per call:
transport → VAD (Silero) → ``WhisperSTTService`` (tiny.en) → ``UserTurnProcessor`` (the turn
ends ``FLOWCAT_OFFLINE_SPEECH_TIMEOUT`` s after the VAD stop, once Whisper's final came) →
``BrainProcessor(GraphBrain(clinic graph, IntentMatcher))`` (keywords, MiniLM embeddings,
slots, DTMF) → TTS (Piper if installed, else espeak) → output. Every model comes from a
wheel and is loaded once per process (docs/offline.md); every call shares it and the one
bounded inference pool.

Options (environment, read per call):

* ``FLOWCAT_OFFLINE_GRAPH``: the graph file (default ``examples/graphs/clinic_receptionist.yaml``);
* ``FLOWCAT_OFFLINE_TTS``: ``piper``, ``espeak`` or ``auto`` (default: Piper if installed);
* ``FLOWCAT_OFFLINE_SILENCE``: seconds of caller silence before the graph's re-prompt (default 10;
  ``0``: never);
* ``FLOWCAT_OFFLINE_SPEECH_TIMEOUT``: the turn rule's wait after the VAD stop (default 0.3 s).

A server worker (``FLOWCAT_WORKER_ID`` set) loads every model when it imports this module,
before it serves (so a call's first turn does not pay for loading, and the process's RSS is
the loaded one); the supervisor, which imports it only to check it, does not.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from ..agent import BrainCall, BrainProcessor
from ..agent.graph import GraphBrain, IntentMatcher, shared_embedder
from ..audio.vad import SileroVADAnalyzer, VADProcessor
from ..errors import ConfigError
from ..runtime import FrameProcessor
from ..server import CallInfo
from ..services.stt import WhisperSTTService
from ..services.tts import EspeakTTSService, PiperTTSService
from ..turns import SpeechTimeoutUserTurnStopStrategy, UserTurnProcessor

__all__ = ["DEFAULT_GRAPH", "offline_app", "tts_engine", "warm"]

logger = logging.getLogger("flowcat.bench.offline")

DEFAULT_GRAPH = Path(__file__).resolve().parents[3] / "examples" / "graphs" / "clinic_receptionist.yaml"


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def tts_engine() -> str:
    """``piper`` or ``espeak``: ``FLOWCAT_OFFLINE_TTS``, else Piper when its extra is installed."""
    choice = os.environ.get("FLOWCAT_OFFLINE_TTS", "auto")
    if choice not in ("auto", "piper", "espeak"):
        raise ConfigError(f"FLOWCAT_OFFLINE_TTS must be piper, espeak or auto, got {choice!r}")
    if choice == "auto":
        return "piper" if importlib.util.find_spec("piper") is not None else "espeak"
    return choice


def _graph_path() -> Path:
    return Path(os.environ.get("FLOWCAT_OFFLINE_GRAPH") or DEFAULT_GRAPH)


_example_vectors: dict[str, Any] = {}


def _matcher() -> IntentMatcher:
    """A call's intent matcher, seeded with the graph's example phrases embedded once per process
    (:func:`warm`); the text of the call's own turns is embedded in its own cache, dropped with it."""
    matcher = IntentMatcher(embedder=shared_embedder(), threshold=0.6)
    matcher._vectors.update(_example_vectors)
    return matcher


def warm() -> None:
    """Load every model of the agent now (Whisper, the TTS voice, MiniLM, Silero) and embed the
    graph's example phrases."""
    import asyncio
    import concurrent.futures

    from ..audio.vad._silero_model import SileroModel
    from ..services.tts.espeak import EspeakEngine

    WhisperSTTService.shared_model()
    if tts_engine() == "piper":
        PiperTTSService.shared_voice()
    else:
        EspeakEngine.shared()
    matcher = IntentMatcher(embedder=shared_embedder(), threshold=0.6)
    edges = GraphBrain(_graph_path(), matcher=matcher).graph.edges
    # On a thread of its own: the server imports this module inside its running loop.
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        ex.submit(asyncio.run, matcher.prepare(edges)).result()
    _example_vectors.update(matcher._vectors)
    SileroModel.shared()
    logger.info("offline agent: models loaded (tts=%s)", tts_engine())


def offline_app(call: CallInfo) -> list[FrameProcessor]:
    """The offline clinic receptionist for one call."""
    silence = _float_env("FLOWCAT_OFFLINE_SILENCE", 10.0)
    brain = GraphBrain(_graph_path(), matcher=_matcher())
    brain_call = BrainCall(call.call_id or call.stream_id or "", caller=call.from_number, transport=call.carrier)
    tts: Any = PiperTTSService() if tts_engine() == "piper" else EspeakTTSService()
    turns = UserTurnProcessor(stop_strategies=[
        SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=_float_env("FLOWCAT_OFFLINE_SPEECH_TIMEOUT", 0.3))
    ])
    return [
        VADProcessor(vad_analyzer=SileroVADAnalyzer()),
        WhisperSTTService(),
        turns,
        BrainProcessor(brain, call=brain_call, silence_timeout_secs=silence or None),
        tts,
    ]


if os.environ.get("FLOWCAT_WORKER_ID") is not None:
    warm()
