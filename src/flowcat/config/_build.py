"""Building one call's processors from an agent's configuration.

The server asks :func:`agent_pipeline` for a factory per agent at start-up (so every
mistake is found before the first call), then calls it once per call. The factory
returns an :class:`AgentPipeline`: the processors between the input and output
transports, and those that run after the output (the assistant aggregator, which
commits what was actually played).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..runtime import FrameProcessor
from ._load import LoadedConfig
from ._providers import build_service, check_agent
from ._schema import AgentConfig, CascadedTopology, LLMBrainConfig

__all__ = ["AgentPipeline", "agent_pipeline"]


@dataclass
class AgentPipeline:
    """One call's processors (input transport side first)."""

    processors: list[FrameProcessor]
    after_output: list[FrameProcessor] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def _vad(agent: AgentConfig) -> FrameProcessor:
    from ..audio.vad import EnergyVADAnalyzer, SileroVADAnalyzer, VADParams, VADProcessor

    cfg = agent.vad
    params = VADParams(confidence=cfg.confidence, start_secs=cfg.start_secs, stop_secs=cfg.stop_secs,
                       min_volume=cfg.min_volume)
    analyzer = SileroVADAnalyzer(params=params) if cfg.analyzer == "silero" else EnergyVADAnalyzer(params=params)
    return VADProcessor(vad_analyzer=analyzer)


def _user_params(agent: AgentConfig) -> Any:
    from ..agent import LLMUserAggregatorParams
    from ..turns import SpeechTimeoutUserTurnStopStrategy, UserTurnStrategies

    return LLMUserAggregatorParams(
        user_turn_strategies=UserTurnStrategies(
            stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=agent.turns.user_speech_timeout)]
        )
    )


def _llm_brain_call(agent: AgentConfig, brain: LLMBrainConfig) -> AgentPipeline:
    from ..agent import LLMContext, LLMContextAggregatorPair

    topo = agent.topology
    assert isinstance(topo, CascadedTopology) and topo.llm is not None
    stt = build_service("stt", topo.stt)
    llm = build_service("llm", topo.llm)
    tts = build_service("tts", topo.tts)
    messages: list[Any] = [{"role": "system", "content": brain.system_prompt}]
    context = LLMContext(messages)
    pair = LLMContextAggregatorPair(context, user_params=_user_params(agent))
    procs: list[FrameProcessor] = [_vad(agent), stt, pair.user(), llm, tts]
    return AgentPipeline(procs, [pair.assistant()], dict(agent.variables))


def agent_pipeline(loaded: LoadedConfig, name: str) -> Callable[[], AgentPipeline]:
    """The per-call factory of agent ``name``, after checking everything it needs.

    Raises:
        ConfigError: What keeps the agent from running (all problems, one per line).
    """
    problems = check_agent(loaded, name)
    if problems:
        err = ConfigError("\n".join(str(p) for p in problems))
        err.problems = problems  # type: ignore[attr-defined]
        raise err
    agent = loaded.config.agents[name]
    brain = agent.brain
    if isinstance(brain, LLMBrainConfig):
        return lambda: _llm_brain_call(agent, brain)
    raise ConfigError(
        f"{loaded.file}: agents.{name}.brain: the {brain.kind!r} brain cannot be served by this build yet"
    )
