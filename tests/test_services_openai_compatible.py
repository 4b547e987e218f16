"""The OpenAI-compatible hosts: every one passes the conformance suite against a Chat Completions
fake set up with that host's quirks, and its request on the wire is the host's (URL path and
query, auth header, body: model, stream_options, developer role, tools).

Quirk effects: usage on the last chunk, under ``x_groq``, cumulative on every chunk, or absent;
tool calls that arrive whole (no ``index``, or all at index 0); Azure's ``api-key`` header and
its two URL forms; no key for the local servers; OpenRouter's attribution headers; Perplexity
without tools.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

import pytest

from _fake_openai import FakeOpenAI
from _helpers import conformance_params
from flowcat.errors import ConfigError
from flowcat.frames import (
    ErrorFrame,
    Frame,
    FunctionCallsStartedFrame,
    LLMContext,
    LLMContextFrame,
    LLMTextFrame,
    LLMUsageMetricsData,
    MetricsFrame,
)
from flowcat.runtime import FrameProcessor, PipelineParams
from flowcat.services import Backoff, FunctionCallParams, close_http_sessions
from flowcat.services.adapters import FunctionSchema, ToolsSchema
from flowcat.services.llm import (
    AzureOpenAILLMService,
    GroqLLMService,
    MistralLLMService,
    OllamaLLMService,
    OpenAICompatibleLLMService,
    OpenAILLMSettings,
    OpenRouterLLMService,
    PerplexityLLMService,
    SambaNovaLLMService,
    VLLMLLMService,
)
from flowcat.services.llm import openai_compatible as oc
from flowcat.testing import SleepFrame, run_test
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario

pytestmark = pytest.mark.usefixtures("no_outside_connections")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)
AZURE_DEPLOYMENT = "gpt-4o-prod"
AZURE_VERSION = "2024-10-21"

# How each host's fake behaves (the host's documented or observed quirks, see openai_compatible.py).
QUIRKS: dict[str, dict[str, Any]] = {
    "azure": dict(auth_header="api-key", auth_scheme=""),
    "groq": dict(usage="x_groq"),
    "together": dict(usage="last_chunk", reject_developer=True),
    "fireworks": dict(usage="last_chunk", reject_stream_options=True),
    "openrouter": dict(comments=True, reject_developer=True),
    "deepseek": dict(comments=True, reject_developer=True),
    "cerebras": {},
    "mistral": dict(usage="last_chunk", reject_stream_options=True, reject_developer=True),
    "perplexity": dict(usage="every_chunk", reject_stream_options=True, reject_developer=True, reject_tools=True),
    "nvidia": dict(usage="every_chunk"),
    "sambanova": dict(reject_developer=True),
    "nebius": dict(reject_developer=True),
    "xai": {},
    "qwen": dict(reject_developer=True),
    "ollama": dict(reject_developer=True),
    "vllm": {},
    "llamacpp": {},
}


def host_class(name: str) -> type[OpenAICompatibleLLMService]:
    cls = getattr(oc, oc.HOSTS[name].cls)
    assert issubclass(cls, OpenAICompatibleLLMService) and cls.host is oc.HOSTS[name]
    return cls  # type: ignore[no-any-return]


def host_path(name: str) -> str:
    if name == "azure":
        return f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
    return urlparse(oc.HOSTS[name].base_url).path + "/chat/completions"


def make_fake(name: str, **kw: Any) -> FakeOpenAI:
    return FakeOpenAI(path=host_path(name), **{**QUIRKS[name], **kw})


def make_host_service(name: str, fake: FakeOpenAI, **kw: Any) -> OpenAICompatibleLLMService:
    common: dict[str, Any] = dict(api_key=fake.api_key, request_timeout_secs=0.5, chunk_timeout_secs=0.5,
                                  retry=FAST, **kw)
    if name == "azure":
        return AzureOpenAILLMService(endpoint=fake.url, deployment=AZURE_DEPLOYMENT, api_version=AZURE_VERSION,
                                     **common)
    if name == "vllm":
        common.setdefault("model", "Qwen/Qwen3-8B")
    return host_class(name)(base_url=fake.base_url, **common)


def _target(name: str) -> ConformanceTarget:
    def service(fake: FakeProvider) -> FrameProcessor:
        assert isinstance(fake, FakeOpenAI)
        return make_host_service(name, fake)

    return ConformanceTarget("llm", lambda: make_fake(name), service)


CONFORMANCE = {f"llm:{name}": _target(name) for name in oc.HOSTS}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ----------------------------------------------------------------------------- helpers


async def run(llm: FrameProcessor, context: LLMContext, *extra: Frame) -> tuple[list[Frame], list[Frame]]:
    try:
        return await run_test(llm, frames_to_send=[LLMContextFrame(context), *extra],
                              params=PipelineParams(enable_metrics=True, enable_usage_metrics=True), timeout=10)
    finally:
        await close_http_sessions()


def text(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def usages(frames: list[Frame]) -> list[tuple[int, int, int]]:
    return [(d.value.prompt_tokens, d.value.completion_tokens, d.value.total_tokens)
            for f in frames if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, LLMUsageMetricsData)]


def errors(frames: list[Frame]) -> list[ErrorFrame]:
    return [f for f in frames if isinstance(f, ErrorFrame)]


WEATHER = FunctionSchema("get_weather", "Weather in a city.", {"city": {"type": "string"}}, ["city"])


def wire_context() -> LLMContext:
    return LLMContext([{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Paris?"}],
                      tools=ToolsSchema([WEATHER]), tool_choice="auto")


# ----------------------------------------------------------------------------- the wire, per host


@pytest.mark.parametrize("name", list(oc.HOSTS))
async def test_request_on_the_wire(name: str) -> None:
    host = oc.HOSTS[name]
    fake = make_fake(name)
    await fake.start()
    try:
        down, up = await run(make_host_service(name, fake), wire_context())
    finally:
        await fake.close()
    assert not errors(up), [e.error for e in errors(up)]
    assert text(down) == fake.expected_text
    assert usages(down) == [(5, 5, 10)]  # once, wherever the host put it
    # URL path and query.
    path, query = fake.paths[0]
    assert path == host_path(name)
    assert query == ({"api-version": AZURE_VERSION} if name == "azure" else {})
    # The key, in the host's header.
    h = fake.headers[0]
    if name == "azure":
        assert h["api-key"] == fake.api_key and "Authorization" not in h
    else:
        assert h["Authorization"] == f"Bearer {fake.api_key}"
    # The body.
    body = fake.bodies[0]
    expected_model = {"azure": AZURE_DEPLOYMENT, "vllm": "Qwen/Qwen3-8B"}.get(name, host.default_model)
    assert body["model"] == expected_model and body["stream"] is True
    assert ("stream_options" in body) is host.stream_options
    if host.stream_options:
        assert body["stream_options"] == {"include_usage": True}
    roles = [m["role"] for m in body["messages"]]
    assert roles == (["developer", "user"] if host.developer_role else ["user", "user"])
    if host.tools:
        assert body["tools"] == [WEATHER.to_openai()] and body["tool_choice"] == "auto"
    else:
        assert "tools" not in body and "tool_choice" not in body


@pytest.mark.parametrize("name", list(oc.HOSTS))
def test_registry_entry_and_key_variable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host = oc.HOSTS[name]
    info = next(p for p in oc.PROVIDERS if p.name == name)
    assert info.load() is host_class(name) and info.base_url == host.base_url and info.docs == host.docs
    assert info.env == (host.env if host.key_required else None)
    monkeypatch.delenv(host.env, raising=False)
    kw: dict[str, Any] = {"endpoint": "https://r.openai.azure.com", "deployment": "d"} if name == "azure" else {}
    if name == "vllm":
        kw["model"] = "m"
    if host.key_required:
        with pytest.raises(ConfigError, match=host.env):
            host_class(name)(**kw)
    else:
        assert not host_class(name)(**kw).request_headers().get("Authorization")
    monkeypatch.setenv(host.env, "sk-from-env-0123")
    llm = host_class(name)(**kw)
    assert llm._api_key is not None and llm._api_key.reveal() == "sk-from-env-0123"
    assert llm.url.startswith(host.base_url.replace("{resource}", "r") if name != "azure" else "https://r.openai")


# ----------------------------------------------------------------------------- quirks


async def test_a_host_that_sends_no_usage_still_completes() -> None:
    fake = make_fake("groq", usage="none")
    await fake.start()
    try:
        down, up = await run(make_host_service("groq", fake), LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == fake.expected_text and not errors(up) and usages(down) == []


async def test_cumulative_usage_on_every_chunk_is_reported_once_with_the_totals() -> None:
    fake = make_fake("nvidia")  # usage="every_chunk": 0, 1, ... 5 completion tokens
    await fake.start()
    try:
        down, _ = await run(make_host_service("nvidia", fake), LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert fake.canned().count(b'"usage": {') > 3  # a snapshot on every chunk
    assert usages(down) == [(5, 5, 10)]


@pytest.mark.parametrize(("name", "whole"), [("mistral", True), ("sambanova", "index0"), ("groq", False)])
async def test_whole_tool_calls_are_separate_calls(name: str, whole: bool | str) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, params.tool_call_id, dict(params.arguments)))
        await params.result_callback("ok")

    fake = make_fake(name, whole_tool_calls=whole, tool_calls=[
        ("callA1234", "get_weather", '{"city": "París"}'), ("callB5678", "get_time", '{"zone": "UTC"}')])
    await fake.start()
    try:
        llm = make_host_service(name, fake)
        llm.register_function(None, handler)
        down, up = await run(llm, LLMContext([{"role": "user", "content": "two calls"}]), SleepFrame(0.3))
    finally:
        await fake.close()
    started = [f for f in down if isinstance(f, FunctionCallsStartedFrame)]
    assert [(c.function_name, c.tool_call_id, c.arguments) for c in started[0].function_calls] == [
        ("get_weather", "callA1234", {"city": "París"}), ("get_time", "callB5678", {"zone": "UTC"})]
    assert sorted(calls) == [("get_time", "callB5678", {"zone": "UTC"}),
                             ("get_weather", "callA1234", {"city": "París"})]
    assert not errors(up)


async def test_without_the_host_flag_the_fake_refuses_what_the_host_refuses() -> None:
    # The quirk flags matter: plain OpenAI settings against Mistral's fake are refused.
    fake = make_fake("mistral")
    await fake.start()
    try:
        llm = MistralLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST,
                                settings=OpenAILLMSettings(model="mistral-small-latest"))
        down, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
        assert text(down) == fake.expected_text and not errors(up)  # stream_options dropped by the host class
        llm = MistralLLMService(base_url=fake.base_url, api_key=fake.api_key, retry=FAST,
                                settings=OpenAILLMSettings(extra={"stream_options": {"include_usage": True}}))
        _, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    (err,) = errors(up)
    assert "stream_options is not supported" in err.error
    assert fake.bodies[0]["model"] == "mistral-small-latest" and fake.bodies[1]["model"] == "mistral-small-latest"


async def test_azure_v1_url_and_api_key_header(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpenAI(path="/openai/v1/chat/completions", auth_header="api-key", auth_scheme="")
    await fake.start()
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url + "/")
    try:
        llm = AzureOpenAILLMService(deployment="my-gpt-4o", api_key=fake.api_key)
        assert llm.url == f"{fake.url}/openai/v1/chat/completions"
        down, up = await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == fake.expected_text and not errors(up)
    assert fake.paths == [("/openai/v1/chat/completions", {})]
    assert fake.headers[0]["api-key"] == fake.api_key and fake.bodies[0]["model"] == "my-gpt-4o"


def test_azure_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(ConfigError, match="deployment"):
        AzureOpenAILLMService(endpoint="https://r.openai.azure.com", api_key="k")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        AzureOpenAILLMService(deployment="d", api_key="k")
    llm = AzureOpenAILLMService(endpoint="https://r.openai.azure.com", model="dep/x", api_version="2025-01-01-preview",
                                api_key="k")
    assert llm.url == ("https://r.openai.azure.com/openai/deployments/dep%2Fx/chat/completions"
                       "?api-version=2025-01-01-preview")


async def test_local_servers_send_no_auth_header_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    fake = make_fake("ollama", auth_header=None)
    await fake.start()
    try:
        down, up = await run(OllamaLLMService(base_url=fake.base_url), LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    assert text(down) == fake.expected_text and not errors(up)
    assert "Authorization" not in fake.headers[0] and fake.bodies[0]["model"] == "llama3.2"
    with pytest.raises(ConfigError, match="model="):
        VLLMLLMService()


async def test_openrouter_attribution_headers() -> None:
    fake = make_fake("openrouter")
    await fake.start()
    try:
        llm = OpenRouterLLMService(base_url=fake.base_url, api_key=fake.api_key, site_url="https://example.org",
                                   app_name="flowcat", headers={"X-Extra": "1"})
        await run(llm, LLMContext([{"role": "user", "content": "hi"}]))
    finally:
        await fake.close()
    h = fake.headers[0]
    assert (h["HTTP-Referer"], h["X-Title"], h["X-Extra"]) == ("https://example.org", "flowcat", "1")
    assert fake.bodies[0]["model"] == "openai/gpt-4.1"


def test_perplexity_has_no_function_calling(caplog: pytest.LogCaptureFixture) -> None:
    llm = PerplexityLLMService(api_key="pplx-0123456789")
    assert llm.capabilities.function_calling is False and GroqLLMService.capabilities.function_calling is True
    with caplog.at_level(logging.WARNING, logger="flowcat.services.llm.openai_compatible"):
        body = llm.build_request(wire_context())
        llm.build_request(wire_context())
    assert "tools" not in body and "tool_choice" not in body
    assert len([r for r in caplog.records if "no function calling" in r.getMessage()]) == 1


def test_settings_without_a_model_take_the_host_default() -> None:
    llm = SambaNovaLLMService(api_key="k", settings=OpenAILLMSettings(temperature=0.2))
    body = llm.build_request(LLMContext([{"role": "user", "content": "hi"}]))
    assert body["model"] == "Meta-Llama-3.3-70B-Instruct" and body["temperature"] == 0.2
    assert GroqLLMService(api_key="k", model="llama-3.1-8b-instant").build_request(LLMContext())["model"] == (
        "llama-3.1-8b-instant")
