"""pipecat 1.14's own Deepgram, OpenAI and Cartesia services against the fake servers:
the agent benchmark points pipecat at the same fakes, so they must accept exactly
what pipecat sends and answer in a shape pipecat understands.

Each test runs the pipecat service in a pipecat pipeline, waits (bounded, on an event)
for the frames the fake's answer must produce, and checks what the fake received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from _helpers import require
from flowcat.audio import silence, tone
from flowcat.testing.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI, decode_tones

KEY = "pipecat-interop-key"


async def _run_pipecat(
    processor: Any, frames: Sequence[Any], done: Callable[[list[Any]], bool], *, rate: int = 16000,
    limit: float = 15.0, then: Callable[[Any], Awaitable[None]] | None = None,
) -> list[Any]:
    """Run ``processor`` in a pipecat pipeline, queue ``frames``, wait until ``done(frames
    seen downstream)``, await ``then(worker)`` if given, then end the pipeline. Returns the
    downstream frames."""
    require("pipecat.pipeline.worker")
    from pipecat.frames.frames import EndFrame, Frame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    seen: list[Any] = []
    reached = asyncio.Event()

    class Sink(FrameProcessor):  # type: ignore[misc]
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if direction is FrameDirection.DOWNSTREAM:
                seen.append(frame)
                if done(seen):
                    reached.set()
            await self.push_frame(frame, direction)

    worker = PipelineWorker(
        Pipeline([processor, Sink()]),
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate, enable_metrics=True),
        cancel_on_idle_timeout=False,
        enable_rtvi=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")  # type: ignore[misc]
    async def _started(_w: Any, _f: Any) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), limit)
        for f in frames:
            await worker.queue_frame(f)
        try:
            await asyncio.wait_for(reached.wait(), limit)
            if then is not None:
                await then(worker)
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), limit * 2)
    return seen


async def test_pipecat_deepgram_stt_against_fake() -> None:
    require("pipecat.services.deepgram.stt")
    from pipecat.frames.frames import InputAudioRawFrame, TranscriptionFrame, VADUserStoppedSpeakingFrame
    from pipecat.services.deepgram.stt import DeepgramSTTService

    rate = 8000
    pcm = tone(440, 0.6, rate, 0.5) + silence(0.1, rate)
    n = rate // 50 * 2
    frames: list[Any] = [InputAudioRawFrame(audio=pcm[i : i + n], sample_rate=rate, num_channels=1)
                         for i in range(0, len(pcm), n)]
    frames.append(VADUserStoppedSpeakingFrame())
    async with FakeDeepgram(["what is the weather in paris"], api_key=KEY, final_delay=0.05) as fake:
        stt = DeepgramSTTService(api_key=KEY, base_url=fake.url.replace("http://", "ws://"))
        seen = await _run_pipecat(stt, frames, lambda s: any(isinstance(f, TranscriptionFrame) for f in s),
                                  rate=rate)
    texts = [f.text for f in seen if isinstance(f, TranscriptionFrame)]
    assert texts == ["what is the weather in paris"]
    rec = fake.received[0]
    assert rec.authorized and rec.headers["Authorization"] == "<redacted>"
    assert rec.query["encoding"] == "linear16" and rec.query["sample_rate"] == "8000"
    assert rec.query["interim_results"] == "true"
    assert rec.binary_frames == len(frames) - 1 and bytes(rec.audio) == pcm  # 20 ms frames, byte for byte
    # The VAD stop made pipecat send Finalize; the fake answered the pending speech from it.
    assert rec.of_type("Finalize")
    finals = [m for m in rec.sent if m.get("is_final")]
    assert finals[0]["from_finalize"] is True


async def test_pipecat_openai_llm_against_fake() -> None:
    require("pipecat.services.openai.llm")
    from pipecat.frames.frames import LLMContextFrame, LLMFullResponseEndFrame, LLMTextFrame
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.services.openai.llm import OpenAILLMService

    async with FakeOpenAI(["It is sunny in Paris today."], api_key=KEY, ttft=0.02) as fake:
        llm = OpenAILLMService(api_key=KEY, base_url=f"{fake.url}/v1",
                               settings=OpenAILLMService.Settings(model="gpt-4o-mini"))
        context = LLMContext(messages=[{"role": "user", "content": "Weather in Paris?"}])
        seen = await _run_pipecat(llm, [LLMContextFrame(context=context)],
                                  lambda s: any(isinstance(f, LLMFullResponseEndFrame) for f in s))
    assert "".join(f.text for f in seen if isinstance(f, LLMTextFrame)) == "It is sunny in Paris today."
    body = fake.bodies[0]
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][-1] == {"role": "user", "content": "Weather in Paris?"}
    assert fake.received[0].headers["Authorization"] == "<redacted>"
    assert fake.completed == 1


async def test_pipecat_openai_llm_tool_call_against_fake() -> None:
    require("pipecat.services.openai.llm")
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
    from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
    from pipecat.frames.frames import FunctionCallsStartedFrame, LLMContextFrame
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.services.openai.llm import OpenAILLMService

    from flowcat.testing.fakes import Reply, ToolCall

    reply = Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")])
    async with FakeOpenAI([reply], api_key=KEY, arg_chunk=4) as fake:
        llm = OpenAILLMService(api_key=KEY, base_url=f"{fake.url}/v1",
                               settings=OpenAILLMService.Settings(model="gpt-4o-mini"))
        calls: list[Any] = []

        async def get_weather(params: Any) -> None:
            calls.append(params.arguments)
            await params.result_callback({"weather": "sunny"})

        llm.register_function("get_weather", get_weather)
        tools = ToolsSchema(standard_tools=[FunctionSchema(
            name="get_weather", description="Weather", properties={"city": {"type": "string"}}, required=["city"])])
        context = LLMContext(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools)
        await _run_pipecat(llm, [LLMContextFrame(context=context)],
                           lambda s: any(isinstance(f, FunctionCallsStartedFrame) for f in s))
        await fake.wait_until(lambda: bool(calls), 5)
    assert calls == [{"city": "Paris"}]
    assert fake.bodies[0]["tools"][0]["function"]["name"] == "get_weather"


async def test_pipecat_cartesia_tts_against_fake() -> None:
    require("pipecat.services.cartesia.tts")
    from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame
    from pipecat.services.cartesia.tts import CartesiaTTSService

    rate = 8000
    text = "Sure! It is sunny in Paris today."
    async with FakeCartesia(api_key=KEY, ttfa=0.01) as fake:
        tts = CartesiaTTSService(api_key=KEY, url=fake.url.replace("http://", "ws://") + "/tts/websocket",
                                 settings=CartesiaTTSService.Settings(voice="voice-1"))
        seen = await _run_pipecat(tts, [TTSSpeakFrame(text=text)],
                                  lambda s: any(isinstance(f, TTSStoppedFrame) for f in s), rate=rate)
    audio = b"".join(f.audio for f in seen if isinstance(f, TTSAudioRawFrame))
    assert decode_tones(audio, rate) == text.lower()
    rec = fake.received[0]
    assert rec.headers["X-API-Key"] == "<redacted>" and rec.headers["Cartesia-Version"]
    gens = [m for m in rec.messages if "transcript" in m]
    assert len({m["context_id"] for m in gens}) == 1
    assert gens[0]["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": rate}
    assert gens[0]["voice"] == {"mode": "id", "id": "voice-1"} and gens[0]["add_timestamps"] is True
    assert gens[-1]["continue"] is False
    assert [m["type"] for m in rec.sent][-1] == "done"


async def test_pipecat_cartesia_barge_in_cancels_the_context_on_the_fake() -> None:
    require("pipecat.services.cartesia.tts")
    from pipecat.frames.frames import InterruptionFrame, TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.services.cartesia.tts import CartesiaTTSService

    text = "This is a long answer that the caller will interrupt before it is done."
    async with FakeCartesia(api_key=KEY, chunk_ms=20, chunk_interval=0.02) as fake:
        tts = CartesiaTTSService(api_key=KEY, url=fake.url.replace("http://", "ws://") + "/tts/websocket",
                                 settings=CartesiaTTSService.Settings(voice="voice-1"))

        async def barge_in(worker: Any) -> None:
            await worker.queue_frame(InterruptionFrame())
            await fake.wait_until(lambda: bool(fake.cancelled), 5)

        await _run_pipecat(tts, [TTSSpeakFrame(text=text)],
                           lambda s: any(isinstance(f, TTSAudioRawFrame) for f in s), rate=8000, then=barge_in)
    rec = fake.received[0]
    [cancel] = [m for m in rec.messages if m.get("cancel")]
    spoken = [m for m in rec.messages if "transcript" in m]
    assert cancel == {"context_id": spoken[0]["context_id"], "cancel": True}
    # Generation stopped at the cancel: far less audio went out than the whole text.
    sent = sum(len(m["data"]) for m in rec.sent if m["type"] == "chunk") * 3 // 4
    assert sent < len(fake.audio_for(text, 8000)) // 2
