"""A protocol-accurate fake of Amazon Nova Sonic (Bedrock ``InvokeModelWithBidirectionalStream``)
on cleartext HTTP/2 (:mod:`_h2_server`).

Shapes from https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-input-events.html ,
https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-output-events.html and
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithBidirectionalStream.html :
``POST /model/{modelId}/invoke-with-bidirectional-stream``, AWS event-stream messages both ways,
every input event a ``chunk`` (``{"bytes": base64 JSON}``) inside a signed envelope.

It checks what a real endpoint would: the request's SigV4 signature (computed here from the
canonical request with the secret it knows; service ``bedrock``, payload hash
``STREAMING-AWS4-HMAC-SHA256-EVENTS``) and the chain of every envelope's ``:chunk-signature``
(a mismatch counts in ``auth_failures``; a bad request signature is answered 403); that
``sessionStart`` comes first and ``promptStart`` second; that each content's events name the
session's ``promptName``.

A user turn ends when loud audio (``audioInput``) is followed by quiet audio; the fake then
sends ``completionStart``, the caller's transcript (``USER`` FINAL text), and the answer: an
``ASSISTANT`` SPECULATIVE text with :attr:`expected_text`, an ``AUDIO`` content of tones
spelling it (24 kHz, 100 ms chunks), the FINAL text, ``usageEvent`` and ``completionEnd``.
:attr:`tool_calls` scripts ``toolUse`` contents (``stopReason: TOOL_USE``); a ``toolResult``
makes the model go on. Behaviours (per answer): ``SLOW`` sends :attr:`slow_chunks` chunks, then
the barge-in signal (``{ "interrupted" : true }`` in a FINAL text, after
:attr:`spoken_before_cut` if set, ``stopReason: INTERRUPTED``),
a late chunk; ``DISCONNECT`` drops the TCP connection after the first chunk; ``STREAM_ERROR``
sends a ``modelStreamErrorException`` and ends the answer; ``MALFORMED`` sends a chunk that is
not JSON, a JSON array and audio that is not base64; ``HANG`` stalls; ``STATUS`` refuses the
request (per connection, with a body echoing the key).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from _fake_openai_realtime import _rms
from _h2_server import H2Peer, H2Server
from flowcat.services._eventstream import EventStreamDecoder, encode_headers, encode_message
from flowcat.services._sigv4 import canonical_headers, canonical_query, canonical_uri, signing_key
from flowcat.testing.conformance import Behaviour
from flowcat.testing.fakes._realtime_fake import RealtimeFake

RATE = 24000
CHUNK = RATE * 2 // 10
AKID = "AKIDEXAMPLENOVA"
MODEL = "amazon.nova-2-sonic-v1:0"
STREAMING = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
_CHUNK = ((":message-type", "event"), (":event-type", "chunk"), (":content-type", "application/json"))


@dataclass
class Connection:
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)  # {name: body}; audio content elided
    prior: str = ""  # the last signature of the chain
    decoder: EventStreamDecoder = field(default_factory=EventStreamDecoder)
    speaking: bool = False
    prompt: str = ""
    audio: str = ""  # the open audio content
    input_ended: bool = False

    def types(self) -> list[str]:
        return [next(iter(e)) for e in self.events]

    def contents(self) -> dict[str, dict[str, Any]]:
        return {
            e["contentStart"]["contentName"]: e["contentStart"] for e in self.events if "contentStart" in e
        }


class FakeNovaSonic(H2Server, RealtimeFake):
    expected_text = "hello there how are you"
    user_text = "what is up"
    sample_rate = RATE
    session_event = "sessionStart"
    truncation = False  # no truncate event: the server cuts its own turn

    def __init__(self, *args: Any, **kw: Any) -> None:
        H2Server.__init__(self)
        RealtimeFake.__init__(self, *args, **kw)
        self.connections: list[Connection] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.truncates: list[dict[str, Any]] = []
        self.item_ids: list[str] = []
        self.slow_chunks = 2
        self.spoken_before_cut = ""  # SLOW: a FINAL text before the barge-in signal
        self.responses = 0
        self.audio_bytes_in = 0
        self.protocol_errors: list[str] = []
        self.region = "us-east-1"

    async def start(self) -> str:
        self.url = await self.start_h2()
        return self.url

    async def close(self) -> None:
        await super().close()  # the responses still running
        await self.stop_h2()

    # ---------------------------------------------------- conformance views

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e[kind] for c in self.connections for e in c.events if kind in e]

    def tool_outputs(self) -> list[tuple[str, str]]:
        out = []
        for c in self.connections:
            starts = c.contents()
            for e in c.events:
                if "toolResult" in e:
                    cfg = starts[e["toolResult"]["contentName"]]["toolResultInputConfiguration"]
                    out.append((cfg["toolUseId"], e["toolResult"]["content"]))
        return out

    def continued_after_tool(self) -> bool:
        """The result went as a TOOL content (start, result, end) and nothing asked for more."""
        types = self.connections[-1].types()
        i = types.index("toolResult")
        return types[i - 1 : i + 2] == ["contentStart", "toolResult", "contentEnd"]

    def replayed_texts(self, conn: Connection) -> list[str]:
        starts = conn.contents()
        return [
            e["textInput"]["content"]
            for e in conn.events
            if "textInput" in e and starts[e["textInput"]["contentName"]]["role"] in ("USER", "ASSISTANT")
        ]

    # ------------------------------------------------------------ signatures

    def _verify_request(self, h: dict[str, str]) -> str | None:
        """The request's signature if it is right (else None)."""
        try:
            algorithm, rest = h["authorization"].split(" ", 1)
            fields = dict(p.strip().split("=", 1) for p in rest.split(","))
            akid, date, region, service, term = fields["Credential"].split("/")
            names = fields["SignedHeaders"].split(";")
            when = h["x-amz-date"]
            path, _, query = h[":path"].partition("?")
            values = [(n, h[":authority"] if n == "host" else h[n]) for n in names]
        except (KeyError, ValueError):
            return None
        if (algorithm, akid, region, service, term) != (
            "AWS4-HMAC-SHA256",
            AKID,
            self.region,
            "bedrock",
            "aws4_request",
        ) or h.get("x-amz-content-sha256") != STREAMING:
            return None
        if {"host", "x-amz-date", "x-amz-content-sha256", "content-type"} - set(names) or date != when[:8]:
            return None
        block, signed = canonical_headers(values)
        creq = "\n".join(("POST", canonical_uri(path), canonical_query(query), block, signed, STREAMING))
        sts = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                when,
                f"{date}/{region}/{service}/aws4_request",
                hashlib.sha256(creq.encode()).hexdigest(),
            )
        )
        assert self.api_key is not None
        want = hmac.new(
            signing_key(self.api_key, date, region, service), sts.encode(), hashlib.sha256
        ).hexdigest()
        return want if hmac.compare_digest(want, fields["Signature"]) else None

    def _verify_envelope(self, c: Connection, headers: dict[str, Any], payload: bytes) -> bool:
        when = headers.get(":date")
        sig = headers.get(":chunk-signature")
        if not isinstance(when, dt.datetime) or not isinstance(sig, bytes):
            return False
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        sts = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp,
                f"{stamp[:8]}/{self.region}/bedrock/aws4_request",
                c.prior,
                hashlib.sha256(encode_headers([(":date", when)])).hexdigest(),
                hashlib.sha256(payload).hexdigest(),
            )
        )
        assert self.api_key is not None
        want = hmac.new(
            signing_key(self.api_key, stamp[:8], self.region, "bedrock"), sts.encode(), hashlib.sha256
        ).digest()
        c.prior = want.hex()
        return hmac.compare_digest(want, sig)

    # ----------------------------------------------------------------- HTTP/2

    async def on_request(self, peer: H2Peer, headers: dict[str, str]) -> None:
        if headers.get(":method") != "POST" or headers.get(":path") != (
            f"/model/{MODEL.replace(':', '%3A')}/invoke-with-bidirectional-stream"
        ):
            await peer.respond(404, [("content-type", "application/json")], b'{"message":"no such route"}')
            return
        seed = self._verify_request(headers)
        if seed is None:
            self.auth_failures += 1
            await peer.respond(
                403,
                [("content-type", "application/json"), ("x-amzn-errortype", "InvalidSignatureException")],
                b'{"message":"The request signature we calculated does not match the signature you provided."}',
            )
            return
        if self.behaviour is Behaviour.STATUS and self.failures != 0:
            self.next_behaviour()
            await peer.respond(
                self.status, [("content-type", "application/json")], json.dumps(self.error_body()).encode()
            )
            return
        conn = Connection(headers, prior=seed)
        peer.state = conn
        self.connections.append(conn)
        await peer.respond(200, [("content-type", "application/vnd.amazon.eventstream")])

    async def on_data(self, peer: H2Peer, data: bytes) -> None:
        c: Connection | None = peer.state
        if c is None:
            return
        for envelope in c.decoder.feed(data):
            if not self._verify_envelope(c, envelope.headers, envelope.payload):
                self.auth_failures += 1
                self.protocol_errors.append("bad chunk signature")
            if not envelope.payload:
                c.input_ended = True
                continue
            (inner,) = EventStreamDecoder().feed(envelope.payload)
            assert dict(inner.headers) == dict(_CHUNK), inner.headers
            event = json.loads(base64.b64decode(json.loads(inner.payload)["bytes"]))["event"]
            await self._on_event(peer, c, event)

    async def on_end(self, peer: H2Peer, why: str) -> None:
        self.aborted.set()
        if why == "end of the request" and not peer.ended:
            await peer.send(b"", end=True)

    # ------------------------------------------------------------- the model

    async def _on_event(self, peer: H2Peer, c: Connection, event: dict[str, Any]) -> None:
        ((kind, body),) = event.items()
        if kind == "audioInput":
            pcm = base64.b64decode(body["content"])
            c.events.append({kind: {"contentName": body["contentName"]}})
        else:
            c.events.append(event)
        order = c.types()
        if len(order) <= 2 and order != ["sessionStart", "promptStart"][: len(order)]:
            self.protocol_errors.append(f"{kind} before sessionStart/promptStart")
        if kind == "promptStart":
            c.prompt = body["promptName"]
        elif kind != "sessionStart" and kind != "sessionEnd" and body.get("promptName") != c.prompt:
            self.protocol_errors.append(f"{kind} names prompt {body.get('promptName')!r}")
        if kind == "contentStart" and body.get("type") == "AUDIO":
            c.audio = body["contentName"]
        if kind == "audioInput":
            if body["contentName"] != c.audio:
                self.protocol_errors.append(f"audioInput for content {body['contentName']!r}")
            self.audio_bytes_in += len(pcm)
            loud = _rms(pcm) > 500
            if loud and not c.speaking:
                c.speaking = True
            elif c.speaking and not loud:
                c.speaking = False
                self._spawn(self._respond(peer, user_turn=True))
        elif kind == "toolResult":
            self._spawn(self._respond(peer, user_turn=False))

    async def _send(self, peer: H2Peer, name: str, body: dict[str, Any]) -> None:
        await self._send_raw(peer, json.dumps({"event": {name: body}}).encode())

    async def _send_raw(self, peer: H2Peer, event_json: bytes) -> None:
        payload = json.dumps({"bytes": base64.b64encode(event_json).decode()}).encode()
        await peer.send(encode_message(_CHUNK, payload))

    async def _content(self, peer: H2Peer, cid: str, kind: str, role: str, stage: str | None) -> None:
        body: dict[str, Any] = {
            "sessionId": "s1",
            "promptName": peer.state.prompt,
            "completionId": "c1",
            "contentId": cid,
            "type": kind,
            "role": role,
        }
        if stage:
            body["additionalModelFields"] = json.dumps({"generationStage": stage})
        await self._send(peer, "contentStart", body)

    async def _text(self, peer: H2Peer, cid: str, role: str, stage: str, text: str, reason: str) -> None:
        await self._content(peer, cid, "TEXT", role, stage)
        await self._send(peer, "textOutput", {"contentId": cid, "role": role, "content": text})
        await self._send(peer, "contentEnd", {"contentId": cid, "type": "TEXT", "stopReason": reason})

    async def _respond(self, peer: H2Peer, *, user_turn: bool) -> None:
        self.responses += 1
        n = self.responses
        b = self.next_behaviour()
        await self._send(
            peer,
            "completionStart",
            {"sessionId": "s1", "promptName": peer.state.prompt, "completionId": f"c{n}"},
        )
        if user_turn:
            await self._text(peer, f"user_{n}", "USER", "FINAL", self.user_text, "END_TURN")
        if self.tool_calls:
            name, args = self.tool_calls.pop(0)
            await self._content(peer, f"tool_{n}", "TOOL", "TOOL", None)
            await self._send(
                peer,
                "toolUse",
                {
                    "contentId": f"tool_{n}",
                    "toolName": name,
                    "toolUseId": f"call_{n}",
                    "content": json.dumps(args),
                },
            )
            await self._send(
                peer, "contentEnd", {"contentId": f"tool_{n}", "type": "TOOL", "stopReason": "TOOL_USE"}
            )
            return
        await self._text(peer, f"spec_{n}", "ASSISTANT", "SPECULATIVE", self.expected_text, "PARTIAL_TURN")
        aid = f"audio_{n}"
        self.item_ids.append(aid)
        await self._content(peer, aid, "AUDIO", "ASSISTANT", None)
        audio = self.expected_audio
        chunks = [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]
        for i, chunk in enumerate(chunks):
            await self._send(
                peer, "audioOutput", {"contentId": aid, "content": base64.b64encode(chunk).decode()}
            )
            if i == 0 and b is Behaviour.MALFORMED:
                await self._send_raw(peer, b"{not json")
                await self._send_raw(peer, b'["not", "an", "object"]')
                await self._send(peer, "audioOutput", {"contentId": aid, "content": "!!not base64!!"})
            elif i == 0 and b is Behaviour.DISCONNECT:
                peer.abort()
                return
            elif i == 0 and b is Behaviour.STREAM_ERROR:
                await peer.send(
                    encode_message(
                        [
                            (":message-type", "exception"),
                            (":exception-type", "modelStreamErrorException"),
                            (":content-type", "application/json"),
                        ],
                        b'{"message":"The server had an error processing the stream."}',
                    ),
                    end=True,
                )
                return
            elif i == 0 and b is Behaviour.HANG:
                await asyncio.sleep(30)
                return
            elif b is Behaviour.SLOW and i + 1 == self.slow_chunks:
                fid = f"final_{n}"
                await self._content(peer, fid, "TEXT", "ASSISTANT", "FINAL")
                if self.spoken_before_cut:  # the sentence-level transcript of what was spoken
                    await self._send(
                        peer, "textOutput", {"contentId": fid, "content": self.spoken_before_cut}
                    )
                await self._send(
                    peer, "textOutput", {"contentId": fid, "content": '{ "interrupted" : true }'}
                )
                await self._send(
                    peer, "contentEnd", {"contentId": fid, "type": "TEXT", "stopReason": "INTERRUPTED"}
                )
                self.aborted.set()
                await self._send(
                    peer, "audioOutput", {"contentId": aid, "content": base64.b64encode(chunks[-1]).decode()}
                )
                await self._send(
                    peer, "contentEnd", {"contentId": aid, "type": "AUDIO", "stopReason": "INTERRUPTED"}
                )
                await self._send(
                    peer, "completionEnd", {"completionId": f"c{n}", "stopReason": "INTERRUPTED"}
                )
                return
            await asyncio.sleep(0)
        await self._send(
            peer, "contentEnd", {"contentId": aid, "type": "AUDIO", "stopReason": "PARTIAL_TURN"}
        )
        await self._send(
            peer,
            "usageEvent",
            {
                "completionId": f"c{n}",
                "details": {
                    "delta": {
                        "input": {"speechTokens": 60, "textTokens": 40},
                        "output": {"speechTokens": 50, "textTokens": 10},
                    },
                    "total": {
                        "input": {"speechTokens": 60, "textTokens": 40},
                        "output": {"speechTokens": 50, "textTokens": 10},
                    },
                },
                "totalInputTokens": 100,
                "totalOutputTokens": 60,
                "totalTokens": 160,
            },
        )
        await self._text(peer, f"final_{n}", "ASSISTANT", "FINAL", self.expected_text, "END_TURN")
        await self._send(peer, "completionEnd", {"completionId": f"c{n}", "stopReason": "END_TURN"})
