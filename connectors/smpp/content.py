"""Message content both ways: submit_sm bodies from text, text from a deliver_sm.

Outbound, :func:`gateway.units.split_sms` alone decides the encoding and the parts;
this module only puts them into PDUs — by UDH (esm_class 0x40 and ``05 00 03 ref total
seq``), by SAR TLVs, or as one ``message_payload``.

Inbound, :func:`read_deliver` raises only ``ValueError`` (a UDH that overruns its
short_message); concatenation information that cannot be valid (total 0, a part beyond
the total, SAR TLVs wider than SMPP's) is ignored, and any data_coding decodes to text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from connectors.smpp import gsm7
from connectors.smpp import pdu as P
from connectors.smpp.options import SmppOptions
from connectors.smpp.udh import UDHI, Concat, concat_8, parse_concat, split_udh
from gateway.units import split_sms

DC_GSM7 = 0x00
DC_IA5 = 0x01
DC_OCTET = 0x02
DC_LATIN1 = 0x03
DC_OCTET_2 = 0x04
DC_UCS2 = 0x08

TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_ALPHANUMERIC = 0, 1, 2, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1


def source_address(sender: str, opts: SmppOptions) -> tuple[int, int, str]:
    """(TON, NPI, address) of a sender: E.164 → international without '+', letters →
    alphanumeric; the ``source_ton``/``source_npi`` options override."""
    if sender.startswith("+") and sender[1:].isdigit():
        ton, npi, addr = TON_INTERNATIONAL, NPI_ISDN, sender[1:]
    elif sender.isdigit():
        ton, npi, addr = TON_UNKNOWN, NPI_ISDN, sender
    else:
        ton, npi, addr = TON_ALPHANUMERIC, NPI_UNKNOWN, sender
    if opts.source_ton is not None:
        ton = opts.source_ton
    if opts.source_npi is not None:
        npi = opts.source_npi
    return ton, npi, addr


def dest_address(recipient: str) -> str:
    """The destination address: E.164 without its '+'."""
    return recipient[1:] if recipient.startswith("+") else recipient


def inbound_number(ton: int, addr: str) -> str:
    """An address from the SMSC in the gateway's form: E.164 with '+' when international.

    TON unknown (0) with digits not starting with 0 is taken as international: most SMSCs
    send international numbers so. National numbers (TON 2) and short codes stay as sent.
    """
    if addr.startswith("+"):
        return addr
    if ton == TON_INTERNATIONAL and addr.isdigit():
        return "+" + addr
    if ton == TON_UNKNOWN and addr.isdigit():
        if addr.startswith("00"):
            return "+" + addr[2:]
        if not addr.startswith("0") and len(addr) > 6:
            return "+" + addr
    return addr


def concat_ref(message_id: str, bits: int) -> int:
    """A reference derived from the gateway's message id: a retried send reuses it, so a
    handset that already holds some parts reassembles instead of showing two halves."""
    digest = hashlib.blake2s(message_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & ((1 << bits) - 1)


@dataclass(frozen=True, slots=True)
class Submits:
    """The submit_sm bodies of one message (one per part, or one payload), and facts."""

    bodies: list[bytes]
    encoding: str
    data_coding: int
    parts: int


def _encode_text(text: str, encoding: str) -> bytes:
    return gsm7.encode(text) if encoding == "gsm7" else text.encode("utf-16-be")


class _Body:
    """submit_sm bodies of one message: the address part is encoded once for all parts."""

    __slots__ = ("dc", "head", "reg")

    def __init__(self, sender: str, recipient: str, dc: int, opts: SmppOptions) -> None:
        ton, npi, src = source_address(sender, opts)
        self.head = b"".join(
            (
                P.cstr(opts.service_type, 6, "service_type"),
                bytes((ton, npi)),
                P.cstr(src, 21, "source_addr"),
                bytes((opts.dest_ton, opts.dest_npi)),
                P.cstr(dest_address(recipient), 21, "destination_addr"),
            )
        )
        self.reg, self.dc = opts.registered_delivery, dc

    def __call__(self, short_message: bytes, esm_class: int = 0, tlvs: bytes = b"") -> bytes:
        if len(short_message) > 254:
            raise ValueError(f"short_message: {len(short_message)} octets, at most 254")
        # esm_class, protocol_id, priority_flag, schedule_delivery_time (empty),
        # validity_period (empty), registered_delivery, replace_if_present_flag,
        # data_coding, sm_default_msg_id, sm_length (SMPP 3.4 §4.4.1)
        tail = bytes((esm_class, 0, 0, 0, 0, self.reg, 0, self.dc, 0, len(short_message)))
        return b"".join((self.head, tail, short_message, tlvs))


def build_submits(
    message_id: str, sender: str, recipient: str, text: str, opts: SmppOptions
) -> Submits:
    """Every submit_sm body for one message, per the ``long_messages`` option."""
    encoding, parts = split_sms(text)
    dc = DC_GSM7 if encoding == "gsm7" else DC_UCS2
    body = _Body(sender, recipient, dc, opts)
    packed = opts.gsm7_packing and encoding == "gsm7"
    total = len(parts)
    if total == 1 or opts.long_messages == "payload":
        septets = _encode_text(text, encoding)
        data = gsm7.pack(septets) if packed else septets
        if total == 1:
            return Submits([body(data)], encoding, dc, 1)
        return Submits([body(b"", 0, P.tlv(P.TAG_MESSAGE_PAYLOAD, data))], encoding, dc, total)
    bodies: list[bytes] = []
    if opts.long_messages == "udh":
        ref = concat_ref(message_id, 8)
        for i, part in enumerate(parts, 1):
            udh = concat_8(ref, total, i)
            septets = _encode_text(part, encoding)
            data = gsm7.pack(septets, gsm7.fill_bits_after(len(udh))) if packed else septets
            bodies.append(body(udh + data, UDHI))
    else:
        ref = concat_ref(message_id, 16)
        for i, part in enumerate(parts, 1):
            septets = _encode_text(part, encoding)
            data = gsm7.pack(septets) if packed else septets
            tlvs = (
                P.tlv_u16(P.TAG_SAR_MSG_REF_NUM, ref)
                + P.tlv_u8(P.TAG_SAR_TOTAL_SEGMENTS, total)
                + P.tlv_u8(P.TAG_SAR_SEGMENT_SEQNUM, i)
            )
            bodies.append(body(data, 0, tlvs))
    return Submits(bodies, encoding, dc, total)


# -- inbound ---------------------------------------------------------------------------
@dataclass(slots=True)
class Received:
    """The content of one deliver_sm: text, concatenation info, addresses."""

    source: str
    dest: str
    text: str
    concat: Concat | None
    data_coding: int


def _alphabet(dc: int) -> str:
    """``gsm7``, ``ucs2``, ``ascii``, ``latin1`` or ``octets`` for a data_coding value."""
    if dc in (DC_GSM7,):
        return "gsm7"
    if dc == DC_UCS2:
        return "ucs2"
    if dc == DC_IA5:
        return "ascii"
    if dc in (DC_LATIN1,):
        return "latin1"
    if 0xF0 <= dc <= 0xFF:  # message class group: bit 2 = 8-bit data
        return "octets" if dc & 0x04 else "gsm7"
    if 0x10 <= dc <= 0x3F or 0xC0 <= dc <= 0xEF:  # general group: bits 2-3 = alphabet
        return {0: "gsm7", 4: "octets", 8: "ucs2"}.get(dc & 0x0C, "octets")
    return "octets"


def decode_text(data: bytes, dc: int, packed: bool, fill_bits: int = 0) -> str:
    """Text of user data (without UDH) in data_coding ``dc``."""
    alphabet = _alphabet(dc)
    if alphabet == "gsm7":
        septets = gsm7.unpack(data, fill_bits=fill_bits) if packed else data
        return gsm7.decode(septets)
    if alphabet == "ucs2":
        return data.decode("utf-16-be", errors="replace")
    if alphabet == "ascii":
        return data.decode("ascii", errors="replace")
    return data.decode("latin-1")


def read_deliver(pdu: P.Pdu, packed: bool) -> Received:
    """What an inbound deliver_sm (not a receipt) carries; raises ValueError if broken."""
    f = pdu.fields
    dc = int(f.get("data_coding", 0))
    sm: bytes = f.get("short_message", b"") or pdu.tlvs.get(P.TAG_MESSAGE_PAYLOAD, b"")
    concat: Concat | None = None
    fill = 0
    if int(f.get("esm_class", 0)) & UDHI:
        udh, sm = split_udh(sm)
        concat = parse_concat(udh)
        fill = gsm7.fill_bits_after(len(udh))
    else:
        ref = P.tlv_int(pdu, P.TAG_SAR_MSG_REF_NUM)
        total = P.tlv_int(pdu, P.TAG_SAR_TOTAL_SEGMENTS)
        seq = P.tlv_int(pdu, P.TAG_SAR_SEGMENT_SEQNUM)
        # SMPP 3.4 §5.3.2.22-24: a 16-bit reference and one-octet counts. TLVs read wider
        # than that are not concatenation (a total of 2**64 parts would be waited for).
        if ref is not None and total and seq and 1 <= seq <= total <= 0xFF and ref <= 0xFFFF:
            concat = Concat(ref, total, seq)
    if concat is not None and concat.total == 1:
        concat = None
    return Received(
        source=inbound_number(int(f.get("source_addr_ton", 0)), str(f.get("source_addr", ""))),
        dest=inbound_number(int(f.get("dest_addr_ton", 0)), str(f.get("destination_addr", ""))),
        text=decode_text(sm, dc, packed, fill),
        concat=concat,
        data_coding=dc,
    )
