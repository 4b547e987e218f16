"""The UAS side of a SIP dialog (RFC 3261 §12): its identity, route set and in-dialog requests.

A dialog is created from the INVITE this side answers: Call-ID, the caller's tag
(From), this side's tag (To of the 2xx), the remote target (the INVITE's Contact)
and the **route set: the INVITE's Record-Route values, in order**. The 2xx echoes
the Record-Route headers (the responses are built from the request), and every
request this side sends in the dialog (BYE) carries the route set as ``Route``
headers and goes to the first route's address (loose routing, ``;lr``); with no
route set it goes to the remote target. A strict router (a first route without
``;lr``) gets the RFC 3261 §12.2.1.1 treatment: it becomes the Request-URI and the
remote target is appended as the last Route.
"""

from __future__ import annotations

import random

from ...errors import SIPParseError
from ._headers import new_branch, parse_name_addr, parse_uri
from ._message import SIPMessage

__all__ = ["Dialog"]


class Dialog:
    """A confirmed or early dialog created by an INVITE that this side answers.

    Args:
        invite: The dialog-creating INVITE.
        local_tag: This side's tag (To tag of the responses).
        source: Where the INVITE came from (used when the Contact is unusable).
    """

    def __init__(self, invite: SIPMessage, local_tag: str, source: tuple[str, int]) -> None:
        self.call_id = invite.call_id
        frm = parse_name_addr(invite.get("From") or "")
        to = parse_name_addr(invite.get("To") or "")
        self.remote_tag = frm.tag or ""
        self.local_tag = local_tag
        self.remote_uri = frm.uri
        self.local_uri = to.uri
        self.remote_header = invite.get("From") or ""
        self.local_header = f"{invite.get('To') or ''};tag={local_tag}"
        contact = invite.get("Contact")
        self.remote_target = parse_name_addr(contact).uri if contact else frm.uri
        self.route_set = invite.get_all("Record-Route")
        self.remote_cseq = invite.cseq[0]
        self.local_cseq = random.randint(1, 10000)  # noqa: S311 - a SIP CSeq/SDP session id start value: uniqueness, not secrecy (RFC 3261 8.1.1.5, RFC 4566 5.2)
        self.source = source
        self.confirmed = False
        self.terminated = False

    def matches(self, msg: SIPMessage) -> bool:
        """Whether an in-dialog request belongs here (Call-ID and both tags)."""
        if msg.call_id != self.call_id:
            return False
        try:
            to = parse_name_addr(msg.get("To") or "")
            frm = parse_name_addr(msg.get("From") or "")
        except SIPParseError:
            return False
        return to.tag == self.local_tag and (frm.tag or "") == self.remote_tag

    def request(
        self, method: str, via_host: str, via_port: int, contact: str
    ) -> tuple[SIPMessage, tuple[str, int]]:
        """A new in-dialog request (CSeq incremented) and the address to send it to."""
        self.local_cseq += 1
        uri = self.remote_target
        routes = list(self.route_set)
        if routes:
            first = parse_name_addr(routes[0])
            if "lr" not in parse_uri(first.uri).params:
                uri = first.uri
                routes = routes[1:] + [f"<{self.remote_target}>"]
        headers = [
            ("Via", f"SIP/2.0/UDP {_host(via_host)}:{via_port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", self.local_header),
            ("To", self.remote_header),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
            ("Contact", contact),
        ]
        headers.extend(("Route", r) for r in routes)
        msg = SIPMessage(method=method, uri=uri, headers=headers)
        return msg, self.next_hop()

    def next_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route, else the remote target."""
        try:
            if self.route_set:
                return parse_uri(parse_name_addr(self.route_set[0]).uri).address()
            return parse_uri(self.remote_target).address()
        except SIPParseError:
            return self.source


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
