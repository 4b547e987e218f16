"""A protocol-accurate fake of Bedrock ``ConverseStream`` for the provider tests.

* ``POST /model/{modelId}/converse-stream`` with a SigV4 ``Authorization`` header, which the
  fake **verifies with its own recomputation** (written apart from ``flowcat.services._sigv4``,
  from the IAM "Create a signed AWS API request" steps): a missing or wrong signature gets
  403 with ``x-amzn-ErrorType: InvalidSignatureException``, as AWS answers. A Bedrock API key
  (``Authorization: Bearer``) is accepted when the fake is given one.
* Answers are event streams (``application/vnd.amazon.eventstream``): ``messageStart``,
  ``contentBlockStart`` (tool use), ``contentBlockDelta`` (text, tool input fragments),
  ``contentBlockStop``, ``messageStop``, ``metadata``; written in 7-byte pieces (frames cut
  anywhere). Shapes from https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html .
* Errors: HTTP statuses with ``{"message"}`` and ``x-amzn-ErrorType``; in-stream exceptions
  (``:message-type: exception``); ``MALFORMED`` sends a frame whose message CRC is wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from flowcat.services._eventstream import encode_message
from flowcat.testing.conformance import Behaviour, FakeProvider

WORDS = ["Hello", " from", " Bed", "rock", " — café", " ☕."]
AKID = "AKIDFAKEBEDROCK"
SECRET = "fakeSecretAccessKey/0123456789+abcdefghijKLMN"  # the fake's api_key: the suite checks it never leaks
REGION = "us-east-1"
USAGE = {"inputTokens": 12, "outputTokens": 6, "totalTokens": 18}
_ERROR_TYPES = {400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
                404: "ResourceNotFoundException", 408: "ModelTimeoutException", 429: "ThrottlingException",
                500: "InternalServerException", 503: "ServiceUnavailableException"}


def event(name: str, payload: dict[str, Any]) -> bytes:
    return encode_message({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                          json.dumps(payload, ensure_ascii=False).encode())


def exception(name: str, message: str) -> bytes:
    return encode_message({":exception-type": name, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


@dataclass
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str = ""


@dataclass
class Reply:
    text: str = ""
    tools: list[ToolUse] = field(default_factory=list)
    input_chunk: int = 5  # tool input fragments of this many characters


def reply_frames(reply: Reply | str, usage: dict[str, int] | None = None) -> list[bytes]:
    """The events of one answer: text deltas (one block), then one block per tool use."""
    r = Reply(reply) if isinstance(reply, str) else reply
    out = [event("messageStart", {"role": "assistant", "p": "abcdefghij"})]
    index = 0
    if r.text:
        for piece in re.findall(r"\S*\s*", r.text):
            if piece:
                out.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
        out.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for n, tool in enumerate(r.tools):
        tid = tool.id or f"tooluse_{n}"
        out.append(event("contentBlockStart", {"contentBlockIndex": index,
                                               "start": {"toolUse": {"toolUseId": tid, "name": tool.name}}}))
        raw = json.dumps(tool.input)
        for i in range(0, len(raw), r.input_chunk):
            out.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                   "delta": {"toolUse": {"input": raw[i : i + r.input_chunk]}}}))
        out.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    out.append(event("messageStop", {"stopReason": "tool_use" if r.tools else "end_turn"}))
    out.append(event("metadata", {"usage": usage or USAGE, "metrics": {"latencyMs": 42}}))
    return out


# --------------------------------------------------------------------- SigV4 check


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def expected_signature(request: web.BaseRequest, body: bytes, secret: str, signed: list[str], scope: str) -> str:
    """The signature AWS would compute for this request as received (an independent rewrite)."""
    path, _, query = request.raw_path.partition("?")
    uri = "/".join(quote(seg, safe="-_.~") for seg in path.split("/"))  # non-S3: the wire path encoded again
    params = sorted((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
                    for k, _, v in (p.partition("=") for p in query.split("&") if p))
    cq = "&".join(f"{k}={v}" for k, v in params)
    ch = "".join(f"{n}:{','.join(' '.join(v.split()) for v in request.headers.getall(n, []))}\n" for n in signed)
    creq = f"{request.method}\n{uri}\n{cq}\n{ch}\n{';'.join(signed)}\n{hashlib.sha256(body).hexdigest()}"
    date, region, service, _ = scope.split("/")
    sts = f"AWS4-HMAC-SHA256\n{request.headers.get('x-amz-date', '')}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), service), "aws4_request")
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8}/[^/]+/[^/]+/aws4_request), "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


class FakeBedrock(FakeProvider):
    expected_text = "".join(WORDS)

    def __init__(self, replies: list[Reply | str] | None = None, *, api_key: str | None = None,
                 access_key_id: str = AKID, session_token: str | None = None, bearer_key: str | None = None,
                 region: str = REGION) -> None:
        super().__init__(api_key if api_key is not None else SECRET)
        self.access_key_id = access_key_id
        self.session_token = session_token
        self.bearer_key = bearer_key
        self.region = region
        self.replies = list(replies or [])
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.models: list[str] = []
        self.auth_errors: list[str] = []
        self.script: list[bytes] | None = None  # frames to send instead of the canned answer
        self.stream_exception = ("internalServerException", "boom")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model}/converse-stream", self.converse_stream)

    def check_auth(self, request: web.BaseRequest, body: bytes) -> str | None:
        """Why the request's credentials are refused (None: accepted)."""
        auth = request.headers.get("Authorization", "")
        if self.bearer_key is not None and auth.startswith("Bearer "):
            return None if auth[7:] == self.bearer_key else "wrong API key"
        m = _AUTH.match(auth)
        if m is None:
            return "no SigV4 Authorization header"
        akid, scope, signed_list, signature = m.groups()
        signed = signed_list.split(";")
        amz_date = request.headers.get("x-amz-date", "")
        if akid != self.access_key_id:
            return "unknown access key id"
        if scope != f"{amz_date[:8]}/{self.region}/bedrock/aws4_request":
            return f"credential scope {scope!r} is not <date>/{self.region}/bedrock/aws4_request"
        if signed != sorted(signed) or not {"host", "x-amz-date"} <= set(signed):
            return "SignedHeaders must be sorted and include host and x-amz-date"
        token = request.headers.get("x-amz-security-token")
        if self.session_token is not None and (token != self.session_token or "x-amz-security-token" not in signed):
            return "the session token is missing, wrong or unsigned"
        assert self.api_key is not None
        if not hmac.compare_digest(signature, expected_signature(request, body, self.api_key, signed, scope)):
            return "signature mismatch"
        return None

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.headers.append(dict(request.headers))
        self.paths.append(request.raw_path)
        self.models.append(request.match_info["model"])
        why = self.check_auth(request, body)
        if why is not None:
            self.auth_failures += 1
            self.auth_errors.append(why)
            return web.json_response(
                {"message": f"The request signature we calculated does not match ({why})"}, status=403,
                headers={"x-amzn-ErrorType": "InvalidSignatureException:http://internal.amazon.com/coral/"})
        self.bodies.append(json.loads(body))
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response({"message": f"failed for key {self.api_key}"}, status=self.status,
                                     headers={"x-amzn-ErrorType": _ERROR_TYPES.get(self.status, "UnknownError")})
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                           "x-amzn-RequestId": "fake-request-id"})
        await resp.prepare(request)
        if self.script is not None and b is Behaviour.NORMAL:
            frames = list(self.script)
        elif self.replies and b is Behaviour.NORMAL:
            frames = reply_frames(self.replies.pop(0))
        else:
            frames = reply_frames(self.expected_text) if b is Behaviour.NORMAL else reply_frames(WORDS[0])[:2]
        if b is Behaviour.SLOW:
            await resp.write(frames[0] + frames[1])
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            await resp.write(frames[0] + frames[1])
            assert request.transport is not None
            request.transport.close()
            return resp
        if b is Behaviour.MALFORMED:
            bad = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
            bad[-1] ^= 0xFF  # the message CRC no longer matches
            await resp.write(frames[0] + frames[1] + bytes(bad))
            return resp
        if b is Behaviour.STREAM_ERROR:
            frames = frames[:2] + [exception(*self.stream_exception)]
        payload = b"".join(frames)
        for i in range(0, len(payload), 7):  # frames cut at odd offsets, UTF-8 too
            await resp.write(payload[i : i + 7])
            if i % 70 == 0:
                await asyncio.sleep(0)
        return resp
