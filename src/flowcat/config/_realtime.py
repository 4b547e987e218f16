"""One call of a ``topology: realtime`` agent: the speech-to-speech service in the context
aggregator pair's realtime-service mode, ContextRelay before it when configured.

Server turns (``turns: server``, the provider's VAD)::

    user half (follows the service's turn frames) → [ContextRelay] → realtime service → (output) → assistant half

Local turns (``turns: local``; the agent's ``vad`` and ``turns`` settings)::

    VAD → user half (VAD start only, speech-timeout stop) → [ContextRelay] → realtime service → (output) → assistant half

The llm brain's ``system_prompt`` is the session's instructions, its ``tools`` are registered on
the service as direct functions (the same declarations the cascade's LLM takes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MissingExtraError
from ._providers import build_service, realtime_spec, summarizer_spec
from ._schema import AgentConfig, LLMBrainConfig, RealtimeTopology
from ._tools import register_tools

if TYPE_CHECKING:
    from ..runtime import FrameProcessor
    from ._build import AgentPipeline
    from ._load import LoadedConfig

__all__ = ["realtime_call"]

logger = logging.getLogger("flowcat.config")


def _summarizer(topo: RealtimeTopology) -> Any:
    """ContextRelay's summarizer: the configured (or ``auto``) LLM, else verbatim."""
    from ..agent import LLMSummarizer, VerbatimSummarizer

    relay = topo.context_relay
    assert relay is not None  # noqa: S101 - invariant: only called with a relay
    spec = summarizer_spec(topo)
    if spec is None:
        return VerbatimSummarizer()
    try:
        llm = build_service("llm", spec)
    except (ConfigError, MissingExtraError, TypeError) as exc:
        if relay.summarizer != "auto":
            raise  # check_agent reported it; a build failing here is a real error
        logger.info(
            "context relay: no summarizer from %s (%s); the digest stays verbatim", spec.provider, exc
        )
        return VerbatimSummarizer()
    return LLMSummarizer(llm, max_words=relay.summary_max_words)


def realtime_call(loaded: LoadedConfig, agent: AgentConfig) -> AgentPipeline:
    """The processors of one call of a realtime agent."""
    from ..agent import (
        ContextRelay,
        LLMContext,
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
        RealtimeServiceModeConfig,
    )
    from ..turns import (
        ExternalUserTurnStrategies,
        SpeechTimeoutUserTurnStopStrategy,
        UserTurnStrategies,
        VADUserTurnStartStrategy,
    )
    from ._build import AgentPipeline, _vad

    topo = agent.topology
    brain = agent.brain
    assert isinstance(topo, RealtimeTopology) and isinstance(brain, LLMBrainConfig)  # noqa: S101 - checked
    service = build_service("realtime", realtime_spec(topo, agent))
    register_tools(service, brain.tools, loaded.base_dir)
    procs: list[FrameProcessor] = []
    if topo.turns == "server":
        strategies: Any = ExternalUserTurnStrategies()
    else:
        procs.append(_vad(agent))
        # The VAD alone starts a turn: the model's transcript of the caller comes after the turn it
        # belongs to, and a transcription start strategy would open (and barge into) a new one.
        strategies = UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],
            stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=agent.turns.user_speech_timeout)],
        )
    context = LLMContext([{"role": "system", "content": brain.system_prompt}])
    pair = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=strategies, enable_interruptions=agent.turns.allow_interruptions
        ),
        realtime_service_mode=RealtimeServiceModeConfig(),
    )
    procs.append(pair.user())
    relay_cfg = topo.context_relay
    if relay_cfg is not None:
        procs.append(
            ContextRelay(
                service,
                base_prompt=brain.system_prompt,
                max_context_tokens=relay_cfg.max_context_tokens,
                min_turns_between=relay_cfg.min_turns_between,
                max_session_secs=relay_cfg.max_session_secs,
                trigger_after_turns=relay_cfg.trigger_after_turns,
                keep_recent_turns=relay_cfg.keep_recent_turns,
                summarizer=_summarizer(topo),
            )
        )
    procs.append(service)
    return AgentPipeline(procs, [pair.assistant()], dict(agent.variables), brain=service)
