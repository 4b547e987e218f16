"""LLM context, tool schemas and the OpenAI / Anthropic / Gemini adapters (request shapes)."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from flowcat.agent import (
    AdapterType,
    AnthropicLLMAdapter,
    FunctionSchema,
    GeminiLLMAdapter,
    LLMContext,
    LLMSpecificMessage,
    OpenAILLMAdapter,
    ToolsSchema,
    normalize_tools,
    standard_message_text,
)
from flowcat.errors import ConfigError, LLMContextConversionError
from flowcat.frames import LLMContext as FramesLLMContext
from flowcat.frames import LLMContextFrame

WEATHER = FunctionSchema(
    name="get_weather",
    description="Current weather in a city",
    properties={"city": {"type": "string"}},
    required=["city"],
)
TIME = FunctionSchema(name="get_time", description="Local time", properties={}, required=[])


def _conversation() -> list[dict]:
    """A conversation with a system prompt, a tool call and its result, and a follow-up."""
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "It is 21 degrees."},
        {"role": "user", "content": "Thanks."},
        {"role": "developer", "content": "Offer more help."},
    ]


# ------------------------------------------------------------------ schemas


def test_function_schema_shapes() -> None:
    assert WEATHER.to_default_dict() == {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    assert WEATHER.to_openai() == {"type": "function", "function": WEATHER.to_default_dict()}


def test_tools_schema_rejects_duplicates_and_non_schemas() -> None:
    with pytest.raises(ConfigError, match="get_weather"):
        ToolsSchema([WEATHER, WEATHER])
    with pytest.raises(ConfigError, match="neither a function schema"):
        ToolsSchema([{"name": "x"}])
    with pytest.raises(ConfigError):
        FunctionSchema(name="")


def test_normalize_tools() -> None:
    assert normalize_tools(None) is None
    assert normalize_tools([]) is None
    tools = normalize_tools([WEATHER, TIME])
    assert isinstance(tools, ToolsSchema) and tools.names() == {"get_weather", "get_time"}
    same = ToolsSchema([WEATHER])
    assert normalize_tools(same) is same
    with pytest.raises(ConfigError, match="dict"):
        normalize_tools({"get_weather": WEATHER})


def test_schema_like_objects_are_accepted() -> None:
    class Other:  # e.g. the services layer's own FunctionSchema
        name, description, properties, required = "other", "d", {"a": {"type": "integer"}}, ["a"]

    tools = ToolsSchema([Other()])
    assert OpenAILLMAdapter().to_provider_tools_format(tools)[0]["function"]["name"] == "other"


# ------------------------------------------------------------------ context


def test_context_is_a_frames_context_and_normalizes_tools() -> None:
    ctx = LLMContext([{"role": "user", "content": "hi"}], tools=[WEATHER], tool_choice="auto")
    assert isinstance(ctx, FramesLLMContext)
    assert isinstance(ctx.tools, ToolsSchema) and ctx.tools.names() == {"get_weather"}
    LLMContextFrame(context=ctx)  # travels in the existing frame
    ctx.set_tools([])
    assert ctx.tools is None


def test_context_get_messages_filters_vendor_messages() -> None:
    vendor = LLMSpecificMessage(llm="anthropic", message={"role": "user", "content": "x"})
    ctx = LLMContext([{"role": "user", "content": "hi"}, vendor])
    assert ctx.get_messages() == [{"role": "user", "content": "hi"}, vendor]
    assert ctx.get_messages("openai") == [{"role": "user", "content": "hi"}]
    assert ctx.get_messages("anthropic") == [{"role": "user", "content": "hi"}, vendor]


def test_context_transform_and_builders() -> None:
    ctx = LLMContext([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    ctx.transform_messages(lambda ms: [m for m in ms if m["role"] == "user"])
    assert ctx.messages == [{"role": "user", "content": "a"}]
    msg = LLMContext.create_image_message(image=b"\x89PNG", mime_type="image/png", text="What is this?")
    assert msg["content"][0] == {"type": "text", "text": "What is this?"}
    assert (
        msg["content"][1]["image_url"]["url"]
        == "data:image/png;base64," + base64.b64encode(b"\x89PNG").decode()
    )
    assert standard_message_text(msg) == "What is this?"
    assert standard_message_text(LLMSpecificMessage("openai", {"content": "x"})) == ""


# ------------------------------------------------------------------ OpenAI


def test_openai_adapter_request_fields() -> None:
    ctx = LLMContext(_conversation(), tools=[WEATHER], tool_choice="auto")
    ctx.add_message(LLMSpecificMessage("openai", {"role": "user", "content": "vendor"}))
    ctx.add_message(LLMSpecificMessage("google", {"role": "user", "parts": [{"text": "not for openai"}]}))
    params = OpenAILLMAdapter().get_llm_invocation_params(ctx)
    assert params["messages"][:7] == _conversation()
    assert params["messages"][7] == {"role": "user", "content": "vendor"}
    assert len(params["messages"]) == 8
    assert params["tools"] == [WEATHER.to_openai()]
    assert params["tool_choice"] == "auto"


def test_openai_adapter_system_instruction_developer_and_no_tools() -> None:
    ctx = LLMContext([{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}])
    params = OpenAILLMAdapter(convert_developer_to_user=True).get_llm_invocation_params(
        ctx, system_instruction="S"
    )
    assert params == {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "d"},
            {"role": "user", "content": "u"},
        ]
    }
    assert ctx.messages[0]["role"] == "developer"  # the context is not modified


def test_openai_custom_tools_only_its_own() -> None:
    tools = ToolsSchema(
        [WEATHER],
        custom_tools={
            AdapterType.OPENAI: [{"type": "web_search"}],
            AdapterType.GEMINI: [{"googleSearch": {}}],
        },
    )
    assert OpenAILLMAdapter().to_provider_tools_format(tools) == [WEATHER.to_openai(), {"type": "web_search"}]


def test_adapters_work_on_a_plain_frames_context() -> None:
    ctx = FramesLLMContext([{"role": "user", "content": "hi"}], tools=[WEATHER])
    assert OpenAILLMAdapter().get_llm_invocation_params(ctx)["tools"] == [WEATHER.to_openai()]
    assert AnthropicLLMAdapter().get_llm_invocation_params(ctx)["tools"][0]["name"] == "get_weather"


# ------------------------------------------------------------------ Anthropic


def test_anthropic_adapter_request_fields() -> None:
    ctx = LLMContext(_conversation(), tools=[WEATHER], tool_choice="required")
    before = copy.deepcopy(ctx.messages)
    params = AnthropicLLMAdapter().get_llm_invocation_params(ctx)
    assert ctx.messages == before  # the context is not modified
    assert params["system"] == "Be brief."
    assert params["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp": 21}'}],
        },
        {"role": "assistant", "content": "It is 21 degrees."},
        # "Thanks." and the developer message merge into one user turn
        {
            "role": "user",
            "content": [{"type": "text", "text": "Thanks."}, {"type": "text", "text": "Offer more help."}],
        },
    ]
    assert params["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    assert params["tool_choice"] == {"type": "any"}


def test_anthropic_system_rules() -> None:
    adapter = AnthropicLLMAdapter()
    only = LLMContext([{"role": "system", "content": "You are a bot."}])
    assert adapter.get_llm_invocation_params(only) == {
        "messages": [{"role": "user", "content": "You are a bot."}]
    }
    ctx = LLMContext([{"role": "system", "content": "ctx"}, {"role": "user", "content": ""}])
    params = adapter.get_llm_invocation_params(ctx, system_instruction="service")
    assert params["system"] == "service"
    assert params["messages"] == [{"role": "user", "content": "(empty)"}]


def test_anthropic_tool_choice_and_images_and_thoughts() -> None:
    adapter = AnthropicLLMAdapter()
    assert adapter.tool_choice("auto") == {"type": "auto"}
    assert adapter.tool_choice("none") == {"type": "none"}
    assert adapter.tool_choice({"type": "function", "function": {"name": "get_time"}}) == {
        "type": "tool",
        "name": "get_time",
    }
    img = LLMContext.create_image_message(image=b"abc", mime_type="image/png", text="Describe")
    url = LLMContext.create_image_url_message(url="https://example.com/a.png")
    thought = LLMSpecificMessage("anthropic", {"type": "thought", "text": "hmm", "signature": "sig"})
    unsigned = LLMSpecificMessage("anthropic", {"type": "thought", "text": "lost"})
    ctx = LLMContext([img, {"role": "assistant", "content": "ok"}, url, thought, unsigned])
    msgs = adapter.get_llm_invocation_params(ctx)["messages"]
    assert msgs[0]["content"][0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "YWJj"},
    }
    assert msgs[0]["content"][1] == {"type": "text", "text": "Describe"}
    assert msgs[2]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    ]
    assert msgs[3] == {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}],
    }
    assert len(msgs) == 4


# ------------------------------------------------------------------ Gemini


def test_gemini_adapter_request_fields() -> None:
    ctx = LLMContext(
        _conversation(),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    params = GeminiLLMAdapter().get_llm_invocation_params(ctx)
    assert params["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert params["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}}],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}, "id": "call_1"}}
            ],
        },
        {"role": "model", "parts": [{"text": "It is 21 degrees."}]},
        # Consecutive user turns are one (parallel calls' responses must share a turn).
        {"role": "user", "parts": [{"text": "Thanks."}, {"text": "Offer more help."}]},
    ]
    assert params["tools"] == [{"functionDeclarations": [WEATHER.to_default_dict()]}]
    assert params["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_gemini_function_response_and_modes() -> None:
    adapter = GeminiLLMAdapter()
    assert adapter.function_response("COMPLETED") == {"value": "COMPLETED"}
    assert adapter.function_response('"x"') == {"value": "x"}
    assert adapter.function_response("[1, 2]") == {"value": [1, 2]}
    assert adapter.function_response({"a": 1}) == {"a": 1}
    assert adapter.tool_config("auto") == {"functionCallingConfig": {"mode": "AUTO"}}
    assert adapter.tool_config("none") == {"functionCallingConfig": {"mode": "NONE"}}
    assert adapter.tool_config("required") == {"functionCallingConfig": {"mode": "ANY"}}
    tools = ToolsSchema([], custom_tools={AdapterType.GEMINI: [{"googleSearch": {}}]})
    assert adapter.to_provider_tools_format(tools) == [{"googleSearch": {}}]
    audio = LLMContext.create_audio_message(wav=b"RIFF")
    parts = adapter.get_llm_invocation_params(LLMContext([audio]))["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(b"RIFF").decode()}}


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("adapter", [OpenAILLMAdapter(), AnthropicLLMAdapter(), GeminiLLMAdapter()])
def test_malformed_message_names_it(adapter) -> None:
    with pytest.raises(LLMContextConversionError, match="message 1"):
        adapter.get_llm_invocation_params(
            LLMContext([{"role": "user", "content": "a"}, {"content": "no role"}])
        )


@pytest.mark.parametrize("adapter", [AnthropicLLMAdapter(), GeminiLLMAdapter()])
def test_bad_tool_arguments_raise(adapter) -> None:
    bad = {
        "role": "assistant",
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{not json"}}],
    }
    with pytest.raises(LLMContextConversionError, match="not JSON"):
        adapter.get_llm_invocation_params(LLMContext([{"role": "user", "content": "a"}, bad]))


def test_messages_for_logging_shorten_inline_data() -> None:
    ctx = LLMContext([LLMContext.create_image_message(image=b"x" * 3000)])
    logged = json.dumps(OpenAILLMAdapter().get_messages_for_logging(ctx))
    assert len(logged) < 400 and "base64,..." in logged


def test_get_messages_truncating_large_values() -> None:
    image = LLMContext.create_image_message(image=b"x" * 600, mime_type="image/jpeg", text="look")
    http = LLMContext.create_image_url_message(url="https://example.com/cat.png")
    audio = LLMContext.create_audio_message(wav=b"RIFF" * 300)
    long_text = {"role": "user", "content": "word " * 100}
    vendor = LLMSpecificMessage("google", {"parts": [{"inlineData": {"data": "A" * 500}}], "n": 7})
    ctx = LLMContext([image, http, audio, long_text, vendor])
    before = copy.deepcopy(ctx.messages)
    out = ctx.get_messages(truncate_large_values=True)
    assert ctx.messages == before  # nothing changed in place
    assert out[0]["content"][0] == {"type": "text", "text": "look"}
    assert out[0]["content"][1]["image_url"]["url"] == "data:image/jpeg;base64,..."
    assert out[1] == http  # a URL is kept
    assert out[2]["content"][1]["input_audio"] == {"data": "...", "format": "wav"}
    assert out[3] == long_text  # text is not binary: kept whole
    assert out[4].message["parts"][0]["inlineData"]["data"] == "A" * 100 + "..."
    assert out[4].message["n"] == 7
    assert ctx.get_messages("openai", truncate_large_values=True) == out[:4]


def test_gemini_tool_schemas_fit_its_subset(caplog: pytest.LogCaptureFixture) -> None:
    tool = FunctionSchema(
        "search",
        "Search",
        properties={
            "query": {"type": "string", "x-mcp-header": "q"},
            "limit": {"type": ["integer", "null"], "enum": [1, 5, 10]},
            "filters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"type": {"type": "string"}},
            },
        },
        required=["query"],
    )
    adapter = GeminiLLMAdapter()
    with caplog.at_level("WARNING", logger="flowcat.services.adapters"):
        decl = adapter.to_provider_tools_format(ToolsSchema([tool]))[0]["functionDeclarations"][0]
        adapter.to_provider_tools_format(ToolsSchema([tool]))
    assert decl["parameters"]["properties"] == {
        "query": {"type": "string"},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "filters": {
            "type": "object",
            "properties": {"type": {"type": "string"}},
        },  # a property named "type" is kept
    }
    assert decl["parameters"]["required"] == ["query"]
    assert (
        len([r for r in caplog.records if "search" in r.getMessage()]) == 4
    )  # each change once, not per request
    assert tool.properties["query"] == {
        "type": "string",
        "x-mcp-header": "q",
    }  # the schema itself is untouched


def test_function_schema_is_the_services_one() -> None:
    from flowcat.services import FunctionSchema as ServiceSchema
    from flowcat.services import adapters

    assert FunctionSchema is ServiceSchema is adapters.FunctionSchema  # one class in every layer
    plain = ServiceSchema("get_weather", "Current weather in a city", {"city": {"type": "string"}}, ["city"])
    assert plain.to_openai() == WEATHER.to_openai()
    assert FunctionSchema("f", handler=print) == FunctionSchema("f")  # the handler is not compared


def test_direct_functions_become_schemas() -> None:
    async def get_time(params: object, zone: str, precise: bool = False) -> None:
        """Local time.

        Args:
            zone: An IANA time zone.
        """

    tools = ToolsSchema([WEATHER, get_time])
    assert tools.names() == {"get_weather", "get_time"}
    ((schema, fn),) = tools.direct_functions
    assert fn is get_time
    assert schema.to_openai()["function"] == {
        "name": "get_time",
        "description": "Local time.",
        "parameters": {
            "type": "object",
            "properties": {
                "zone": {"type": "string", "description": "An IANA time zone."},
                "precise": {"type": "boolean"},
            },
            "required": ["zone"],
        },
    }
    assert AnthropicLLMAdapter().to_provider_tools_format(tools)[1]["input_schema"]["required"] == ["zone"]


def test_agent_re_exports_the_services_adapters_unchanged() -> None:
    import flowcat.agent as agent
    from flowcat.services import adapters

    for name in adapters.__all__:
        assert name in agent.__all__ and getattr(agent, name) is getattr(adapters, name), name
