"""The provider registry: docs/providers.md is generated from it, and every provider in it is exercised.

Each provider test module (``tests/test_services_*.py``) declares ``CONFORMANCE`` (``"kind:name"`` ->
``ConformanceTarget``) and runs ``test_conformance`` over it (``_helpers.conformance_params``). A local engine
(status ``"local"``: an in-process model, no vendor protocol, so the network-fault scenarios do not apply) is
named instead in its module's ``LOCAL`` (``"kind:name"`` -> names of that module's tests running the real model).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flowcat.errors import ConfigError
from flowcat.services import ProviderInfo, providers, providers_markdown

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _provider_test_modules() -> list[ModuleType]:
    mods = []
    for path in sorted(TESTS.glob("test_services_*.py")):
        name = path.stem
        mod = sys.modules.get(name)
        if mod is None:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
        mods.append(mod)
    return mods


def test_docs_providers_md_is_generated_from_the_registry() -> None:
    on_disk = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    assert on_disk == providers_markdown(), "docs/providers.md is stale: run scripts/gen_providers_doc.py"


def test_every_registered_provider_runs_the_conformance_suite() -> None:
    covered: dict[str, str] = {}
    local = {p.key for p in providers() if p.status == "local"}
    for mod in _provider_test_modules():
        targets = getattr(mod, "CONFORMANCE", None)
        if not targets:
            continue
        test = getattr(mod, "test_conformance", None)
        assert test is not None, f"{mod.__name__} declares CONFORMANCE but has no test_conformance"
        ids = {p.id for mark in getattr(test, "pytestmark", []) if mark.name == "parametrize"
               for p in mark.args[1] if hasattr(p, "id")}
        for key in targets:
            assert any(i.startswith(f"{key}-") for i in ids), f"{mod.__name__}: {key} is not parametrized"
            assert key not in local, f"{mod.__name__}: {key} is local: name its behaviour tests in LOCAL"
            covered[key] = mod.__name__
    for mod in _provider_test_modules():
        for key, tests in getattr(mod, "LOCAL", {}).items():
            assert key in local, f"{mod.__name__}: LOCAL names {key}, which is not a local provider"
            assert tests and all(callable(getattr(mod, t, None)) and t.startswith("test_") for t in tests), (
                f"{mod.__name__}: LOCAL[{key}] must name this module's tests: {tests}")
            covered[key] = mod.__name__
    missing = [p.key for p in providers() if p.key not in covered]
    assert not missing, f"providers with no conformance run: {missing}"
    unknown = sorted(set(covered) - {p.key for p in providers()})
    assert not unknown, f"conformance targets for providers not in the registry: {unknown}"


def test_registry_entries_are_complete_and_loadable() -> None:
    seen = providers()
    assert len({p.key for p in seen}) == len(seen)
    for p in seen:
        assert p.docs and all(u.startswith("https://") for u in p.docs), p.key
        assert p.status in ("wire-tested", "live-verified", "local")
        if p.status == "local":  # in-process, model from an installed wheel: no key, no endpoint, an extra
            assert p.env is None and p.base_url is None and p.extra is not None, p.key
        cls = p.load()
        assert callable(cls), p.key
        if p.env is not None:
            assert p.env.endswith("_API_KEY") or p.env.endswith("_KEY") or p.env.isupper(), p.key


def test_a_provider_registered_under_the_wrong_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowcat.services.llm.openai as mod

    bad = ProviderInfo(name="x", kind="tts", title="x", service="flowcat.services.llm.OpenAILLMService",
                       docs=("https://example.invalid",))
    monkeypatch.setattr(mod, "PROVIDERS", (*mod.PROVIDERS, bad))
    with pytest.raises(ConfigError, match="has kind 'tts'"):
        providers()
