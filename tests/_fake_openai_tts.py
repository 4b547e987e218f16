"""A protocol-accurate fake of OpenAI's ``POST /v1/audio/speech`` for the TTS provider tests.

Shapes from https://platform.openai.com/docs/api-reference/audio/createSpeech: a JSON body
``{model, input, voice, response_format, instructions?, speed?}`` with ``Authorization:
Bearer``; the answer is the audio, streamed with chunked transfer encoding (``pcm``: raw
16-bit mono at 24 kHz, ``Content-Type: audio/pcm``); errors are ``{"error": {message, type,
param, code}}`` with the status. The audio is one tone per character of ``input``
(``synthesize_tones``), written in odd-sized pieces. It records every request.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flowcat.testing.conformance import Behaviour, FakeProvider
from flowcat.testing.fakes import synthesize_tones

RATE = 24000
CHAR_MS = 20


class FakeOpenAITTS(FakeProvider):
    sample_rate = RATE
    piece = 1001  # odd sizes: the base re-frames on samples

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.expected_audio = synthesize_tones("Hello there.", RATE, CHAR_MS)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.retry_after: str | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/speech", self.speech)

    async def speech(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response(self.error_body(), status=401)
        body = await request.json()
        self.bodies.append(body)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response(self.error_body(), status=self.status, headers=headers)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        if b is Behaviour.MALFORMED:  # a 200 that is not audio (a proxy's page)
            return web.Response(text="<html>upstream busy</html>", content_type="text/html")
        audio = synthesize_tones(str(body["input"]), RATE, CHAR_MS)
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        pieces = [audio[i : i + self.piece] for i in range(0, len(audio), self.piece)]
        await resp.write(pieces[0])
        if b is Behaviour.SLOW:
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            assert request.transport is not None
            request.transport.close()
            return resp
        for p in pieces[1:]:
            await resp.write(p)
        return resp
