"""RFC 4733 telephone-event: the 4-byte payload, a per-packet decoder and an encoder.

Payload layout (network byte order)::

    event (8) | E (1) | R (1) | volume (6) | duration (16)

``duration`` is in RTP clock ticks (8000 per second for ``telephone-event/8000``)
counted from the event's RTP timestamp, which every packet of one event shares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

from ...errors import ConfigError
from ...frames import KeypadEntry
from ._keypad import EVENT_TO_KEY, KEY_TO_EVENT, to_keypad_entry

__all__ = [
    "TelephoneEvent",
    "TelephoneEventDecoder",
    "TelephoneEventEncoder",
    "TelephoneEventPacket",
    "build_telephone_event",
    "parse_telephone_event",
]

logger = logging.getLogger("flowcat.audio.dtmf")

_MAX_DURATION = 0xFFFF
_TS_MOD = 1 << 32
_SEQ_MOD = 1 << 16
_STALE_WINDOW_S = 10.0  # a timestamp at most this far behind the newest event is stale


class TelephoneEvent(NamedTuple):
    """One parsed telephone-event payload block."""

    event: int
    """Event code (0–9 digits, 10 ``*``, 11 ``#``, 12–15 A–D; other codes are other events)."""
    end: bool
    """E bit: the event has ended (end packets are usually sent three times)."""
    reserved: bool
    """R bit: reserved, senders set 0 and receivers ignore it."""
    volume: int
    """Power level, 0–63, in -dBm0 (10 means -10 dBm0)."""
    duration: int
    """Duration so far, RTP clock ticks (0–65535)."""


def parse_telephone_event(payload: bytes) -> TelephoneEvent | None:
    """Parse the first 4-byte block of a telephone-event payload; None if shorter."""
    if len(payload) < 4:
        return None
    b1 = payload[1]
    return TelephoneEvent(
        payload[0], bool(b1 & 0x80), bool(b1 & 0x40), b1 & 0x3F, (payload[2] << 8) | payload[3]
    )


def build_telephone_event(
    event: int, end: bool = False, volume: int = 10, duration: int = 0, reserved: bool = False
) -> bytes:
    """Build a 4-byte payload. ``volume`` 0–63 (-dBm0), ``duration`` 0–65535 ticks.

    Raises:
        ValueError: A field out of range.
    """
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= _MAX_DURATION:
        raise ValueError(f"telephone-event field out of range: {event=} {volume=} {duration=}")
    b1 = (0x80 if end else 0) | (0x40 if reserved else 0) | volume
    return bytes((event, b1, duration >> 8, duration & 0xFF))


class TelephoneEventDecoder:
    """Turns received telephone-event RTP packets into key presses, each reported once.

    A press is reported on the **first packet seen of a new event**, where a new
    event is a new RTP timestamp (or a marker bit with a different event code on
    the same timestamp). End packets are not needed (some peers never send
    them); retransmitted end packets, reordered or duplicated packets of an event
    already seen, and stale packets of older events are ignored. Losing the first
    packet delays the report to the next packet of that event. A continuation
    segment of an event longer than 65535 ticks (same code, no marker, timestamp
    advanced by the previous segment's duration) is not a new press.

    Args:
        payload_type: The negotiated telephone-event payload type (from SDP, never assumed).
        clock_rate: Its RTP clock rate, Hz.
    """

    __slots__ = (
        "_clock_rate",
        "_code",
        "_duration",
        "_ended",
        "_have",
        "_max_seq",
        "_pt",
        "_recent",
        "_stale_ticks",
        "_ts",
    )

    def __init__(self, payload_type: int, clock_rate: int = 8000) -> None:
        self._pt = payload_type
        self._clock_rate = clock_rate
        self._stale_ticks = int(_STALE_WINDOW_S * clock_rate)
        self._have = False
        self._ts = 0  # timestamp of the newest event
        self._code = -1  # its event code
        self._duration = 0  # largest duration seen for it, ticks
        self._ended = False  # whether an end packet of it was seen
        self._max_seq = 0
        self._recent: list[int] = []  # timestamps of recent events (newest last)

    @property
    def payload_type(self) -> int:
        """The telephone-event payload type this decoder accepts."""
        return self._pt

    @property
    def last_duration_ms(self) -> float:
        """Longest duration seen for the newest event, milliseconds."""
        return self._duration * 1000.0 / self._clock_rate

    @property
    def last_ended(self) -> bool:
        """Whether an end packet of the newest event has arrived."""
        return self._ended

    def feed(
        self, payload_type: int, marker: bool, timestamp: int, sequence: int, payload: bytes
    ) -> KeypadEntry | None:
        """Feed one RTP packet (any payload type). Returns the key of a new press, else None."""
        if payload_type != self._pt:
            return None
        ev = parse_telephone_event(payload)
        if ev is None:
            logger.debug("telephone-event: short payload (%d bytes) ignored", len(payload))
            return None
        if not self._have:
            self._have = True
            self._max_seq = sequence
            return self._start(timestamp, ev)
        seq_delta = (sequence - self._max_seq) % _SEQ_MOD
        newer_seq = 0 < seq_delta < 0x8000
        if newer_seq:
            self._max_seq = sequence
        if timestamp == self._ts:
            if marker and ev.event != self._code:
                return self._start(timestamp, ev)  # a peer reusing the timestamp for a new event
            if ev.duration > self._duration:
                self._duration = ev.duration
            if ev.end:
                self._ended = True
            return None
        if timestamp in self._recent:
            return None  # late packet of an older event
        ts_delta = (timestamp - self._ts) % _TS_MOD
        if (
            not newer_seq
            and not marker
            and ev.event == self._code
            and _TS_MOD - ts_delta <= self._stale_ticks
        ):
            # Older sequence and older timestamp of the same key: a stale straggler. A packet
            # with a timestamp never seen is the start of an event though, even from the past,
            # when it carries the marker or another key: a replayed recording (sipp plays DTMF
            # pcaps with their recorded numbers) whose marker packet was lost.
            return None
        if (
            not marker
            and ev.event == self._code
            and not self._ended
            and self._duration >= _MAX_DURATION - 2 * self._clock_rate // 50
            and ts_delta <= _MAX_DURATION + 1
        ):
            self._remember(timestamp)  # long-event continuation segment
            self._ts = timestamp
            self._duration = ev.duration
            self._ended = ev.end
            return None
        return self._start(timestamp, ev)

    def _remember(self, timestamp: int) -> None:
        recent = self._recent
        recent.append(timestamp)
        if len(recent) > 16:
            del recent[0]

    def _start(self, timestamp: int, ev: TelephoneEvent) -> KeypadEntry | None:
        self._remember(timestamp)
        self._ts = timestamp
        self._code = ev.event
        self._duration = ev.duration
        self._ended = ev.end
        if ev.event < 16:
            return EVENT_TO_KEY[ev.event]
        return None

    def reset(self) -> None:
        """Forget every event seen (e.g. a new SSRC)."""
        self._have = False
        self._recent.clear()
        self._code = -1
        self._duration = 0
        self._ended = False


@dataclass(slots=True, frozen=True)
class TelephoneEventPacket:
    """One packet to send for an event."""

    marker: bool
    """RTP marker bit (set on the event's first packet only)."""
    timestamp_offset: int
    """RTP timestamp of the packet relative to the event's start, ticks (0 unless the
    event is split into 65535-tick segments)."""
    send_offset_ms: int
    """When to send it, milliseconds after the first packet."""
    payload: bytes
    """The 4-byte telephone-event payload."""
    end: bool
    """E bit set."""


class TelephoneEventEncoder:
    """Builds the RFC 4733 packet train for one key press.

    Args:
        payload_type: The negotiated telephone-event payload type.
        clock_rate: Its RTP clock rate, Hz.
        ptime_ms: Interval between packets, milliseconds.
    """

    __slots__ = ("clock_rate", "payload_type", "ptime_ms")

    END_REPEATS = 3
    """End packets are sent this many times (RFC 4733 redundancy)."""

    def __init__(self, payload_type: int, clock_rate: int = 8000, ptime_ms: int = 20) -> None:
        if ptime_ms <= 0 or clock_rate <= 0:
            raise ConfigError("ptime_ms and clock_rate must be positive")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms

    def encode(
        self, digit: KeypadEntry | str, duration_ms: int = 100, volume: int = 10
    ) -> list[TelephoneEventPacket]:
        """Packets for ``digit`` held ``duration_ms`` milliseconds at ``volume`` (-dBm0).

        The first packet carries the marker; one update follows every ``ptime_ms``
        with a growing duration; then three identical end packets (E bit) with the
        total duration. An event longer than 65535 ticks is split into segments
        whose timestamps advance by 65535, as RFC 4733 prescribes.
        """
        code = KEY_TO_EVENT[to_keypad_entry(digit)]
        step = self.clock_rate * self.ptime_ms // 1000
        total = max(1, self.clock_rate * duration_ms // 1000)
        packets: list[TelephoneEventPacket] = []
        seg_start = 0
        elapsed = step
        t_ms = 0
        first = True
        while elapsed < total:
            if elapsed - seg_start > _MAX_DURATION:
                # Close this segment at the maximum duration, open the next one.
                end_seg = seg_start + _MAX_DURATION
                payload = build_telephone_event(code, False, volume, _MAX_DURATION)
                packets.append(TelephoneEventPacket(False, seg_start, t_ms, payload, False))
                t_ms += self.ptime_ms
                seg_start = end_seg
                continue
            payload = build_telephone_event(code, False, volume, elapsed - seg_start)
            packets.append(TelephoneEventPacket(first, seg_start, t_ms, payload, False))
            first = False
            elapsed += step
            t_ms += self.ptime_ms
        # A press shorter than one ptime has no update: its first end packet carries the marker.
        end_payload = build_telephone_event(code, True, volume, min(total - seg_start, _MAX_DURATION))
        for i in range(self.END_REPEATS):
            packets.append(TelephoneEventPacket(first and i == 0, seg_start, t_ms, end_payload, True))
            t_ms += self.ptime_ms
        return packets
