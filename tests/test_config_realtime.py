"""``topology: realtime`` in a configuration: checked (each mistake located), built into the
realtime service in the aggregator pair's realtime-service mode, tools and ContextRelay included."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcat.agent import ContextRelay, LLMSummarizer, VerbatimSummarizer
from flowcat.audio.vad import VADProcessor
from flowcat.config import agent_pipeline, check_agent, parse_config
from flowcat.errors import ConfigError
from flowcat.services.llm import GoogleLLMService, OpenAILLMService
from flowcat.services.realtime import GeminiLiveLLMService, OpenAIRealtimeLLMService

KEYS = {"OPENAI_API_KEY": "oa", "GOOGLE_API_KEY": "gg"}

TOOLS = '''
async def lookup_order(params, order_id: str) -> dict:
    """Look up an order.

    Args:
        order_id: The order number.
    """
    return {"order_id": order_id, "status": "shipped"}


def not_async(params):
    return 1
'''

RT = """\
agents:
  rt:
    brain:
      kind: llm
      system_prompt: You are the Northwind line. Be brief.
      tools: [{function: "tools.py:lookup_order", timeout_secs: 5}]
    transports: [twilio]
    topology:
      mode: realtime
      provider: openai
      model: gpt-realtime
      voice: alloy
      options: {url: "ws://127.0.0.1:9/v1/realtime"}
      turns: server
      context_relay: {max_context_tokens: 900, trigger_after_turns: 3, keep_recent_turns: 2, summarizer: verbatim}
"""


@pytest.fixture
def cfg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS)
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def load(text: str, base: Path):  # type: ignore[no-untyped-def]
    return parse_config(text, "agent.yaml", base)


def problems(text: str, base: Path, env: dict[str, str] | None = None) -> list[str]:
    return [str(p) for p in check_agent(load(text, base), "rt", KEYS if env is None else env)]


def test_a_realtime_agent_is_built_with_server_turns_tools_and_the_relay(cfg_dir: Path) -> None:
    loaded = load(RT, cfg_dir)
    assert check_agent(loaded, "rt", KEYS) == []
    built = agent_pipeline(loaded, "rt")()
    names = [type(p).__name__ for p in built.processors]
    assert names == ["LLMUserAggregator", "ContextRelay", "OpenAIRealtimeLLMService"]
    assert [type(p).__name__ for p in built.after_output] == ["LLMAssistantAggregator"]
    svc = built.brain
    assert isinstance(svc, OpenAIRealtimeLLMService) and svc.url == "ws://127.0.0.1:9/v1/realtime"
    s = svc.s
    assert (s.model, s.voice, s.server_vad, s.instructions) == (
        "gpt-realtime",
        "alloy",
        True,
        "You are the Northwind line. Be brief.",
    )
    (event,) = svc.session_events()
    assert event["session"]["instructions"] == "You are the Northwind line. Be brief."
    assert event["session"]["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
    assert event["session"]["tools"] == [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "The order number."}},
                "required": ["order_id"],
            },
        }
    ]
    assert svc._functions["lookup_order"].timeout_secs == 5
    relay = built.processors[1]
    assert isinstance(relay, ContextRelay) and relay.service is svc
    assert (relay.max_context_tokens, relay.trigger_after_turns, relay.keep_recent_turns) == (900, 3, 2)
    assert isinstance(relay.summarizer, VerbatimSummarizer)
    assert relay.base_prompt == "You are the Northwind line. Be brief."
    assert built.processors[0]._rt is not None  # the pair's realtime-service mode


def test_local_turns_put_the_vad_first_and_turn_server_vad_off(cfg_dir: Path) -> None:
    text = (
        RT.replace("turns: server", "turns: local").replace(
            "      context_relay: {max_context_tokens: 900, trigger_after_turns: 3, keep_recent_turns: 2, "
            "summarizer: verbatim}\n",
            "",
        )
        + "    vad: {analyzer: energy}\n"
    )
    built = agent_pipeline(load(text, cfg_dir), "rt")()
    assert [type(p).__name__ for p in built.processors] == [
        "VADProcessor",
        "LLMUserAggregator",
        "OpenAIRealtimeLLMService",
    ]
    assert isinstance(built.processors[0], VADProcessor)
    # the VAD alone starts a turn: the model's late transcript of the caller must not open another
    assert [type(s).__name__ for s in built.processors[1]._start] == ["VADUserTurnStartStrategy"]
    (event,) = built.brain.session_events()  # type: ignore[union-attr]
    assert event["session"]["audio"]["input"]["turn_detection"] is None


def test_the_summarizer_is_the_providers_llm_by_default_or_the_one_named(cfg_dir: Path) -> None:
    auto = RT.replace(", summarizer: verbatim", "")
    relay = agent_pipeline(load(auto, cfg_dir), "rt")().processors[1]
    assert isinstance(relay.summarizer, LLMSummarizer) and isinstance(relay.summarizer.llm, OpenAILLMService)
    gemini = (
        auto.replace("provider: openai", "provider: gemini")
        .replace("      model: gpt-realtime\n", "")
        .replace("      voice: alloy\n", "")
        .replace('options: {url: "ws://127.0.0.1:9/v1/realtime"}', "options: {}")
    )
    built = agent_pipeline(load(gemini, cfg_dir), "rt")()
    assert isinstance(built.brain, GeminiLiveLLMService)
    assert isinstance(built.processors[1].summarizer.llm, GoogleLLMService)  # same key: GOOGLE_API_KEY
    named = RT.replace(
        "summarizer: verbatim",
        'summarizer: {provider: openai, model: gpt-4.1-mini, options: {base_url: "http://h/v1"}}, '
        "summary_max_words: 60",
    )
    summ = agent_pipeline(load(named, cfg_dir), "rt")().processors[1].summarizer
    assert (
        summ.max_words == 60 and summ.llm.model_name == "gpt-4.1-mini" and summ.llm.base_url == "http://h/v1"
    )


def test_mistakes_are_located_and_explained(cfg_dir: Path) -> None:
    probs = problems(RT.replace("provider: openai", "provider: opnai"), cfg_dir)
    assert probs == [
        "agent.yaml:10:7: agents.rt.topology.provider: unknown realtime provider 'opnai' "
        "(did you mean 'openai'?); known: " + probs[0].split("known: ")[1]
    ]
    assert problems(RT, cfg_dir, {}) == [
        "agent.yaml:10:7: agents.rt.topology.provider: OpenAI Realtime (GA; beta by flag) needs a key: set the "
        "environment variable OPENAI_API_KEY"
    ]
    (p,) = problems(RT.replace("options: {url:", "options: {ulr:"), cfg_dir)
    assert (
        "agents.rt.topology.provider: OpenAIRealtimeLLMService has no parameter or setting 'ulr' "
        "(did you mean 'url'?)" in p
    )
    (p,) = problems(RT.replace("tools.py:lookup_order", "tools.py:not_async"), cfg_dir)
    assert p.startswith(
        "agent.yaml:6:16: agents.rt.brain.tools[0].function: tool 'tools.py:not_async': must be "
        "an async function"
    )
    (p,) = problems(RT.replace("tools.py:lookup_order", "tool.py:lookup_order"), cfg_dir)
    assert "agents.rt.brain.tools[0].function: no tool file at" in p
    (p,) = problems(RT.replace("summarizer: verbatim", "summarizer: {provider: opnai}"), cfg_dir)
    assert (
        p.startswith("agent.yaml:15:")
        and "agents.rt.topology.context_relay.summarizer.provider: unknown "
        "LLM provider 'opnai' (did you mean 'openai'?"
        in p
    )
    graph = RT.replace(
        "      kind: llm\n", "      kind: graph\n      graph: {nodes: [], edges: []}\n"
    ).replace(
        "      system_prompt: You are the Northwind line. Be brief.\n      tools: "
        '[{function: "tools.py:lookup_order", timeout_secs: 5}]\n',
        "",
    )
    assert any(
        "agents.rt.brain.kind: topology mode: realtime runs the llm brain" in p
        for p in problems(graph, cfg_dir)
    ), problems(graph, cfg_dir)


def test_schema_mistakes_in_the_realtime_settings(cfg_dir: Path) -> None:
    def parse_problems(text: str) -> list[str]:
        with pytest.raises(ConfigError) as info:
            load(text, cfg_dir)
        return [str(p) for p in info.value.problems]  # type: ignore[attr-defined]

    assert parse_problems(RT.replace("trigger_after_turns", "trigger_after_turn")) == [
        "agent.yaml:15:48: agents.rt.topology.context_relay.trigger_after_turn: unknown setting "
        "'trigger_after_turn' (did you mean 'trigger_after_turns'?)"
    ]
    assert parse_problems(RT.replace("summarizer: verbatim", "summarizer: short")) == [
        "agent.yaml:15:94: agents.rt.topology.context_relay.summarizer: expected 'auto', 'verbatim' or an LLM "
        "provider ({provider: NAME, model: ...}), got 'short'"
    ]
    (p,) = parse_problems(RT.replace("turns: server", "turns: provider"))
    assert p.startswith("agent.yaml:14:7: agents.rt.topology.turns: ") and "'server' or 'local'" in p
    (p,) = parse_problems(RT.replace("max_context_tokens: 900", "max_context_tokens: 0"))
    assert (
        "agents.rt.topology.context_relay.max_context_tokens: Input should be greater than or equal to 1" in p
    )


def test_typed_turns_are_refused_for_a_realtime_agent(cfg_dir: Path) -> None:
    with pytest.raises(ConfigError, match="a realtime agent hears audio"):
        agent_pipeline(load(RT, cfg_dir), "rt", text_input=True)


def test_a_cascaded_llm_brain_takes_the_same_tool_declarations(cfg_dir: Path) -> None:
    text = (
        RT.split("    topology:")[0]
        + """\
    topology:
      stt: {provider: deepgram}
      llm: {provider: openai, options: {base_url: "http://127.0.0.1:9/v1"}}
      tts: {provider: cartesia, voice: v1}
"""
    )
    env = {**KEYS, "DEEPGRAM_API_KEY": "d", "CARTESIA_API_KEY": "c"}
    assert problems(text, cfg_dir, env) == []
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        built = agent_pipeline(load(text, cfg_dir), "rt")()
    llm = built.brain
    assert isinstance(llm, OpenAILLMService)
    assert [s.name for s in llm.tool_schemas()] == ["lookup_order"]


@pytest.mark.parametrize(
    ("replacements", "code", "expected"),
    [
        ((), 0, "agent 'rt': ok"),
        (
            (("tools.py:lookup_order", "tools.py:lookup"), ("turns: server", "turns: vad")),
            1,
            "{path}:14:7: agents.rt.topology.turns: Input should be 'server' or 'local'",
        ),
        (
            (("tools.py:lookup_order", "tools.py:lookup"),),
            1,
            "{path}:6:16: agents.rt.brain.tools[0].function: tool 'tools.py:lookup': tools.py has no 'lookup'",
        ),
    ],
    ids=["ok", "turns", "tool"],
)
def test_flowcat_config_check_reports_a_realtime_agent(
    cfg_dir: Path, replacements: tuple[tuple[str, str], ...], code: int, expected: str
) -> None:
    import subprocess
    import sys

    text = RT
    for old, new in replacements:
        text = text.replace(old, new)
    path = cfg_dir / "rt.yaml"
    path.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "flowcat.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "oa"},
        timeout=60,
    )
    assert out.returncode == code, out.stderr
    assert expected.format(path=path) in (out.stdout if code == 0 else out.stderr), out.stderr


def test_a_provider_subclass_takes_its_parents_settings_and_names_its_required_options(cfg_dir: Path) -> None:
    azure = RT.replace("provider: openai", "provider: azure").replace(
        'options: {url: "ws://127.0.0.1:9/v1/realtime"}', "options: {}"
    )
    env = {"AZURE_OPENAI_API_KEY": "az"}
    (p,) = problems(azure, cfg_dir, env)
    assert p == "agent.yaml:10:7: agents.rt.topology.provider: AzureRealtimeLLMService needs 'url' in options"
    ok = azure.replace(
        "options: {}",
        'options: {url: "wss://res.openai.azure.com/openai/v1/realtime", function_call_timeout_secs: 7}',
    )
    assert problems(ok, cfg_dir, env) == []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AZURE_OPENAI_API_KEY", "az")
        svc = agent_pipeline(load(ok, cfg_dir), "rt")().brain
    assert svc.url == "wss://res.openai.azure.com/openai/v1/realtime"  # type: ignore[union-attr]
    assert (svc.s.voice, svc.s.server_vad, svc.s.instructions) == (  # type: ignore[union-attr]
        "alloy",
        True,
        "You are the Northwind line. Be brief.",
    )
    assert svc._function_call_timeout_secs == 7  # type: ignore[union-attr]  # a parent class parameter
