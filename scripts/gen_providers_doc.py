"""Regenerate docs/providers.md from the provider registry (run: uv run python scripts/gen_providers_doc.py)."""

from __future__ import annotations

from pathlib import Path

from flowcat.services import providers_markdown


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "providers.md"
    path.write_text(providers_markdown(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
