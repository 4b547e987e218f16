"""Genesys AudioHook: server message fields and pause handling, checked against the
protocol's reference implementation (purecloudlabs/audiohook-reference-implementation:
``app/audiohook/src/protocol/message.ts`` — ``position`` is in ``ClientMessageBase``
only, server messages carry ``clientseq``; ``server/serversessionimpl.ts`` —
``paused`` moves ACTIVE to PAUSED, ``resumed`` PAUSED to ACTIVE, audio is accepted
only while ACTIVE, ``pause`` is a server → client request)."""

from __future__ import annotations

import json
from typing import Any

from flowcat.frames import EndFrame, InputAudioRawFrame, InterruptionFrame
from flowcat.serializers import GenesysFrameSerializer
from test_serializer_binary_carriers import fixture, gmsg

SERVER_KEYS = {"version", "type", "seq", "clientseq", "id", "parameters"}


async def _opened() -> tuple[GenesysFrameSerializer, list[Any]]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    ser = GenesysFrameSerializer()
    ser.sender = send
    await ser.handshake(fixture("genesys_open.json")[0])
    return ser, sent


async def test_server_messages_carry_clientseq_and_no_position() -> None:
    ser, sent = await _opened()
    await ser.deserialize(gmsg("ping", 2))
    interrupt = await ser.serialize(InterruptionFrame())
    disconnect = await ser.serialize(EndFrame())
    await ser.deserialize(gmsg("close", 3, reason="end"))
    messages = [json.loads(m) for m in [*sent[:2], interrupt, disconnect, *sent[2:]]]
    assert [m["type"] for m in messages] == ["opened", "pong", "event", "disconnect", "closed"]
    for m in messages:
        assert set(m) == SERVER_KEYS, m
    assert [m["clientseq"] for m in messages] == [1, 2, 2, 2, 3]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]


async def test_audio_while_paused_is_dropped_and_flows_after_resumed() -> None:
    ser, _ = await _opened()
    assert isinstance(await ser.deserialize(b"\xff" * 160), InputAudioRawFrame)
    await ser.deserialize(gmsg("paused", 2))
    assert ser.paused
    assert await ser.deserialize(b"\xff" * 160) is None and ser.bad_inputs == 1
    await ser.deserialize(gmsg("resumed", 3, start="PT2S", discarded="PT0.5S"))
    assert not ser.paused
    assert isinstance(await ser.deserialize(b"\xff" * 160), InputAudioRawFrame)
    assert ser.bad_inputs == 1


async def test_pause_from_genesys_and_out_of_state_paused_resumed_are_bad_input() -> None:
    ser = GenesysFrameSerializer()
    await ser.deserialize(gmsg("paused", 1))  # not open yet
    assert not ser.paused and ser.bad_inputs == 1
    await ser.handshake(fixture("genesys_open.json")[0])
    await ser.deserialize(gmsg("resumed", 2))  # not paused
    assert ser.bad_inputs == 2
    await ser.deserialize(gmsg("pause", 3))  # a server -> client message
    assert not ser.paused and ser.bad_inputs == 3
    assert isinstance(await ser.deserialize(b"\xff" * 160), InputAudioRawFrame)
