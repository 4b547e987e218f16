"""pipecat 1.14.0 voice agent for ``flowcat bench agent`` (runs in its own venv, with the extras
``websocket,deepgram,openai,cartesia,silero``).

FastAPI + uvicorn; per Twilio call (``/twilio/ws``): ``FastAPIWebsocketTransport`` with
``TwilioFrameSerializer(auto_hang_up=False)`` → ``DeepgramSTTService`` → user aggregator
(Silero VAD, default ``VADParams``) → ``OpenAILLMService`` → ``CartesiaTTSService`` → output →
assistant aggregator, in a ``PipelineWorker`` at 8 kHz both ways, run by its own ``WorkerRunner``.
Every service points at the local fakes (``--fakes`` port file of ``python -m
flowcat.testing.fakes``). ``--turn speech-timeout`` (default) ends the turn 0.6 s after the VAD
stop, as flowcat's default does; ``--turn smart-turn`` keeps pipecat's default stop rule
(smart-turn v3, a second ONNX model per session).

Outside connections are refused: every TCP connection the loop opens must go to 127.0.0.1 or
localhost (pipecat's Deepgram service silently falls back to the real host when its custom
URL fails); ``/healthz`` reports the refused attempts as ``outside``, and the benchmark fails a
point that has any. (No ``from __future__ import annotations``: FastAPI resolves annotations.)
"""

import argparse
import asyncio
import json
import sys
from typing import Any

OUTSIDE: list[str] = []
_LOCAL = ("127.0.0.1", "localhost", "::1")


def _guarded(create_connection):  # type: ignore[no-untyped-def]
    async def guarded(self, protocol_factory, host=None, port=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host is not None and host not in _LOCAL:
            OUTSIDE.append(f"{host}:{port}")
            sys.stderr.write(f"bench: refused an outside connection to {host}:{port}\n")
            raise ConnectionRefusedError(f"bench: outside connection to {host}:{port} refused")
        return await create_connection(self, protocol_factory, host, port, *args, **kwargs)

    return guarded


def _loop_factory():  # type: ignore[no-untyped-def]
    """uvloop's loop (uvicorn's default where installed) with the outside-connection guard."""
    try:
        import uvloop

        base: Any = uvloop.Loop
    except ImportError:
        base = asyncio.SelectorEventLoop
    return type("GuardedLoop", (base,), {"create_connection": _guarded(base.create_connection)})


def build_app(fakes: dict, turn: str):  # type: ignore[no-untyped-def,type-arg]
    from fastapi import FastAPI, WebSocket
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.services.cartesia.tts import CartesiaTTSService
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
    from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import (
        SpeechTimeoutUserTurnStopStrategy,
    )
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.workers.runner import WorkerRunner

    async def run_call(websocket: WebSocket, serializer: TwilioFrameSerializer) -> None:
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer
            ),
        )
        stt = DeepgramSTTService(api_key="bench", base_url=fakes["deepgram_url"])
        llm = OpenAILLMService(
            api_key="bench",
            base_url=fakes["openai_base_url"],
            settings=OpenAILLMService.Settings(
                model="gpt-4.1", system_instruction="You are a helpful voice assistant."
            ),
        )
        tts = CartesiaTTSService(
            api_key="bench", url=fakes["cartesia_url"], settings=CartesiaTTSService.Settings(voice="bench-voice")
        )
        user_params = LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
        if turn == "speech-timeout":
            user_params.user_turn_strategies = UserTurnStrategies(
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.6)]
            )
        pair = LLMContextAggregatorPair(LLMContext(), user_params=user_params)
        pipeline = Pipeline(
            [transport.input(), stt, pair.user(), llm, tts, transport.output(), pair.assistant()]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=8000, audio_out_sample_rate=8000, enable_metrics=True,
                enable_usage_metrics=True,
            ),
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def _gone(_t, _ws):  # type: ignore[no-untyped-def]
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    app = FastAPI()

    @app.get("/healthz")
    async def health() -> dict:  # type: ignore[type-arg]
        return {"status": "ok", "outside": len(OUTSIDE), "outside_hosts": sorted(set(OUTSIDE))[:5]}

    @app.websocket("/twilio/ws")
    async def twilio_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        stream_sid = call_sid = ""
        for _ in range(3):
            msg = json.loads(await websocket.receive_text())
            if msg.get("event") == "start":
                stream_sid = msg["start"]["streamSid"]
                call_sid = msg["start"].get("callSid", "")
                break
        serializer = TwilioFrameSerializer(
            stream_sid, call_sid=call_sid, params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
        )
        await run_call(websocket, serializer)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fakes", required=True, help="port file of python -m flowcat.testing.fakes")
    p.add_argument("--turn", choices=("speech-timeout", "smart-turn"), default="speech-timeout")
    args = p.parse_args(argv)
    with open(args.fakes) as f:
        fakes = json.load(f)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    import uvicorn

    config = uvicorn.Config(
        build_app(fakes, args.turn), host=args.host, port=args.port, log_level="warning", access_log=False,
        loop="none",
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(uvicorn.Server(config).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
