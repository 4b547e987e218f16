"""Shared service plumbing: keys and redaction, backoff and deadlines, the HTTP session
pool, SSE parsing, status translation, settings."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web

from flowcat.errors import (
    ConfigError,
    ServiceAuthError,
    ServiceRateLimitError,
    ServiceStatusError,
    ServiceTimeout,
)
from flowcat.services import (
    Backoff,
    Deadline,
    Secret,
    ServiceSettings,
    TTSSettings,
    close_http_sessions,
    http_session,
    iter_sse,
    raise_for_status,
    redact,
    resolve_api_key,
    retry_call,
)
from flowcat.testing import run_virtual


def test_key_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_VENDOR_API_KEY", "env-key-123456789")
    assert resolve_api_key("my-vendor").reveal() == "env-key-123456789"
    assert resolve_api_key("my-vendor", "arg-key").reveal() == "arg-key"
    monkeypatch.delenv("MY_VENDOR_API_KEY")
    with pytest.raises(ConfigError, match="MY_VENDOR_API_KEY") as info:
        resolve_api_key("my-vendor")
    assert "env-key" not in str(info.value)
    assert not resolve_api_key("my-vendor", required=False)


def test_secret_never_prints_and_redact_masks_partial_echoes() -> None:
    key = Secret("sk-proj-ABCDEFGHIJKLMNOP")
    assert "ABCDEF" not in repr(key) and "ABCDEF" not in f"{key}"
    assert redact("bad key sk-proj-ABCDEFGHIJKLMNOP!", key) == "bad key ***!"
    assert "IJKLMNOP" not in redact("key ...IJKLMNOP was revoked", key)
    assert redact("nothing here", key, None) == "nothing here"


def test_backoff_grows_caps_and_jitters() -> None:
    b = Backoff(initial=0.1, factor=2, max_delay=0.5, jitter=0.0, max_attempts=6)
    assert list(b.delays()) == [0.1, 0.2, 0.4, 0.5, 0.5]
    j = list(Backoff(initial=1.0, jitter=0.1, max_attempts=3).delays(random.Random(1)))
    assert 0.9 <= j[0] <= 1.1 and 1.8 <= j[1] <= 2.2


def test_retry_call_retries_retryable_honours_retry_after_and_deadline() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def flaky(n: int) -> str:
            times.append(loop.time())
            if n == 1:
                raise ServiceRateLimitError("slow down", retry_after=3.0)
            if n == 2:
                raise ServiceStatusError("busy", 503)
            return "ok"

        b = Backoff(initial=0.5, jitter=0.0)
        assert await retry_call(flaky, backoff=b, deadline=Deadline(60), what="t") == "ok"
        assert [round(t - times[0], 6) for t in times] == [0.0, 3.0, 4.0]

        async def auth(n: int) -> str:
            raise ServiceAuthError("no", 401)

        with pytest.raises(ServiceAuthError):
            await retry_call(auth, backoff=b, deadline=Deadline(60), what="t")

        async def always(n: int) -> str:
            raise ServiceStatusError("busy", 503)

        with pytest.raises(ServiceTimeout, match="deadline"):
            await retry_call(always, backoff=Backoff(initial=5.0, jitter=0.0), deadline=Deadline(2.0), what="t")

    run_virtual(main())


async def test_one_shared_session_per_loop_created_lazily() -> None:
    await close_http_sessions()
    s1 = await http_session()
    s2 = await http_session()
    assert s1 is s2 and not s1.closed
    await close_http_sessions()
    assert s1.closed
    s3 = await http_session()
    assert s3 is not s1
    await close_http_sessions()


async def test_calls_starting_together_build_the_tls_context_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl
    import threading

    from flowcat.services import _http

    built: list[int] = []
    release = threading.Event()
    real = ssl.create_default_context

    def slow_context() -> ssl.SSLContext:
        built.append(1)
        release.wait(5)  # the others ask while this one loads the CA bundle
        return real()

    monkeypatch.setattr(_http, "_ssl_context", None)
    monkeypatch.setattr(_http.ssl, "create_default_context", slow_context)
    await close_http_sessions()
    waiters = [asyncio.ensure_future(_http._shared_ssl_context()) for _ in range(5)]
    await asyncio.sleep(0.2)
    release.set()
    contexts = await asyncio.gather(*waiters)
    assert len(built) == 1 and all(c is contexts[0] for c in contexts)


async def _serve(handler: object) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/x", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/x"


async def test_sse_parser_handles_comments_multiline_and_any_chunking() -> None:
    body = (": OPENROUTER PROCESSING\r\n\r\nevent: delta\ndata: {\"a\":\ndata: \"é☕\"}\n\n"
            "data:no-space\n\n: keep-alive\n\ndata: [DONE]\n\n").encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(body), 3):
            await resp.write(body[i : i + 3])
            await asyncio.sleep(0)
        return resp

    runner, url = await _serve(handler)
    try:
        session = await http_session()
        async with session.get(url) as resp:
            events = [(e.event, e.data) async for e in iter_sse(resp.content)]
    finally:
        await close_http_sessions()
        await runner.cleanup()
    assert events == [("delta", '{"a":\n"é☕"}'), (None, "no-space"), (None, "[DONE]")]


@pytest.mark.parametrize(
    ("status", "headers", "exc", "retryable"),
    [
        (401, {}, ServiceAuthError, False),
        (403, {}, ServiceAuthError, False),
        (429, {"Retry-After": "2"}, ServiceRateLimitError, True),
        (400, {}, ServiceStatusError, False),
        (408, {}, ServiceStatusError, True),
        (503, {}, ServiceStatusError, True),
    ],
)
async def test_status_translation(status: int, headers: dict[str, str], exc: type[Exception],
                                  retryable: bool) -> None:
    key = Secret("sk-test-SECRETSECRET")

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "bad sk-test-SECRETSECRET"}}, status=status,
                                 headers=headers)

    runner, url = await _serve(handler)
    try:
        session = await http_session()
        async with session.get(url) as resp:
            with pytest.raises(exc) as info:
                await raise_for_status(resp, "vendor", key)
    finally:
        await close_http_sessions()
        await runner.cleanup()
    err = info.value
    assert type(err) is exc and err.retryable is retryable  # type: ignore[attr-defined]
    assert "SECRET" not in str(err) and "SECRET" not in str(err.body)  # type: ignore[attr-defined]
    if status == 429:
        assert err.retry_after == 2.0  # type: ignore[attr-defined]


def test_settings_apply_mapping_or_settings() -> None:
    s = TTSSettings(model="m1", voice="v1")
    assert s.apply({"voice": "v2"}) == {"voice": "v2"}
    assert s.apply(TTSSettings(language="fr")) == {"language": "fr"}
    assert s.apply({"extra": {"speed": 1.2}}) == {"extra": {"speed": 1.2}}
    assert s.apply({"voice": "v2"}) == {}
    with pytest.raises(ConfigError):
        ServiceSettings().apply({"voice": "x"})


async def test_constructing_a_service_opens_nothing() -> None:
    from flowcat.services import LLMService, TTSService
    from flowcat.services._http import _sessions

    await close_http_sessions()
    LLMService(api_key=resolve_api_key("x", "k"))
    TTSService()
    assert asyncio.get_running_loop() not in _sessions


def test_attempt_errors_map_failures_and_never_retry_after_delivery() -> None:
    from flowcat.errors import ServiceConnectionError, ServiceError, ServiceProtocolError
    from flowcat.services import AIService

    svc = AIService(api_key=Secret("sk-test-SECRETSECRET"), name="svc")
    for delivered in (False, True):
        with pytest.raises(ServiceConnectionError) as conn:
            with svc._attempt_errors(lambda d=delivered: d):
                raise OSError("reset by sk-test-SECRETSECRET")
        assert conn.value.retryable is (not delivered)
        assert isinstance(conn.value.__cause__, OSError) and "SECRETSECRET" not in str(conn.value)
        original = ServiceError("busy")
        original.retryable = True
        with pytest.raises(ServiceError) as same:
            with svc._attempt_errors(lambda d=delivered: d):
                raise original
        assert same.value is original and original.retryable is (not delivered)
    with pytest.raises(ServiceProtocolError) as bad:
        with svc._attempt_errors(lambda: False):
            raise KeyError("choices")
    assert "malformed response" in str(bad.value) and isinstance(bad.value.__cause__, KeyError)
