"""The fax streams in SDP and the offer/answer rules (RFC 3264) for them.

``m=audio`` with PCMU (0), PCMA (8) and telephone-event; ``m=image <port> udptl t38`` with
the T.38 attributes (ITU-T T.38 Annex D, RFC 3362). The answer keeps the offer's m-lines in
order and rejects with port 0 what it does not take; T.38 settles at the lower version and
bit rate, the error correction both sides support and the offered rate management, while
``T38FaxMaxBuffer``/``T38FaxMaxDatagram`` state each side's own receive limits. A
well-formed offer without a stream we can take raises `MediaNotAcceptable` (SIP 488).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from enum import StrEnum

from fax.t38.sdp.wire import (
    Attribute,
    Connection,
    Media,
    Origin,
    SessionDescription,
    parse_int,
)
from fax.t38.sip.errors import MediaNotAcceptable, SdpError


class MediaKind(StrEnum):
    """The two stream kinds of a fax call."""

    AUDIO = "audio"
    IMAGE = "image"


class RateManagement(StrEnum):
    """T38FaxRateManagement: who checks the training (TCF)."""

    TRANSFERRED_TCF = "transferredTCF"
    LOCAL_TCF = "localTCF"


class UdpEC(StrEnum):
    """T38FaxUdpEC, ordered weakest to strongest (no attribute means none)."""

    NONE = "none"
    REDUNDANCY = "t38UDPRedundancy"
    FEC = "t38UDPFEC"

    @property
    def strength(self) -> int:
        """0 none, 1 redundancy, 2 FEC: the answer takes the lower of both sides."""
        return (UdpEC.NONE, UdpEC.REDUNDANCY, UdpEC.FEC).index(self)


@dataclass(frozen=True)
class AudioCodec:
    """A G.711 codec as an RTP payload type."""

    name: str
    payload_type: int
    clock_rate: int = 8000


PCMU = AudioCodec("PCMU", 0)
PCMA = AudioCodec("PCMA", 8)
CODECS = {"PCMU": PCMU, "PCMA": PCMA}
TELEPHONE_EVENT_PT = 101
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
           "inactive": "inactive"}


@dataclass(frozen=True)
class T38Attributes:
    """The T.38 attributes of an ``m=image`` stream.

    ``max_buffer`` and ``max_datagram`` describe the *receiving* side of whoever wrote
    them; the others are settled between both sides.
    """

    version: int = 0
    max_bit_rate: int = 14400
    fill_bit_removal: bool = False
    transcoding_mmr: bool = False
    transcoding_jbig: bool = False
    rate_management: RateManagement = RateManagement.TRANSFERRED_TCF
    max_buffer: int | None = None
    max_datagram: int | None = None
    udp_ec: UdpEC = UdpEC.REDUNDANCY

    @classmethod
    def from_media(cls, media: Media) -> T38Attributes:
        """Read the attributes of an ``m=image`` stream (absent ones take defaults)."""

        def num(name: str, default: int | None) -> int | None:
            a = media.attr(name)
            if a is None or a.value is None:
                return default
            return parse_int(a.value.strip(), name, 2**31 - 1)

        def flag(name: str) -> bool:
            a = media.attr(name)
            if a is None:
                return False
            # RFC 3362 allows the bare property and the ``:0``/``:1`` forms.
            return a.value is None or a.value.strip() != "0"

        rm = media.attr("T38FaxRateManagement")
        rate = RateManagement.TRANSFERRED_TCF
        if rm is not None and rm.value is not None:
            try:
                rate = RateManagement(rm.value.strip())
            except ValueError as exc:
                raise SdpError(f"unknown T38FaxRateManagement {rm.value[:30]!r}") from exc
        ec_attr = media.attr("T38FaxUdpEC")
        ec = UdpEC.NONE
        if ec_attr is not None and ec_attr.value is not None:
            try:
                ec = UdpEC(ec_attr.value.strip())
            except ValueError:
                ec = UdpEC.NONE  # e.g. t38UDPNoEC, or a vendor value: no correction
        version = num("T38FaxVersion", 0)
        bit_rate = num("T38MaxBitRate", 14400)
        assert version is not None and bit_rate is not None
        return cls(
            version=version,
            max_bit_rate=bit_rate,
            fill_bit_removal=flag("T38FaxFillBitRemoval"),
            transcoding_mmr=flag("T38FaxTranscodingMMR"),
            transcoding_jbig=flag("T38FaxTranscodingJBIG"),
            rate_management=rate,
            max_buffer=num("T38FaxMaxBuffer", None),
            max_datagram=num("T38FaxMaxDatagram", None),
            udp_ec=ec,
        )

    def attributes(self) -> list[Attribute]:
        """The ``a=`` lines, in the order common implementations write them."""
        out = [
            Attribute("T38FaxVersion", str(self.version)),
            Attribute("T38MaxBitRate", str(self.max_bit_rate)),
        ]
        if self.fill_bit_removal:
            out.append(Attribute("T38FaxFillBitRemoval"))
        if self.transcoding_mmr:
            out.append(Attribute("T38FaxTranscodingMMR"))
        if self.transcoding_jbig:
            out.append(Attribute("T38FaxTranscodingJBIG"))
        out.append(Attribute("T38FaxRateManagement", self.rate_management.value))
        if self.max_buffer is not None:
            out.append(Attribute("T38FaxMaxBuffer", str(self.max_buffer)))
        if self.max_datagram is not None:
            out.append(Attribute("T38FaxMaxDatagram", str(self.max_datagram)))
        if self.udp_ec is not UdpEC.NONE:
            out.append(Attribute("T38FaxUdpEC", self.udp_ec.value))
        return out

    def answer_to(self, offered: T38Attributes) -> T38Attributes:
        """Our answer to ``offered`` when ``self`` is what we support at most."""
        ec = min(offered.udp_ec, self.udp_ec, key=lambda e: e.strength)
        return replace(
            self,
            version=min(offered.version, self.version),
            max_bit_rate=min(offered.max_bit_rate, self.max_bit_rate),
            fill_bit_removal=offered.fill_bit_removal and self.fill_bit_removal,
            transcoding_mmr=offered.transcoding_mmr and self.transcoding_mmr,
            transcoding_jbig=offered.transcoding_jbig and self.transcoding_jbig,
            rate_management=offered.rate_management,
            udp_ec=ec,
        )


@dataclass(frozen=True)
class LocalMedia:
    """What this side offers or accepts: its address, its ports, its limits.

    The media handler owns the ports; a kind without a port is never offered or accepted.
    """

    address: str
    audio_port: int | None = None
    image_port: int | None = None
    codecs: tuple[AudioCodec, ...] = (PCMA, PCMU)
    telephone_event: bool = True
    ptime: int = 20
    t38: T38Attributes = T38Attributes(max_buffer=2000, max_datagram=400)

    def port_for(self, kind: MediaKind) -> int | None:
        """The port of ``kind``, None when this side has none."""
        return self.audio_port if kind is MediaKind.AUDIO else self.image_port


@dataclass(frozen=True)
class Negotiated:
    """The stream both sides agreed on: where to send, what to send, with which limits."""

    kind: MediaKind
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    direction: str = "sendrecv"
    codec: AudioCodec | None = None
    telephone_event: int | None = None
    ptime: int = 20
    t38: T38Attributes | None = None
    remote_t38: T38Attributes | None = None

    @property
    def remote_max_datagram(self) -> int | None:
        """The largest UDPTL datagram the far end accepts (what we may send)."""
        return self.remote_t38.max_datagram if self.remote_t38 else None


class SdpOrigin:
    """One side's ``o=`` line: the same session id, the version +1 whenever the SDP changes.

    An unchanged SDP (a session refresh) keeps its version, as RFC 3264 §8 requires.
    """

    def __init__(self, address: str, username: str = "-", session_id: int | None = None):
        self.address = address
        self.username = username
        self.session_id = session_id if session_id is not None else secrets.randbelow(2**62)
        self.version = self.session_id
        self._last: str | None = None

    def stamp(self, sd: SessionDescription) -> SessionDescription:
        """``sd`` with our o= line; the version moves only when the content changed."""
        body = replace(sd, origin=Origin(self.username, self.session_id, 0, self.address))
        text = body.serialize()
        if self._last is not None and text != self._last:
            self.version += 1
        self._last = text
        body.origin = Origin(self.username, self.session_id, self.version, self.address,
                             addrtype="IP6" if ":" in self.address else "IP4")
        return body


def _audio_media(local: LocalMedia, codecs: list[AudioCodec], event_pt: int | None) -> Media:
    assert local.audio_port is not None
    fmts = [str(c.payload_type) for c in codecs]
    attrs = [Attribute("rtpmap", f"{c.payload_type} {c.name}/{c.clock_rate}") for c in codecs]
    if event_pt is not None:
        fmts.append(str(event_pt))
        attrs += [Attribute("rtpmap", f"{event_pt} telephone-event/8000"),
                  Attribute("fmtp", f"{event_pt} 0-15")]
    attrs += [Attribute("ptime", str(local.ptime)), Attribute("sendrecv")]
    return Media("audio", local.audio_port, "RTP/AVP", fmts, attributes=attrs)


def _image_media(port: int, params: T38Attributes) -> Media:
    return Media("image", port, "udptl", ["t38"], attributes=params.attributes())


def build_offer(local: LocalMedia, kind: MediaKind, origin: SdpOrigin) -> SessionDescription:
    """An offer with one stream of ``kind`` (audio: our codecs and telephone-event)."""
    port = local.port_for(kind)
    if port is None:
        raise MediaNotAcceptable(f"no local {kind} port to offer")
    if kind is MediaKind.AUDIO:
        media = _audio_media(local, list(local.codecs),
                             TELEPHONE_EVENT_PT if local.telephone_event else None)
    else:
        media = _image_media(port, local.t38)
    sd = SessionDescription(origin=Origin("-", 0, 0, local.address), name="fax",
                            connection=Connection.for_address(local.address), media=[media])
    return origin.stamp(sd)


def _rtpmaps(media: Media) -> dict[int, str]:
    out: dict[int, str] = {}
    for a in media.attrs("rtpmap"):
        pt, _, enc = (a.value or "").strip().partition(" ")
        if pt.isdigit():
            out[int(pt)] = enc.strip()
    return out


def _offered_codecs(media: Media) -> tuple[list[AudioCodec], int | None]:
    """The G.711 codecs in the offerer's order, and its telephone-event payload type."""
    maps = _rtpmaps(media)
    codecs: list[AudioCodec] = []
    event: int | None = None
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        enc = maps.get(pt, "")
        name = enc.split("/")[0].upper()
        if pt in (0, 8) and not enc:
            codecs.append(PCMU if pt == 0 else PCMA)
        elif name in CODECS and enc.split("/")[1:2] in (["8000"], []):
            codecs.append(AudioCodec(name, pt))
        elif name == "TELEPHONE-EVENT" and event is None:
            event = pt
    return codecs, event


def _direction(media: Media) -> str:
    return next((a.name for a in media.attributes if a.name in _DIRECTIONS), "sendrecv")


def _ptime(media: Media, default: int) -> int:
    a = media.attr("ptime")
    if a is None or a.value is None:
        return default
    return parse_int(a.value.strip(), "ptime", 1000) or default


def build_answer(
    offer: SessionDescription,
    local: LocalMedia,
    origin: SdpOrigin,
    prefer: MediaKind = MediaKind.IMAGE,
) -> tuple[SessionDescription, Negotiated]:
    """Answer ``offer``: take one stream (``prefer`` when both fit), reject the rest.

    Raises `MediaNotAcceptable` when no offered stream fits ``local``.
    """
    chosen: tuple[int, Negotiated, Media] | None = None
    candidates: list[tuple[int, Negotiated, Media]] = []
    for i, m in enumerate(offer.media):
        picked = _accept(offer, m, local)
        if picked is not None:
            candidates.append((i, *picked))
    for cand in candidates:
        if chosen is None or (cand[1].kind is prefer and chosen[1].kind is not prefer):
            chosen = cand
    if chosen is None:
        raise MediaNotAcceptable("no acceptable audio (PCMU/PCMA) or image (udptl t38) stream")
    lines: list[Media] = []
    for i, m in enumerate(offer.media):
        if i == chosen[0]:
            lines.append(chosen[2])
        else:
            lines.append(Media(m.kind, 0, m.proto, list(m.formats)))
    sd = SessionDescription(origin=Origin("-", 0, 0, local.address), name="fax",
                            connection=Connection.for_address(local.address), media=lines)
    return origin.stamp(sd), chosen[1]


def _accept(
    offer: SessionDescription, m: Media, local: LocalMedia
) -> tuple[Negotiated, Media] | None:
    if m.rejected:
        return None
    conn = offer.connection_for(m)
    assert conn is not None  # the parser insists on an address for live streams
    remote = conn.address.split("/", 1)[0]
    direction = _MIRROR[_direction(m)]
    if m.kind == "image" and m.proto.lower() == "udptl" and "t38" in m.formats:
        if local.image_port is None:
            return None
        offered = T38Attributes.from_media(m)
        ours = local.t38.answer_to(offered)
        neg = Negotiated(MediaKind.IMAGE, local.address, local.image_port, remote, m.port,
                         direction=direction, t38=ours, remote_t38=offered)
        return neg, _image_media(local.image_port, ours)
    if m.kind == "audio" and m.proto.upper() == "RTP/AVP" and local.audio_port is not None:
        codecs, event = _offered_codecs(m)
        names = {c.name for c in local.codecs}
        usable = [c for c in codecs if c.name in names]
        if not usable:
            return None
        codec = usable[0]
        event_pt = event if local.telephone_event else None
        ptime = _ptime(m, local.ptime)
        media = _audio_media(replace(local, ptime=ptime), [codec], event_pt)
        media.attributes = [a for a in media.attributes if a.name not in _DIRECTIONS]
        media.attributes.append(Attribute(direction))
        neg = Negotiated(MediaKind.AUDIO, local.address, local.audio_port, remote, m.port,
                         direction=direction, codec=codec, telephone_event=event_pt,
                         ptime=ptime)
        return neg, media
    return None


def negotiate(
    offer: SessionDescription, answer: SessionDescription, local: LocalMedia
) -> Negotiated:
    """The offerer's reading of an answer: the one stream accepted, with settled parameters.

    Raises `MediaNotAcceptable` when the answer rejected every stream, `SdpError` when it
    does not match the offer (a different number of m-lines).
    """
    if len(answer.media) != len(offer.media):
        raise SdpError("the answer's m-lines do not match the offer's")
    for o, a in zip(offer.media, answer.media, strict=True):
        if o.rejected or a.rejected:
            continue
        if a.kind != o.kind:
            raise SdpError(f"answer has m={a.kind} where the offer had m={o.kind}")
        conn = answer.connection_for(a)
        assert conn is not None
        remote = conn.address.split("/", 1)[0]
        direction = _MIRROR[_direction(a)]
        if o.kind == "image":
            assert local.image_port is not None
            theirs = T38Attributes.from_media(a)
            ours = local.t38.answer_to(theirs)
            # The answerer may not raise what we offered; clamp if it did anyway.
            settled = replace(theirs, version=min(theirs.version, local.t38.version),
                              max_bit_rate=min(theirs.max_bit_rate, local.t38.max_bit_rate),
                              udp_ec=ours.udp_ec, max_buffer=local.t38.max_buffer,
                              max_datagram=local.t38.max_datagram)
            return Negotiated(MediaKind.IMAGE, local.address, local.image_port, remote,
                              a.port, direction=direction, t38=settled, remote_t38=theirs)
        if o.kind == "audio":
            assert local.audio_port is not None
            codecs, event = _offered_codecs(a)
            names = {c.name for c in local.codecs}
            usable = [c for c in codecs if c.name in names]
            if not usable:
                raise MediaNotAcceptable("the answer holds no codec we offered")
            return Negotiated(MediaKind.AUDIO, local.address, local.audio_port, remote,
                              a.port, direction=direction, codec=usable[0],
                              telephone_event=event if local.telephone_event else None,
                              ptime=_ptime(a, local.ptime))
    raise MediaNotAcceptable("the answer rejected every stream")


def offered_kinds(sd: SessionDescription) -> list[MediaKind]:
    """The stream kinds an SDP offers live (port not 0), in order."""
    out: list[MediaKind] = []
    for m in sd.media:
        if not m.rejected and m.kind in ("audio", "image"):
            out.append(MediaKind(m.kind))
    return out
