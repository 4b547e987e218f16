"""Building one call's processors from an agent's configuration.

The server asks :func:`agent_pipeline` for a factory per agent at start-up (so every
mistake is found before the first call), then calls it once per call. The factory
returns an :class:`AgentPipeline`: the processors between the input and output
transports, and those that run after the output (the assistant aggregator, which
commits what was actually played).

A ``topology: realtime`` agent (the llm brain on one speech-to-speech model) is built by
:mod:`._realtime`. Every brain of a cascaded agent runs on the same cascade: ``VAD → STT → turn → brain → TTS``. The ``llm`` brain's
turn and brain stages are the context aggregator pair around the LLM; the others (``graph``,
``remote``, ``websocket``) are a :class:`~flowcat.turns.UserTurnProcessor` (the same stop
rule: ``turns.user_speech_timeout`` after the VAD stop) in front of a
:class:`~flowcat.agent.BrainProcessor`, which makes one ``UserTurn`` of the final transcripts
between the turn's ``UserStartedSpeakingFrame`` and ``UserStoppedSpeakingFrame``.

``text_input=True`` leaves out VAD, STT and the turn stage (typed turns, ``flowcat console
--text``: a ``TranscriptionFrame`` is a whole turn for a brain, an ``LLMMessagesAppendFrame``
for the LLM brain); ``tts=False`` leaves out the TTS. Problems of what is left out are not
reported.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..runtime import FrameProcessor
from ._load import ConfigProblem, LoadedConfig
from ._providers import build_service, check_agent
from ._schema import (
    AgentConfig,
    CascadedTopology,
    GraphBrainConfig,
    LLMBrainConfig,
    RealtimeTopology,
    RemoteBrainConfig,
    WebSocketBrainConfig,
)
from ._tools import register_tools

__all__ = ["AgentPipeline", "agent_pipeline"]


@dataclass
class AgentPipeline:
    """One call's processors (input transport side first)."""

    processors: list[FrameProcessor]
    after_output: list[FrameProcessor] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    #: The processor that answers (the LLM, or the BrainProcessor); None never after a build.
    brain: FrameProcessor | None = None


def _vad(agent: AgentConfig) -> FrameProcessor:
    from ..audio.vad import EnergyVADAnalyzer, SileroVADAnalyzer, VADParams, VADProcessor

    cfg = agent.vad
    params = VADParams(confidence=cfg.confidence, start_secs=cfg.start_secs, stop_secs=cfg.stop_secs,
                       min_volume=cfg.min_volume)
    analyzer = SileroVADAnalyzer(params=params) if cfg.analyzer == "silero" else EnergyVADAnalyzer(params=params)
    return VADProcessor(vad_analyzer=analyzer)


def _strategies(agent: AgentConfig) -> Any:
    from ..turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies

    return UserTurnStrategies(
        stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=agent.turns.user_speech_timeout)]
    )


def _user_params(agent: AgentConfig) -> Any:
    from ..agent import LLMUserAggregatorParams

    return LLMUserAggregatorParams(user_turn_strategies=_strategies(agent))


def _topology(agent: AgentConfig) -> CascadedTopology:
    topo = agent.topology
    assert isinstance(topo, CascadedTopology)  # noqa: S101 - invariant (checked by check_agent), type narrowing
    return topo


def _brain_of(loaded: LoadedConfig, agent: AgentConfig, name: str) -> Any:
    """The AgentBrain of a non-LLM brain config (one per call)."""
    from ..agent import GraphBrain, RemoteBrain, WebSocketBrain

    brain = agent.brain
    topo = _topology(agent)
    if isinstance(brain, GraphBrainConfig):
        graph = loaded.resolve(brain.graph) if isinstance(brain.graph, str) else brain.graph
        llm = build_service("llm", topo.llm) if brain.decide == "llm" and topo.llm is not None else None
        return GraphBrain(graph, llm=llm, variables=agent.variables)
    token_env = getattr(brain, "token_env", None)
    token = os.environ.get(token_env) if token_env else None
    if isinstance(brain, RemoteBrainConfig):
        if topo.llm is None:
            raise ConfigError(f"{loaded.file}: agents.{name}.topology: the remote brain needs topology.llm")
        return RemoteBrain(brain.url, build_service("llm", topo.llm), token=token,
                           brain_config=brain.brain_config, timeout=brain.timeout_secs,
                           allow_private=brain.allow_private)
    assert isinstance(brain, WebSocketBrainConfig)  # noqa: S101 - invariant: the other brain kinds returned above
    return WebSocketBrain(brain.url, token=token, allow_private=brain.allow_private)


def _call(loaded: LoadedConfig, name: str, text_input: bool, tts: bool) -> AgentPipeline:
    from ..agent import BrainCall, BrainProcessor, LLMContext, LLMContextAggregatorPair
    from ..turns import UserTurnProcessor

    agent = loaded.config.agents[name]
    if isinstance(agent.topology, RealtimeTopology):
        from ._realtime import realtime_call

        return realtime_call(loaded, agent)
    topo = _topology(agent)
    brain_cfg = agent.brain
    procs: list[FrameProcessor] = []
    if not text_input:
        procs += [_vad(agent), build_service("stt", topo.stt)]
    after: list[FrameProcessor] = []
    if isinstance(brain_cfg, LLMBrainConfig):
        assert topo.llm is not None  # noqa: S101 - invariant: check_agent refused a remote brain without an LLM
        answer: FrameProcessor = build_service("llm", topo.llm)
        register_tools(answer, brain_cfg.tools, loaded.base_dir)
        context = LLMContext([{"role": "system", "content": brain_cfg.system_prompt}])
        pair = LLMContextAggregatorPair(context, user_params=_user_params(agent))
        procs += [pair.user(), answer]
        after.append(pair.assistant())
    else:
        if not text_input:
            procs.append(UserTurnProcessor(user_turn_strategies=_strategies(agent),
                                           enable_interruptions=agent.turns.allow_interruptions))
        call = BrainCall(call_id=uuid.uuid4().hex[:12], variables=dict(agent.variables))
        answer = BrainProcessor(_brain_of(loaded, agent, name), call=call)
        procs.append(answer)
    if tts:
        procs.append(build_service("tts", topo.tts))
    return AgentPipeline(procs, after, dict(agent.variables), brain=answer)


def _skipped(problem: ConfigProblem, name: str, text_input: bool, tts: bool) -> bool:
    topo = f"agents.{name}.topology."
    return (text_input and problem.path.startswith(topo + "stt")) or (not tts and problem.path.startswith(topo + "tts"))


def agent_pipeline(
    loaded: LoadedConfig, name: str, *, text_input: bool = False, tts: bool = True
) -> Callable[[], AgentPipeline]:
    """The per-call factory of agent ``name``, after checking everything it needs.

    Args:
        loaded: The configuration.
        name: The agent.
        text_input: Typed turns: no VAD, STT or turn stage (and no STT problems).
        tts: Include the TTS (else its problems are not reported either).

    Raises:
        ConfigError: What keeps the agent from running (all problems, one per line).
    """
    agent = loaded.config.agents[name]
    if isinstance(agent.topology, RealtimeTopology) and text_input:
        raise ConfigError(f"{loaded.file}: agents.{name}: a realtime agent hears audio: typed turns "
                          "(console --text) need a cascaded agent")
    problems = [p for p in check_agent(loaded, name) if not _skipped(p, name, text_input, tts)]
    if problems:
        err = ConfigError("\n".join(str(p) for p in problems))
        err.problems = problems  # type: ignore[attr-defined]
        raise err
    brain = agent.brain
    if isinstance(brain, RemoteBrainConfig) and _topology(agent).llm is None:
        raise ConfigError(f"{loaded.file}: agents.{name}.topology: the remote brain needs topology.llm")
    return lambda: _call(loaded, name, text_input, tts)
