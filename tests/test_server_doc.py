"""docs/server.md: its configuration reference is generated from the schema and current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_server_doc", ROOT / "scripts" / "gen_server_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_server_md_reference_is_generated_from_the_schema() -> None:
    gen = _generator()
    on_disk = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    assert on_disk == gen.render(on_disk), "docs/server.md is stale: run scripts/gen_server_doc.py"  # type: ignore[attr-defined]
    # Every setting of every model is documented.
    for _where, model in gen.MODELS:  # type: ignore[attr-defined]
        for name in model.model_fields:
            assert f"| `{name}` |" in on_disk, name


def test_the_metrics_documented_are_the_metrics_served() -> None:
    from flowcat.server._metrics import ServerMetrics

    doc = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    m = ServerMetrics()
    names = {metric.name for metric in m.registry.collect()}
    for name in names:
        shown = name + ("_total" if f"`{name}_total`" in doc else "")
        assert f"`{shown}`" in doc, name
