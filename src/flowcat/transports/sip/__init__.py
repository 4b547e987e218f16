"""Native SIP/RTP: one flowcat process answers phone calls itself (UDP, G.711, RFC 4733).

* :class:`SIPServer` — the UDP listener: answers INVITEs, runs one pipeline task per
  call through an app factory (``transport → PipelineTask``), hangs up with BYE when
  the pipeline ends, answers OPTIONS with its load.
* :meth:`SIPServer.register` (:class:`Registration`: digest auth, refresh, un-REGISTER)
  and :meth:`SIPServer.dial` (:class:`OutboundCall`: INVITE, auth retry, CANCEL, BYE).
* :class:`SIPTransport` — one call's media as a transport (``input()``/``output()``);
  ``transport.call`` is its :class:`~flowcat.serializers.CallInfo`.
* Building blocks: :func:`parse_message` / :class:`SIPMessage` (the parser), SDP
  offer/answer (:func:`parse_offer`, :func:`negotiate`, :func:`build_answer`),
  RTP (:func:`parse_rtp`, :func:`build_rtp`, :class:`RTPPortAllocator`,
  :class:`RTPSession`, :class:`JitterBuffer`), transactions (:class:`Timers`).

See ``docs/sip.md``.
"""

from __future__ import annotations

from ._auth import Challenge, DigestCredentials, parse_challenge
from ._dialog import Dialog
from ._headers import NameAddr, SipUri, Via, parse_name_addr, parse_uri, parse_via
from ._jitter import JitterBuffer
from ._media import RTPSession
from ._message import SIPMessage, parse_message
from ._outbound import OutboundCall
from ._register import Registration
from ._rtp import RTPHeader, RTPPortAllocator, build_rtp, parse_rtp
from ._sdp import MediaOffer, Negotiated, build_answer, build_offer, negotiate, parse_offer
from ._server import SIPServer
from ._session_timer import SessionTimers
from ._transaction import ClientTransaction, InviteClientTransaction, ServerTransaction, Timers
from ._transport import SIPInputTransport, SIPOutputTransport, SIPParams, SIPTransport

__all__ = [
    "Challenge",
    "ClientTransaction",
    "Dialog",
    "DigestCredentials",
    "InviteClientTransaction",
    "JitterBuffer",
    "MediaOffer",
    "NameAddr",
    "Negotiated",
    "OutboundCall",
    "RTPHeader",
    "RTPPortAllocator",
    "RTPSession",
    "Registration",
    "SIPInputTransport",
    "SIPMessage",
    "SIPOutputTransport",
    "SIPParams",
    "SIPServer",
    "SIPTransport",
    "ServerTransaction",
    "SessionTimers",
    "SipUri",
    "Timers",
    "Via",
    "build_answer",
    "build_offer",
    "build_rtp",
    "negotiate",
    "parse_challenge",
    "parse_message",
    "parse_name_addr",
    "parse_offer",
    "parse_rtp",
    "parse_uri",
    "parse_via",
]
