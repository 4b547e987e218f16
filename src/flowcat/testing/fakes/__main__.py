"""Run the three fakes in one process, on one port, until SIGINT/SIGTERM (for the agent benchmark)::

    python -m flowcat.testing.fakes --port-file /tmp/fakes.json \\
        --stt-delay 0.15 --llm-ttft 0.2 --llm-inter-token 0.01 --tts-ttfa 0.1

Once serving it writes ``--port-file`` (atomically) as JSON: ``port``, ``pid``,
``deepgram_url`` (``ws://…``, the base a Deepgram client appends ``/v1/listen`` to),
``openai_base_url`` (``http://…/v1``) and ``cartesia_url`` (``ws://…/tts/websocket``).
With no ``--api-key`` any non-empty key is accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

from ._base import serve
from ._cartesia import FakeCartesia
from ._deepgram import FakeDeepgram
from ._openai import FakeOpenAI, Reply, ToolCall

__all__ = ["build_fakes", "load_script", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m flowcat.testing.fakes",
        description="Serve the fake Deepgram, OpenAI and Cartesia servers in one process, on one port.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    p.add_argument("--port-file", help="write the port and URLs here (JSON) once serving")
    p.add_argument("--api-key", default=None, help="the key clients must present (default: any)")
    p.add_argument("--stt-delay", type=float, default=0.0, help="seconds from end of speech (or Finalize) to the final")
    p.add_argument("--stt-endpointing-ms", type=int, default=300, help="silence that ends an utterance")
    p.add_argument("--stt-utterance", action="append", default=None, help="scripted transcript (repeatable)")
    p.add_argument("--llm-ttft", type=float, default=0.0, help="seconds to the first token")
    p.add_argument("--llm-inter-token", type=float, default=0.0, help="seconds between tokens")
    p.add_argument("--llm-reply", action="append", default=None, help="scripted reply (repeatable)")
    p.add_argument("--llm-script", default=None,
                   help='JSON file: a list of replies, each a string or {"text": ..., "tool_calls": '
                        '[{"name": ..., "arguments": {...}}]}')
    p.add_argument("--tts-ttfa", type=float, default=0.0, help="seconds to the first audio chunk")
    p.add_argument("--tts-chunk-ms", type=int, default=40)
    p.add_argument("--tts-char-ms", type=int, default=20)
    return p


def load_script(path: str) -> list[Reply | str]:
    """Replies from a JSON file (see ``--llm-script``)."""
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    out: list[Reply | str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        else:
            calls = [ToolCall(c["name"], c.get("arguments", {}), c.get("id")) for c in item.get("tool_calls", [])]
            out.append(Reply(item.get("text", ""), calls))
    return out


def build_fakes(args: argparse.Namespace) -> tuple[FakeDeepgram, FakeOpenAI, FakeCartesia]:
    """The three fakes configured from parsed options."""
    stt = FakeDeepgram(
        args.stt_utterance or ["what is the weather like today"], final_delay=args.stt_delay,
        default_endpointing_ms=args.stt_endpointing_ms, api_key=args.api_key, record_payloads=False,
    )
    replies: list[Reply | str] = list(args.llm_reply or [])
    if args.llm_script:
        replies += load_script(args.llm_script)
    llm = FakeOpenAI(
        replies or ["It is sunny and warm today. Anything else?"], ttft=args.llm_ttft,
        inter_token=args.llm_inter_token, by_conversation=True, api_key=args.api_key, record_payloads=False,
    )
    tts = FakeCartesia(ttfa=args.tts_ttfa, chunk_ms=args.tts_chunk_ms, char_ms=args.tts_char_ms,
                       api_key=args.api_key, record_payloads=False)
    return stt, llm, tts


def _write_port_file(path: str, info: dict[str, object]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


async def _run(args: argparse.Namespace) -> None:
    fakes = build_fakes(args)
    runner, url = await serve(fakes, args.host, args.port)
    port = runner.addresses[0][1]
    ws = url.replace("http://", "ws://", 1)
    info = {"port": port, "pid": os.getpid(), "deepgram_url": ws, "openai_base_url": f"{url}/v1",
            "cartesia_url": f"{ws}/tts/websocket"}
    if args.port_file:
        _write_port_file(args.port_file, info)
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: serve until interrupted."""
    args = parser().parse_args(argv)
    try:  # the benchmarks share a core between the fakes and the callers: the cheaper loop
        import uvloop
    except ImportError:
        asyncio.run(_run(args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
