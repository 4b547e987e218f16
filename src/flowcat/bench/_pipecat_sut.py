"""pipecat 1.14.0 system under test for ``flowcat bench capacity`` (runs in pipecat's own venv).

Imports only pipecat, its dependencies (FastAPI, uvicorn) and the standard
library. FastAPI + uvicorn WebSocket server; per accepted connection one
``FastAPIWebsocketTransport`` + serializer + ``input → Echo → output`` pipeline
in a ``PipelineWorker`` run by its own ``WorkerRunner`` (pipecat 1.14's
replacement of ``PipelineTask``/``PipelineRunner``), default worker settings.

* ``/ws`` (raw): a serializer in the same style as flowcat's raw one: each
  binary message is PCM16 at 8 kHz (20 ms, 320 bytes, the header in its first
  bytes) and output audio is sent as its bytes.
* ``/twilio/ws``: pipecat's ``TwilioFrameSerializer`` (8 kHz in the pipeline,
  so μ-law decode → encode is exact and the header in the payload survives),
  after reading the ``connected``/``start`` handshake as pipecat's runner does.

Output audio goes in 20 ms chunks (``audio_out_10ms_chunks=2``: one frame per
message, as it came in) instead of the default 40 ms, which would hold every
other echo back by 20 ms.
Logging at WARNING. ``python _pipecat_sut.py --port P``. (No ``from __future__ import
annotations``: FastAPI resolves the ``WebSocket`` annotation at runtime.)
"""

import argparse
import json
import sys


def build_app():  # type: ignore[no-untyped-def]
    from fastapi import FastAPI, WebSocket
    from pipecat.frames.frames import (
        Frame,
        InputAudioRawFrame,
        OutputAudioRawFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.serializers.base_serializer import FrameSerializer
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
    from pipecat.workers.runner import WorkerRunner

    class Echo(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                await self.push_frame(
                    OutputAudioRawFrame(
                        audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
                    )
                )
            else:
                await self.push_frame(frame, direction)

    class RawSerializer(FrameSerializer):
        async def serialize(self, frame: Frame) -> bytes | None:
            if isinstance(frame, OutputAudioRawFrame):
                return frame.audio
            return None

        async def deserialize(self, data: str | bytes) -> Frame | None:
            if isinstance(data, bytes) and data:
                return InputAudioRawFrame(audio=data, sample_rate=8000, num_channels=1)
            return None

    async def run_call(websocket: WebSocket, serializer: FrameSerializer, chunks: int) -> None:
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                audio_out_10ms_chunks=chunks,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        pipeline = Pipeline([transport.input(), Echo(), transport.output()])
        worker = PipelineWorker(
            pipeline, params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000)
        )

        @transport.event_handler("on_client_disconnected")
        async def _gone(_t, _ws):  # type: ignore[no-untyped-def]
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    app = FastAPI()

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def raw_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await run_call(websocket, RawSerializer(), 2)

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
        await run_call(websocket, serializer, 2)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    import uvicorn

    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
