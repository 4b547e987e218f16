"""The vendor fakes are conformance fakes: the suite drives FakeOpenAI through every LLM
scenario with an OpenAI-style client (the toy LLM of the suite's own tests, asking for
the usage chunk as a real OpenAI client does)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from flowcat.errors import ServiceConnectionError, ServiceStatusError
from flowcat.frames import LLMContext, LLMTokenUsage
from flowcat.runtime import FrameProcessor
from flowcat.services import LLMChunk, LLMTextDelta, http_session, iter_sse, raise_for_status
from flowcat.testing import conformance, fakes
from flowcat.testing.conformance import ConformanceTarget, FakeProvider, Scenario, run_scenario, scenarios
from flowcat.testing.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI
from test_services_conformance import FAST, ToyLLM

KEY = "sk-fakes-conformance-0123456789-SECRET"


class OpenAIToy(ToyLLM):
    """The toy LLM, asking for ``stream_options.include_usage`` (OpenAI sends usage only then)."""

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        assert self._api_key is not None
        session = await http_session()
        body: dict[str, Any] = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                                "messages": context.get_messages()}
        headers = {"Authorization": f"Bearer {self._api_key.reveal()}"}
        async with session.post(f"{self.base_url}/chat/completions", json=body, headers=headers) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            async for event in iter_sse(resp.content):
                if event.data == "[DONE]":
                    return
                obj = json.loads(event.data)
                if "error" in obj:
                    raise ServiceStatusError(self.redact(str(obj["error"].get("message"))), 500)
                for choice in obj["choices"]:
                    if text := choice["delta"].get("content"):
                        yield LLMTextDelta(text)
                if usage := obj.get("usage"):
                    yield LLMTokenUsage(usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
        raise ServiceConnectionError(f"{self.name}: the stream ended without [DONE]")


def make_fake() -> FakeProvider:
    return FakeOpenAI(["Hello from the fake — café ☕."], api_key=KEY, echo_key_in_errors=True, split_writes=True)


def make_llm(fake: FakeProvider) -> FrameProcessor:
    return OpenAIToy(f"{fake.url}/v1", fake.api_key, request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


TARGET = ConformanceTarget("llm", make_fake, make_llm)


def test_the_fakes_are_conformance_fakes() -> None:
    assert fakes.Behaviour is conformance.Behaviour
    for cls in (FakeOpenAI, FakeDeepgram, FakeCartesia):
        assert issubclass(cls, FakeProvider)
    assert FakeDeepgram(["hi"]).expected_text == "hi"


@pytest.mark.parametrize("scenario", scenarios("llm"), ids=str)
async def test_fake_openai_passes_the_llm_scenarios(scenario: Scenario) -> None:
    await run_scenario(TARGET, scenario)
