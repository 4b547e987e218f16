"""The OpenAI-compatible hosts: thin configurations of :class:`~flowcat.services.llm.OpenAILLMService`.

Every host here speaks Chat Completions over SSE (see :mod:`.openai` for the wire
format). What differs is data, one :class:`CompatibleHost` per host in
:data:`HOSTS`: the base URL, whose key (``<VENDOR>_API_KEY``), whether a key is
needed at all (the local servers: no), the default model and how models are named,
and the quirk flags:

* ``stream_options``: False for hosts that do not take ``stream_options`` (the
  body goes without it; such hosts put ``usage`` on their last chunk anyway);
* ``developer_role``: False for hosts that reject or drop ``developer`` messages
  (they are sent as ``user``);
* ``tools``: False for hosts without function calling (tools are left out of the
  request, logged once).

The stream quirks (usage on the last content chunk, under ``x_groq``, or cumulative
on every chunk; tool calls that arrive whole, without ``index``; SSE comments;
errors after HTTP 200 with a numeric ``code``) are handled by the one parser of
:class:`~flowcat.services.llm.OpenAILLMService` for every host.

Azure OpenAI takes an ``api-key`` header and either the v1 URL
``{endpoint}/openai/v1/chat/completions`` (the deployment name in ``model``; the
default) or, with ``api_version``, the dated
``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``.
OpenRouter takes the optional ``HTTP-Referer`` and ``X-Title`` headers
(``site_url``, ``app_name``).

Vendor pages (each host's OpenAI-compatibility page; quirk flags marked UNCONFIRMED
in :data:`HOSTS` come from client code or third-party pages, not the vendor):

* Azure OpenAI: https://learn.microsoft.com/azure/foundry/openai/api-version-lifecycle ,
  https://learn.microsoft.com/azure/ai-foundry/openai/reference
* Groq: https://console.groq.com/docs/openai
* Together: https://docs.together.ai/docs/inference/openai-compatibility
* Fireworks: https://docs.fireworks.ai/tools-sdks/openai-compatibility
* OpenRouter: https://openrouter.ai/docs/api-reference/overview ,
  https://openrouter.ai/docs/api-reference/streaming
* DeepSeek: https://api-docs.deepseek.com/
* Cerebras: https://inference-docs.cerebras.ai/resources/openai
* Mistral: https://docs.mistral.ai/api/
* Perplexity: https://docs.perplexity.ai/docs/sonar/openai-compatibility
* NVIDIA NIM: https://docs.api.nvidia.com/nim/reference/llm-apis
* SambaNova: https://docs.sambanova.ai/docs/en/features/openai-compatibility
* Nebius: https://docs.nebius.com/studio/inference/quickstart
* xAI: https://docs.x.ai/docs/api-reference
* Qwen (DashScope compatible mode):
  https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope
* Ollama: https://docs.ollama.com/api/openai-compatibility
* vLLM: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
* llama.cpp server: https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from ...errors import ConfigError
from ...frames import LLMContext
from .._ai_service import ServiceCapabilities
from .._registry import ProviderInfo
from .._secrets import Secret
from ..adapters import BaseLLMAdapter, OpenAILLMAdapter
from .openai import OpenAILLMService, OpenAILLMSettings

__all__ = [
    "AzureOpenAILLMService",
    "CerebrasLLMService",
    "CompatibleHost",
    "DeepSeekLLMService",
    "FireworksLLMService",
    "GroqLLMService",
    "HOSTS",
    "LlamaCppLLMService",
    "MistralLLMService",
    "NebiusLLMService",
    "NvidiaLLMService",
    "OllamaLLMService",
    "OpenAICompatibleLLMService",
    "OpenRouterLLMService",
    "PerplexityLLMService",
    "QwenLLMService",
    "SambaNovaLLMService",
    "TogetherLLMService",
    "VLLMLLMService",
    "XAILLMService",
]

logger = logging.getLogger("flowcat.services.llm.openai_compatible")


@dataclass(frozen=True, slots=True)
class CompatibleHost:
    """One OpenAI-compatible host, as data.

    Attributes:
        name: Registry name (``"groq"``).
        title: Human name.
        cls: The class name in :mod:`flowcat.services.llm`.
        base_url: The API root (``/chat/completions`` is appended).
        docs: The vendor's compatibility pages.
        key_vendor: ``<VENDOR>`` of the ``<VENDOR>_API_KEY`` variable.
        default_model: Sent when no model is given (None: ``model=`` is required).
        key_required: False for local servers (no key: no auth header).
        stream_options: Whether the host takes ``stream_options.include_usage``.
        developer_role: Whether the host takes ``developer`` messages (else sent as ``user``).
        tools: Whether the host does function calling.
        notes: One line on quirks and model naming.
    """

    name: str
    title: str
    cls: str
    base_url: str
    docs: tuple[str, ...]
    key_vendor: str
    default_model: str | None
    key_required: bool = True
    stream_options: bool = True
    developer_role: bool = True
    tools: bool = True
    notes: str = ""

    @property
    def env(self) -> str:
        """The environment variable read for the key."""
        return re.sub(r"[^A-Z0-9]+", "_", self.key_vendor.upper()).strip("_") + "_API_KEY"

    def provider(self) -> ProviderInfo:
        """This host's registry entry."""
        return ProviderInfo(
            name=self.name, kind="llm", title=f"{self.title} (OpenAI-compatible)",
            service=f"flowcat.services.llm.{self.cls}", docs=self.docs,
            env=self.env if self.key_required else None, base_url=self.base_url, notes=self.notes,
        )


_H = CompatibleHost
HOSTS: dict[str, CompatibleHost] = {h.name: h for h in (
    _H("azure", "Azure OpenAI", "AzureOpenAILLMService", "https://{resource}.openai.azure.com/openai/v1",
       ("https://learn.microsoft.com/azure/foundry/openai/api-version-lifecycle",
        "https://learn.microsoft.com/azure/ai-foundry/openai/reference"),
       "azure_openai", None,
       notes="`api-key` header; model = deployment name; `/openai/v1/` URL, or the dated "
             "`/openai/deployments/{deployment}/…?api-version=` one with `api_version`"),
    _H("groq", "Groq", "GroqLLMService", "https://api.groq.com/openai/v1", ("https://console.groq.com/docs/openai",),
       "groq", "openai/gpt-oss-120b",
       notes="logprobs, logit_bias, messages[].name give 400; usage also under `x_groq` (UNCONFIRMED)"),
    _H("together", "Together AI", "TogetherLLMService", "https://api.together.ai/v1",
       ("https://docs.together.ai/docs/inference/openai-compatibility",), "together", "openai/gpt-oss-20b",
       developer_role=False, notes="models named `<org>/<model>`; developer role dropped (UNCONFIRMED)"),
    _H("fireworks", "Fireworks AI", "FireworksLLMService", "https://api.fireworks.ai/inference/v1",
       ("https://docs.fireworks.ai/tools-sdks/openai-compatibility",), "fireworks",
       "accounts/fireworks/models/gpt-oss-120b", stream_options=False,
       notes="models named `accounts/fireworks/models/<name>`; no stream_options, usage on the last chunk"),
    _H("openrouter", "OpenRouter", "OpenRouterLLMService", "https://openrouter.ai/api/v1",
       ("https://openrouter.ai/docs/api-reference/overview", "https://openrouter.ai/docs/api-reference/streaming"),
       "openrouter", "openai/gpt-4.1", developer_role=False,
       notes="models named `<vendor>/<model>`; `: OPENROUTER PROCESSING` comments; numeric error codes; "
             "optional HTTP-Referer/X-Title (`site_url`, `app_name`)"),
    _H("deepseek", "DeepSeek", "DeepSeekLLMService", "https://api.deepseek.com/v1", ("https://api-docs.deepseek.com/",),
       "deepseek", "deepseek-chat", developer_role=False,
       notes="`: keep-alive` comments while busy; `reasoning_content` is not spoken"),
    _H("cerebras", "Cerebras", "CerebrasLLMService", "https://api.cerebras.ai/v1",
       ("https://inference-docs.cerebras.ai/resources/openai",), "cerebras", "gpt-oss-120b",
       notes="frequency/presence_penalty, logit_bias, service_tier rejected (UNCONFIRMED)"),
    _H("mistral", "Mistral AI", "MistralLLMService", "https://api.mistral.ai/v1", ("https://docs.mistral.ai/api/",),
       "mistral", "mistral-small-latest", stream_options=False, developer_role=False,
       notes="tool calls arrive whole; no stream_options, usage on the last chunk (UNCONFIRMED)"),
    _H("perplexity", "Perplexity Sonar", "PerplexityLLMService", "https://api.perplexity.ai",
       ("https://docs.perplexity.ai/docs/sonar/openai-compatibility",), "perplexity", "sonar",
       stream_options=False, developer_role=False, tools=False,
       notes="no function calling (tools left out); no `/v1` in the URL"),
    _H("nvidia", "NVIDIA NIM", "NvidiaLLMService", "https://integrate.api.nvidia.com/v1",
       ("https://docs.api.nvidia.com/nim/reference/llm-apis",), "nvidia", "meta/llama-3.3-70b-instruct",
       notes="models named `<org>/<model>`; usage cumulative on every chunk (UNCONFIRMED); "
             "a self-hosted NIM through base_url"),
    _H("sambanova", "SambaNova Cloud", "SambaNovaLLMService", "https://api.sambanova.ai/v1",
       ("https://docs.sambanova.ai/docs/en/features/openai-compatibility",), "sambanova",
       "Meta-Llama-3.3-70B-Instruct", developer_role=False,
       notes="tool calls may reuse index 0 (UNCONFIRMED)"),
    _H("nebius", "Nebius Token Factory", "NebiusLLMService", "https://api.tokenfactory.nebius.com/v1",
       ("https://docs.nebius.com/studio/inference/quickstart",), "nebius", "Qwen/Qwen3-30B-A3B-Instruct-2507",
       developer_role=False, notes="formerly AI Studio (`api.studio.nebius.com/v1`); models named `<org>/<model>`"),
    _H("xai", "xAI Grok", "XAILLMService", "https://api.x.ai/v1", ("https://docs.x.ai/docs/api-reference",),
       "xai", "grok-4-fast-non-reasoning"),
    _H("qwen", "Qwen (DashScope compatible mode)", "QwenLLMService",
       "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
       ("https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope",),
       "dashscope", "qwen-plus", developer_role=False,
       notes="regional hosts (`dashscope.aliyuncs.com`, `dashscope-us…`) through base_url"),
    _H("ollama", "Ollama", "OllamaLLMService", "http://localhost:11434/v1",
       ("https://docs.ollama.com/api/openai-compatibility",), "ollama", "llama3.2", key_required=False,
       developer_role=False, notes="local: no key (Ollama cloud: `OLLAMA_API_KEY`, https://ollama.com/v1)"),
    _H("vllm", "vLLM", "VLLMLLMService", "http://localhost:8000/v1",
       ("https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",), "vllm", None, key_required=False,
       notes="model = the served model name (required); key only with `--api-key`; "
             "tool calls need `--enable-auto-tool-choice`"),
    _H("llamacpp", "llama.cpp server", "LlamaCppLLMService", "http://localhost:8080/v1",
       ("https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",), "llama_cpp", "default",
       key_required=False, notes="local: key only with `--api-key`; the model field is ignored by a single-model server"),
)}

PROVIDERS = tuple(h.provider() for h in HOSTS.values())

_NO_TOOLS = ServiceCapabilities(function_calling=False, parallel_tool_calls=False, transport="sse")


class OpenAICompatibleLLMService(OpenAILLMService):
    """Base of the host classes: :class:`OpenAILLMService` with a :class:`CompatibleHost`'s defaults.

    Args:
        api_key: The key (else ``<VENDOR>_API_KEY``; optional for local servers).
        base_url: The API root (default: the host's).
        model: The model (default: the host's; also taken when ``settings.model`` is
            None or left at :class:`OpenAILLMSettings`' own default).
        settings: :class:`OpenAILLMSettings` (default: the host's model, and
            ``include_usage`` off for hosts without ``stream_options``).
        adapter: Default: an :class:`~flowcat.services.adapters.OpenAILLMAdapter`
            that sends ``developer`` messages as ``user`` on hosts that reject them.
        **kwargs: :class:`OpenAILLMService` arguments (``headers``, timeouts, ...).

    Raises:
        ConfigError: No key where one is needed, no model where the host has no default.
    """

    host: ClassVar[CompatibleHost]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        host = cls.__dict__.get("host")
        if host is not None:
            cls.key_vendor = host.key_vendor
            cls.key_required = host.key_required
            if not host.tools:
                cls.capabilities = _NO_TOOLS

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        model: str | None = None,
        settings: OpenAILLMSettings | None = None,
        adapter: BaseLLMAdapter | None = None,
        **kwargs: Any,
    ) -> None:
        host = self.host
        if settings is None:
            settings = OpenAILLMSettings(model=host.default_model, include_usage=host.stream_options)
        elif settings.model in (None, OpenAILLMSettings.model):
            settings.model = host.default_model
        if model is None and settings.model is None:
            raise ConfigError(f"{host.title}: pass model= (the model name the server serves)")
        if adapter is None:
            adapter = OpenAILLMAdapter(convert_developer_to_user=not host.developer_role)
        self._warned_tools = False
        super().__init__(api_key=api_key, base_url=base_url or host.base_url, model=model, settings=settings,
                         adapter=adapter, **kwargs)

    def build_request(self, context: LLMContext) -> dict[str, Any]:
        body = super().build_request(context)
        host, extra = self.host, self.settings.extra
        if not host.stream_options and "stream_options" not in extra:
            body.pop("stream_options", None)
        if not host.tools and ("tools" in body or "tool_choice" in body):
            body.pop("tools", None)
            body.pop("tool_choice", None)
            if not self._warned_tools:
                self._warned_tools = True
                logger.warning("%s: %s does no function calling: tools left out", self.name, host.title)
        return body


class AzureOpenAILLMService(OpenAICompatibleLLMService):
    """Azure OpenAI (Foundry) chat completions: ``api-key`` header, v1 or dated URL.

    Args:
        endpoint: ``https://<resource>.openai.azure.com`` (else ``AZURE_OPENAI_ENDPOINT``).
        deployment: The deployment name (sent as ``model`` on the v1 URL, in the path
            on the dated one); ``model`` is the same thing.
        api_version: A dated API version (``"2024-10-21"``): use
            ``/openai/deployments/{deployment}/chat/completions?api-version=``.
            None (default): the v1 API, ``/openai/v1/chat/completions``.
        api_key: The key (else ``AZURE_OPENAI_API_KEY``), sent as ``api-key``.
        base_url: The whole v1 API root instead of ``endpoint`` (a proxy, a test).
        **kwargs: :class:`OpenAICompatibleLLMService` arguments.

    Raises:
        ConfigError: No endpoint, no deployment, or no key.
    """

    host = HOSTS["azure"]
    auth_header = "api-key"
    auth_scheme = ""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        deployment: str | None = None,
        api_version: str | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> None:
        deployment = deployment or model
        if not deployment:
            raise ConfigError("Azure OpenAI: pass deployment= (the model deployment name)")
        self.api_version = api_version
        if base_url is None:
            endpoint = (endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT", "")).rstrip("/")
            if not endpoint:
                raise ConfigError("Azure OpenAI: pass endpoint= or set AZURE_OPENAI_ENDPOINT")
            base_url = (f"{endpoint}/openai/deployments/{quote(deployment, safe='')}" if api_version
                        else f"{endpoint}/openai/v1")
        self.deployment = deployment
        super().__init__(api_key=api_key, base_url=base_url, model=deployment, **kwargs)

    @property
    def url(self) -> str:
        """The completions endpoint (with ``?api-version=`` on the dated API)."""
        if self.api_version:
            return f"{self.base_url}/chat/completions?api-version={quote(self.api_version, safe='')}"
        return f"{self.base_url}/chat/completions"


class GroqLLMService(OpenAICompatibleLLMService):
    """Groq (``GROQ_API_KEY``)."""

    host = HOSTS["groq"]


class TogetherLLMService(OpenAICompatibleLLMService):
    """Together AI (``TOGETHER_API_KEY``); developer messages sent as user."""

    host = HOSTS["together"]


class FireworksLLMService(OpenAICompatibleLLMService):
    """Fireworks AI (``FIREWORKS_API_KEY``); no ``stream_options``."""

    host = HOSTS["fireworks"]


class OpenRouterLLMService(OpenAICompatibleLLMService):
    """OpenRouter (``OPENROUTER_API_KEY``).

    Args:
        site_url: Sent as ``HTTP-Referer`` (app attribution), if given.
        app_name: Sent as ``X-Title``, if given.
        **kwargs: :class:`OpenAICompatibleLLMService` arguments.
    """

    host = HOSTS["openrouter"]

    def __init__(self, *, site_url: str | None = None, app_name: str | None = None,
                 headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        extra = {"HTTP-Referer": site_url, "X-Title": app_name}
        merged = {k: v for k, v in extra.items() if v}
        merged.update(headers or {})
        super().__init__(headers=merged, **kwargs)


class DeepSeekLLMService(OpenAICompatibleLLMService):
    """DeepSeek (``DEEPSEEK_API_KEY``); developer messages sent as user."""

    host = HOSTS["deepseek"]


class CerebrasLLMService(OpenAICompatibleLLMService):
    """Cerebras (``CEREBRAS_API_KEY``)."""

    host = HOSTS["cerebras"]


class MistralLLMService(OpenAICompatibleLLMService):
    """Mistral AI (``MISTRAL_API_KEY``); no ``stream_options``, developer messages sent as user."""

    host = HOSTS["mistral"]


class PerplexityLLMService(OpenAICompatibleLLMService):
    """Perplexity Sonar (``PERPLEXITY_API_KEY``); no function calling."""

    host = HOSTS["perplexity"]


class NvidiaLLMService(OpenAICompatibleLLMService):
    """NVIDIA NIM, hosted (``NVIDIA_API_KEY``) or self-hosted through ``base_url``."""

    host = HOSTS["nvidia"]


class SambaNovaLLMService(OpenAICompatibleLLMService):
    """SambaNova Cloud (``SAMBANOVA_API_KEY``); developer messages sent as user."""

    host = HOSTS["sambanova"]


class NebiusLLMService(OpenAICompatibleLLMService):
    """Nebius Token Factory (``NEBIUS_API_KEY``); developer messages sent as user."""

    host = HOSTS["nebius"]


class XAILLMService(OpenAICompatibleLLMService):
    """xAI Grok (``XAI_API_KEY``)."""

    host = HOSTS["xai"]


class QwenLLMService(OpenAICompatibleLLMService):
    """Qwen through DashScope's compatible mode (``DASHSCOPE_API_KEY``); developer messages sent as user."""

    host = HOSTS["qwen"]


class OllamaLLMService(OpenAICompatibleLLMService):
    """A local Ollama server (no key needed; ``OLLAMA_API_KEY`` is sent if set)."""

    host = HOSTS["ollama"]


class VLLMLLMService(OpenAICompatibleLLMService):
    """A vLLM OpenAI-compatible server (``model=`` required; key only with ``--api-key``)."""

    host = HOSTS["vllm"]


class LlamaCppLLMService(OpenAICompatibleLLMService):
    """A llama.cpp ``llama-server`` (no key needed; ``LLAMA_CPP_API_KEY`` is sent if set)."""

    host = HOSTS["llamacpp"]
