"""Report of the ContextRelay A/B: the table, the plot and the RESULTS.md section."""

from __future__ import annotations

import os
from pathlib import Path

from .context_relay_eval import FACTS, ArmResult

__all__ = ["SECTION", "plot", "render_section", "table", "write_section"]

SECTION = "## ContextRelay A/B"


def _rows(results: list[ArmResult], minutes: float) -> list[list[str]]:
    base = next((r.tokens_at(minutes) for r in results if r.arm == "none"), 0)
    rows = []
    for r in results:
        at = r.tokens_at(minutes)
        ratio = f"{base / at:.1f}x" if base and at else "-"
        lat = (f"{sorted(r.reseed_ms)[len(r.reseed_ms) // 2]:.1f} / {max(r.reseed_ms):.1f}"
               if r.reseed_ms else "-")
        recalled = sum(r.recalled.values())
        summaries = f"{r.summaries} ({r.summary_tokens_in} / {r.summary_tokens_out})" if r.summaries else "-"
        rows.append([r.arm, str(at), ratio, f"{sum(r.input_tokens) // len(r.input_tokens)}",
                     f"${r.cost_usd:.2f}", f"${r.cost_cached_usd:.2f}", f"{recalled}/{len(FACTS)}", str(len(r.reseed_ms)), lat,
                     str(r.items_dropped), summaries])
    return rows


_HEAD = ["arm", "input tok/turn @end", "fewer than none", "mean input tok/turn", "cost/call", "cost/call (cache)",
         "facts recalled", "reseeds", "reseed ms p50 / max", "items dropped", "summaries (tok in / out)"]


def table(results: list[ArmResult], minutes: float) -> str:
    """A plain-text table, one row per arm."""
    rows = [_HEAD, *_rows(results, minutes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEAD))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def plot(results: list[ArmResult], path: Path) -> bool:
    """Input tokens per response over the call's minutes, one line per arm (False: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in results:
        ax.plot(r.minutes, r.input_tokens, label=r.arm, linewidth=1.4)
    ax.set_xlabel("call time (simulated minutes)")
    ax.set_ylabel("input tokens per response")
    ax.set_title("ContextRelay A/B (fake realtime server, OpenAI rates)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render_section(results: list[ArmResult], minutes: float, png: Path | None, root: Path) -> str:
    """The markdown section (``root``: the folder of RESULTS.md, for the image's relative path)."""
    rows = _rows(results, minutes)
    out = [SECTION, "",
           f"`flowcat eval context-relay --minutes {minutes:g}`: one scripted call (3 facts stated in the first "
           f"turns, {minutes:g} simulated minutes of turns, 3 recall questions) against "
           "`flowcat.testing.fakes.FakeRealtimeMemory`, which bills the whole context as input for every "
           "response (cost/call: no cache discount; (cache): the prefix billed before in the session at the "
           "cached rate) and answers recall questions only from its current context. "
           "See docs/context-relay.md for the method and its limits.", "",
           "Arms: **none** no compaction; **truncation** the provider's sliding window "
           "(`retention_ratio` 0.8, `post_instructions` 4,000 tokens unless `--window-tokens` says otherwise); **relay** ContextRelay with the "
           "verbatim summarizer (`summarizer: verbatim`: the digest is the transcript itself); "
           "**relay+summary** ContextRelay with the product's summarizer, `LLMSummarizer` over "
           "`OpenAILLMService` (what `summarizer: auto` builds for the openai realtime provider), over HTTP to "
           "`flowcat.testing.fakes.SummarizingOpenAI`, a fake that summarizes by a documented extractive rule "
           "(it keeps the sentences with a number, a month or a name, within the word cap; a real LLM's "
           "summary quality is not measured here). Reseed latency includes the summary request; the "
           "summarizer's own text tokens (4 characters a token; under a cent a call at text-model prices) are not in "
           "the cost columns.", "",
           "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
    if png is not None:
        out += [f"![input tokens per turn]({os.path.relpath(png, root)})", ""]
    return "\n".join(out) + "\n"


def write_section(path: Path, section: str) -> None:
    """Create or update ``path`` with the section (other sections untouched)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        text = text + ("" if text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n") + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + (section.rstrip("\n") + "\n\n" + tail if tail else section)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
