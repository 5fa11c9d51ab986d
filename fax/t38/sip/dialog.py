"""A SIP dialog (RFC 3261 §12): its identity, CSeq counters, route set and remote target."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from fax.t38.sip.message import Headers, SipRequest, SipResponse
from fax.t38.sip.transport import Target
from fax.t38.sip.uri import Address, SipUri


def new_tag() -> str:
    """A fresh From/To tag."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A fresh, globally unique Call-ID."""
    return f"{secrets.token_hex(12)}@{host}"


@dataclass
class Dialog:
    """The state two user agents share for one call."""

    call_id: str
    local_tag: str
    remote_tag: str
    local: Address  # our From (UAC) / To (UAS), without tag
    remote: Address
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None
    transport: str = "udp"
    flow: Target | None = None  # the stream the dialog came up on, reused while open
    caller: bool = True  # we sent the initial INVITE (we own the Call-ID)

    @property
    def id(self) -> tuple[str, str, str]:
        """Call-ID, local tag, remote tag."""
        return self.call_id, self.local_tag, self.remote_tag

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse, transport: str,
               flow: Target | None) -> Dialog:
        """The dialog a 1xx/2xx with a To tag creates for the INVITE we sent (§12.1.2)."""
        contact = response.contact
        routes = list(reversed(response.headers.get_all("Record-Route")))
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local=_untagged(request.from_),
            remote=_untagged(response.to),
            remote_target=contact.uri if contact else request.uri,
            route_set=routes,
            local_cseq=request.cseq[0],
            transport=transport,
            flow=flow,
            caller=True,
        )

    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str, transport: str,
               flow: Target | None) -> Dialog:
        """The dialog we create by answering an INVITE (§12.1.1)."""
        contact = request.contact
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local=_untagged(request.to),
            remote=_untagged(request.from_),
            remote_target=contact.uri if contact else request.from_.uri,
            route_set=list(request.headers.get_all("Record-Route")),
            local_cseq=secrets.randbelow(2**20) + 1,
            remote_cseq=request.cseq[0],
            transport=transport,
            flow=flow,
            caller=False,
        )

    def next_cseq(self) -> int:
        """The CSeq number for our next request (ACK and CANCEL reuse theirs instead)."""
        self.local_cseq += 1
        return self.local_cseq

    def request(self, method: str, cseq: int | None = None) -> SipRequest:
        """An in-dialog request (§12.2.1.1) without Via, Contact or body."""
        h = Headers()
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and "lr" not in Address.parse(routes[0]).uri.params:
            # A strict router: it becomes the Request-URI and the target goes last.
            uri = Address.parse(routes[0]).uri
            routes = [*routes[1:], f"<{self.remote_target}>"]
        for r in routes:
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local.with_tag(self.local_tag)))
        h.add("To", str(self.remote.with_tag(self.remote_tag)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq if cseq is not None else self.next_cseq()} {method}")
        return SipRequest(headers=h, method=method, uri=uri)

    def next_hop(self) -> SipUri:
        """Where in-dialog requests are sent: the first route, else the remote target."""
        if self.route_set:
            return Address.parse(self.route_set[0]).uri
        return self.remote_target


def _untagged(addr: Address) -> Address:
    return Address(addr.uri, addr.display, {k: v for k, v in addr.params.items() if k != "tag"})
