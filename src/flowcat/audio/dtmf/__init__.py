"""DTMF: RFC 4733 telephone-events, in-band (Goertzel) detection, tone synthesis, processors.

* Out-of-band: :class:`TelephoneEventDecoder` / :class:`TelephoneEventEncoder` for
  RTP ``telephone-event`` packets; the payload type comes from SDP via
  :func:`parse_telephone_event_pt` (pjsip uses 120, many others 101 — never assume).
* In-band: :class:`GoertzelDTMFDetector` over PCM16 and :class:`DTMFToneGenerator`.
* Processors: :class:`InbandDTMFDetector` (audio → ``InputDTMFFrame``),
  :class:`DTMFToneInjector` (``OutputDTMFFrame`` → tone audio) and
  :class:`DTMFAggregator` (digits → ``TranscriptionFrame``, pipecat-compatible).

See ``docs/dtmf.md``.
"""

from __future__ import annotations

from ._aggregator import DTMFAggregator
from ._goertzel import GoertzelDTMFDetector
from ._keypad import COL_FREQS_HZ, EVENT_TO_KEY, KEY_FREQS_HZ, KEY_TO_EVENT, ROW_FREQS_HZ
from ._processors import DTMFToneInjector, InbandDTMFDetector
from ._sdp import parse_telephone_event_pt, telephone_event_codes
from ._telephone_event import (
    TelephoneEvent,
    TelephoneEventDecoder,
    TelephoneEventEncoder,
    TelephoneEventPacket,
    build_telephone_event,
    parse_telephone_event,
)
from ._tone import DTMFToneGenerator

__all__ = [
    "COL_FREQS_HZ",
    "DTMFAggregator",
    "DTMFToneGenerator",
    "DTMFToneInjector",
    "EVENT_TO_KEY",
    "GoertzelDTMFDetector",
    "InbandDTMFDetector",
    "KEY_FREQS_HZ",
    "KEY_TO_EVENT",
    "ROW_FREQS_HZ",
    "TelephoneEvent",
    "TelephoneEventDecoder",
    "TelephoneEventEncoder",
    "TelephoneEventPacket",
    "build_telephone_event",
    "parse_telephone_event",
    "parse_telephone_event_pt",
    "telephone_event_codes",
]
