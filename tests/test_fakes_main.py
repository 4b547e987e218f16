"""``python -m flowcat.testing.fakes``: all three fakes in one process, one port, a port file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

from flowcat.audio import silence, tone
from flowcat.testing.fakes import decode_tones


async def _announced(proc: asyncio.subprocess.Process, limit: float = 30.0) -> dict[str, object]:
    """The JSON line the process prints once serving (it writes the port file first)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), limit)
    assert line, "the fakes process exited early"
    data: dict[str, object] = json.loads(line)
    return data


async def test_runs_all_three_with_delays(tmp_path: Path) -> None:
    port_file = tmp_path / "fakes.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowcat.testing.fakes", "--port-file", str(port_file),
        "--stt-delay", "0.05", "--stt-utterance", "book a table", "--llm-ttft", "0.1",
        "--llm-reply", "Done.", "--tts-ttfa", "0.02",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        info = await _announced(proc)
        assert info["pid"] == proc.pid
        assert json.loads(port_file.read_text()) == info  # noqa: ASYNC240 (written before the line)
        key = {"Authorization": "Bearer any"}
        async with aiohttp.ClientSession() as s:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            async with s.post(f"{info['openai_base_url']}/chat/completions", headers=key,
                              json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
                body = (await r.read()).decode()
            assert loop.time() - t0 >= 0.1 and '"content": "Done."' in body and body.endswith("data: [DONE]\n\n")

            ws = await s.ws_connect(f"{info['deepgram_url']}/v1/listen?encoding=linear16&sample_rate=8000",
                                    headers={"Authorization": "Token any"})
            await ws.send_bytes(tone(500, 0.4, 8000, 0.5) + silence(0.4, 8000))
            msg = json.loads((await ws.receive(timeout=10)).data)
            assert msg["channel"]["alternatives"][0]["transcript"] == "book a table"
            await ws.close()

            ws = await s.ws_connect(str(info["cartesia_url"]),
                                    headers={"X-API-Key": "any", "Cartesia-Version": "2025-04-16"})
            await ws.send_json({"model_id": "sonic", "transcript": "ok", "voice": {"mode": "id", "id": "v"},
                                "context_id": "c", "continue": False,
                                "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000}})
            chunk = json.loads((await ws.receive(timeout=10)).data)
            import base64

            assert decode_tones(base64.b64decode(chunk["data"]), 8000) == "ok"
            await ws.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc == 0


def test_llm_script_file(tmp_path: Path) -> None:
    from flowcat.testing.fakes.__main__ import build_fakes, parser

    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Hi.", {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]},
                                  {"text": "Found it."}]))
    _, llm, _ = build_fakes(parser().parse_args(["--llm-script", str(script), "--llm-ttft", "0.2"]))
    assert [r.text for r in llm.replies] == ["Hi.", "", "Found it."]
    assert llm.replies[1].tool_calls[0].name == "lookup" and llm.replies[1].tool_calls[0].arguments == {"q": "x"}
    assert llm.ttft == 0.2 and llm.by_conversation and not llm.record_payloads
