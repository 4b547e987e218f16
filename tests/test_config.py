"""flowcat.config: YAML/JSON agents validated, each mistake located and explained; services built from specs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowcat.config import (
    AgentPipeline,
    ProviderConfig,
    agent_pipeline,
    build_service,
    check_agent,
    load_config,
    parse_config,
)
from flowcat.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"DEEPGRAM_API_KEY": "dg", "OPENAI_API_KEY": "oa", "CARTESIA_API_KEY": "ca"}

GOOD = """\
agents:
  assistant:
    brain: {kind: llm, system_prompt: Be brief.}
    topology:
      mode: cascaded
      stt: {provider: deepgram, model: nova-3, options: {language: fr}}
      llm: {provider: openai, model: gpt-4.1-mini, options: {base_url: "http://127.0.0.1:9/v1"}}
      tts: {provider: cartesia, voice: v1}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.yaml")
    return [str(p) for p in info.value.problems]  # type: ignore[attr-defined]


def test_shipped_examples_load_and_check_with_keys_set() -> None:
    files = sorted((ROOT / "examples" / "agents").glob("*.yaml"))
    assert files
    for f in files:
        loaded = load_config(f)
        for name in loaded.config.agents:
            env = {**KEYS}
            assert [str(p) for p in check_agent(loaded, name, env) if "brain" not in p.path] == [], f


def test_an_unknown_setting_is_located_with_the_close_names() -> None:
    text = GOOD.replace("    brain:", "    trnsports: [webrtc]\n    brain:")
    assert problems_of(text) == [
        "agent.yaml:3:5: agents.assistant.trnsports: unknown setting 'trnsports' (did you mean 'transports'?)"
    ]


def test_a_wrong_type_and_a_missing_setting_are_both_reported() -> None:
    text = GOOD.replace("      tts: {provider: cartesia, voice: v1}\n", "") + "    capacity: lots\n"
    probs = problems_of(text)
    assert any(p.startswith("agent.yaml:4:5: agents.assistant.topology.tts: required setting is missing")
               for p in probs), probs
    assert any(p.startswith("agent.yaml:8:5: agents.assistant.capacity: ") and "'lots'" in p for p in probs), probs


def test_an_unknown_brain_kind_and_transport() -> None:
    probs = problems_of(GOOD.replace("kind: llm", "kind: grpah") + "    transports: [webrtc, twilo]\n")
    assert any("agents.assistant.brain: unknown kind 'grpah'" in p and "did you mean 'graph'" in p for p in probs)
    assert any(p.startswith("agent.yaml:9:") and "unknown transport 'twilo'" in p and "'twilio'" in p
               for p in probs), probs


def test_keys_are_never_read_from_the_file() -> None:
    text = GOOD.replace("options: {language: fr}", "options: {language: fr, api_key: sk-123}")
    (p,) = problems_of(text)
    col = text.splitlines()[5].index("api_key") + 1
    assert p.startswith(f"agent.yaml:6:{col}: agents.assistant.topology.stt.options.api_key: keys are never read")
    assert "sk-123" not in p


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^agent.yaml:\d+:\d+: not valid YAML/JSON: expected ',' or ']'"):
        parse_config("agents:\n  a:\n    brain: [unclosed\n", "agent.yaml")


def test_json_files_are_read_with_positions_too() -> None:
    data = {"agents": {"Bad Name": {"brain": {"kind": "llm"}, "topology": {
        "stt": {"provider": "deepgram"}, "tts": {"provider": "cartesia"}}}}}
    with pytest.raises(ConfigError, match=r"agents\.Bad Name: an agent name is lower-case"):
        parse_config(json.dumps(data, indent=1), "agent.json")


def test_check_agent_names_unknown_providers_missing_keys_and_missing_llm() -> None:
    text = GOOD.replace("provider: deepgram", "provider: deepgramm").replace(
        "      llm: {provider: openai, model: gpt-4.1-mini, options: {base_url: \"http://127.0.0.1:9/v1\"}}\n", "")
    loaded = parse_config(text, "agent.yaml")
    probs = [str(p) for p in check_agent(loaded, "assistant", {})]
    assert any(p.startswith("agent.yaml:6:13: agents.assistant.topology.stt.provider: unknown STT provider "
                            "'deepgramm' (did you mean 'deepgram'?)") for p in probs), probs
    assert "agent.yaml:7:13: agents.assistant.topology.tts.provider: Cartesia WebSocket needs a key: set the " \
           "environment variable CARTESIA_API_KEY" in probs
    assert any("the llm brain needs topology.llm" in p for p in probs)


def test_an_option_that_is_no_parameter_is_refused_with_the_accepted_names() -> None:
    loaded = parse_config(GOOD.replace("options: {language: fr}", "options: {langauge: fr}"), "agent.yaml")
    (p,) = check_agent(loaded, "assistant", KEYS)
    assert str(p).startswith("agent.yaml:6:13: agents.assistant.topology.stt.provider: DeepgramSTTService has "
                             "no parameter or setting 'langauge' (did you mean 'language'?)")


def test_build_service_maps_model_voice_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    stt = build_service("stt", ProviderConfig(provider="deepgram", model="nova-2", options={"language": "fr"}))
    assert (stt.settings.model, stt.settings.language) == ("nova-2", "fr")
    llm = build_service("llm", ProviderConfig(provider="openai", model="m1", options={"base_url": "http://h/v1"}))
    assert llm.model_name == "m1" and llm.base_url == "http://h/v1"
    tts = build_service("tts", ProviderConfig(provider="cartesia", voice="v9"))
    assert tts.settings.voice == "v9"


def test_agent_pipeline_builds_the_cascaded_llm_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    from flowcat.agent import LLMAssistantAggregator, LLMUserAggregator
    from flowcat.audio.vad import VADProcessor
    from flowcat.services.llm import OpenAILLMService
    from flowcat.services.stt import DeepgramSTTService
    from flowcat.services.tts import CartesiaTTSService

    make = agent_pipeline(parse_config(GOOD, "agent.yaml"), "assistant")
    one, two = make(), make()
    assert isinstance(one, AgentPipeline)
    assert [type(p) for p in one.processors] == [VADProcessor, DeepgramSTTService, LLMUserAggregator,
                                                 OpenAILLMService, CartesiaTTSService]
    assert [type(p) for p in one.after_output] == [LLMAssistantAggregator]
    assert one.processors[3] is not two.processors[3]  # a fresh pipeline per call
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        agent_pipeline(parse_config(GOOD, "agent.yaml"), "assistant")


def test_cli_config_check_and_schema(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text(GOOD)
    env = {"PATH": "/usr/bin:/bin", **KEYS}
    ok = subprocess.run([sys.executable, "-m", "flowcat.cli", "config", "check", str(good)],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "agent 'assistant': ok" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "flowcat.cli", "config", "check", str(good)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert bad.returncode == 1 and "set the environment variable OPENAI_API_KEY" in bad.stderr
    schema = subprocess.run([sys.executable, "-m", "flowcat.cli", "config", "schema"],
                            capture_output=True, text=True, timeout=60)
    doc = json.loads(schema.stdout)
    assert "agents" in doc["properties"] and "AgentConfig" in doc["$defs"]


BRAINS = """\
agents:
  clinic:
    brain: {kind: graph, graph: GRAPH}
    topology: &cascade
      stt: {provider: deepgram}
      llm: {provider: openai, options: {base_url: "http://127.0.0.1:9/v1"}}
      tts: {provider: cartesia, voice: v1}
    turns: {user_speech_timeout: 0.4}
    variables: {clinic: Elm Street}
  remote:
    brain: {kind: remote, url: "http://127.0.0.1:9/brain", allow_private: true}
    topology: *cascade
  socket:
    brain: {kind: websocket, url: "ws://127.0.0.1:9/brain", allow_private: ["127.0.0.0/8"]}
    topology: *cascade
""".replace("GRAPH", str(ROOT / "examples" / "graphs" / "clinic_receptionist.yaml"))


def test_agent_pipeline_serves_graph_remote_and_websocket_brains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each non-LLM brain runs in a BrainProcessor behind a UserTurnProcessor (the config's stop
    rule), between the STT and the TTS; a fresh brain per call."""
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    from flowcat.agent import BrainProcessor, GraphBrain, RemoteBrain, WebSocketBrain
    from flowcat.audio.vad import VADProcessor
    from flowcat.services.stt import DeepgramSTTService
    from flowcat.services.tts import CartesiaTTSService
    from flowcat.turns import SpeechTimeoutUserTurnStopStrategy, UserTurnProcessor

    loaded = parse_config(BRAINS, "brains.yaml")
    for name, brain_type in (("clinic", GraphBrain), ("remote", RemoteBrain), ("socket", WebSocketBrain)):
        make = agent_pipeline(loaded, name)
        one, two = make(), make()
        assert [type(p) for p in one.processors] == [VADProcessor, DeepgramSTTService, UserTurnProcessor,
                                                     BrainProcessor, CartesiaTTSService], name
        assert one.after_output == [] and one.brain is one.processors[3]
        proc = one.processors[3]
        assert isinstance(proc, BrainProcessor) and isinstance(proc.brain, brain_type), name
        other = two.processors[3]
        assert isinstance(other, BrainProcessor) and other.brain is not proc.brain
    clinic = agent_pipeline(loaded, "clinic")()
    turns = clinic.processors[2]
    assert isinstance(turns, UserTurnProcessor)
    (stop,) = turns.user_turn_strategies.stop or ()
    assert isinstance(stop, SpeechTimeoutUserTurnStopStrategy) and stop.user_speech_timeout == 0.4
    graph = clinic.brain
    assert isinstance(graph, BrainProcessor) and isinstance(graph.brain, GraphBrain)
    assert graph.brain.variables["clinic"] == "Elm Street" and graph.call.variables == {"clinic": "Elm Street"}


def test_agent_pipeline_text_input_and_no_tts_leave_out_their_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "oa")  # no STT or TTS keys: not needed here
    from flowcat.agent import BrainProcessor, LLMUserAggregator
    from flowcat.services.llm import OpenAILLMService

    loaded = parse_config(BRAINS, "brains.yaml")
    clinic = agent_pipeline(loaded, "clinic", text_input=True, tts=False)()
    assert [type(p) for p in clinic.processors] == [BrainProcessor]
    assistant = agent_pipeline(parse_config(GOOD, "agent.yaml"), "assistant", text_input=True, tts=False)()
    assert [type(p) for p in assistant.processors] == [LLMUserAggregator, OpenAILLMService]
    with pytest.raises(ConfigError, match="CARTESIA_API_KEY"):
        agent_pipeline(loaded, "clinic", text_input=True)
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        agent_pipeline(loaded, "clinic", tts=False)


def test_the_remote_brain_needs_an_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    text = BRAINS.replace('      llm: {provider: openai, options: {base_url: "http://127.0.0.1:9/v1"}}\n', "")
    with pytest.raises(ConfigError, match="the remote brain needs topology.llm"):
        agent_pipeline(parse_config(text, "brains.yaml"), "remote")


def test_a_brain_url_on_a_private_address_needs_allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSRF guard applies to brain URLs from a configuration: loopback is refused unless allowed."""
    from flowcat.errors import OutboundAddressError

    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    text = BRAINS.replace(', allow_private: ["127.0.0.0/8"]', "")
    make = agent_pipeline(parse_config(text, "brains.yaml"), "socket")
    with pytest.raises(OutboundAddressError, match="loopback"):
        make()
