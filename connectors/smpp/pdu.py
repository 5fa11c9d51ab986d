"""SMPP 3.4 PDUs: command ids, status codes, the body layouts, encoding and decoding.

A PDU is a 16-byte header (command_length, command_id, command_status,
sequence_number), the mandatory parameters of its command in a fixed order (C-octet
strings, integers, and the length-prefixed ``short_message``), then optional TLVs.
Decoding never raises anything but :class:`PduError`, which carries the status a peer
answers with (in a ``generic_nack``), so a malformed PDU never takes a session down.
"""

from __future__ import annotations

import struct
from typing import Any

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
# message_payload may carry up to 64 KiB; anything far beyond is a broken stream.
MAX_PDU = 70_000

# -- command ids -----------------------------------------------------------------------
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000
BIND_RECEIVER_RESP = BIND_RECEIVER | RESP
BIND_TRANSMITTER_RESP = BIND_TRANSMITTER | RESP
SUBMIT_SM_RESP = SUBMIT_SM | RESP
DELIVER_SM_RESP = DELIVER_SM | RESP
UNBIND_RESP = UNBIND | RESP
BIND_TRANSCEIVER_RESP = BIND_TRANSCEIVER | RESP
ENQUIRE_LINK_RESP = ENQUIRE_LINK | RESP

COMMAND_NAMES = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    UNBIND: "unbind",
    BIND_TRANSCEIVER: "bind_transceiver",
    ENQUIRE_LINK: "enquire_link",
    BIND_RECEIVER_RESP: "bind_receiver_resp",
    BIND_TRANSMITTER_RESP: "bind_transmitter_resp",
    SUBMIT_SM_RESP: "submit_sm_resp",
    DELIVER_SM_RESP: "deliver_sm_resp",
    UNBIND_RESP: "unbind_resp",
    BIND_TRANSCEIVER_RESP: "bind_transceiver_resp",
    ENQUIRE_LINK_RESP: "enquire_link_resp",
}

# -- command_status values (SMPP 3.4 §5.1.3) -------------------------------------------
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RINVPRTFLG = 0x06
ESME_RINVREGDLVFLG = 0x07
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RINVMSGID = 0x0C
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVSERTYP = 0x15
ESME_RINVESMCLASS = 0x43
ESME_RSUBMITFAIL = 0x45
ESME_RINVSRCTON = 0x48
ESME_RINVSRCNPI = 0x49
ESME_RINVDSTTON = 0x50
ESME_RINVDSTNPI = 0x51
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RINVSCHED = 0x61
ESME_RINVEXPIRY = 0x62
ESME_RX_T_APPN = 0x64
ESME_RX_P_APPN = 0x65
ESME_RX_R_APPN = 0x66
ESME_RINVOPTPARSTREAM = 0xC0
ESME_ROPTPARNOTALLWD = 0xC1
ESME_RINVPARLEN = 0xC2
ESME_RMISSINGOPTPARAM = 0xC3
ESME_RINVOPTPARAMVAL = 0xC4
ESME_RDELIVERYFAILURE = 0xFE
ESME_RUNKNOWNERR = 0xFF

STATUS_NAMES = {value: name for name, value in globals().items() if name.startswith("ESME_R")}


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED`` for 0x58; unknown codes as hex."""
    return STATUS_NAMES.get(status, f"0x{status:08X}")


# -- optional parameter tags -----------------------------------------------------------
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_SC_INTERFACE_VERSION = 0x0210
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427

# -- body layouts: (name, kind, max C-string length incl. NUL) -------------------------
# kind "c": C-octet string; "b": one octet; "m": sm_length + short_message.
Layout = tuple[tuple[str, str, int], ...]
_BIND: Layout = (
    ("system_id", "c", 16),
    ("password", "c", 9),
    ("system_type", "c", 13),
    ("interface_version", "b", 0),
    ("addr_ton", "b", 0),
    ("addr_npi", "b", 0),
    ("address_range", "c", 41),
)
_SM: Layout = (
    ("service_type", "c", 6),
    ("source_addr_ton", "b", 0),
    ("source_addr_npi", "b", 0),
    ("source_addr", "c", 21),
    ("dest_addr_ton", "b", 0),
    ("dest_addr_npi", "b", 0),
    ("destination_addr", "c", 21),
    ("esm_class", "b", 0),
    ("protocol_id", "b", 0),
    ("priority_flag", "b", 0),
    ("schedule_delivery_time", "c", 17),
    ("validity_period", "c", 17),
    ("registered_delivery", "b", 0),
    ("replace_if_present_flag", "b", 0),
    ("data_coding", "b", 0),
    ("sm_default_msg_id", "b", 0),
    ("short_message", "m", 0),
)
_ID: Layout = (("message_id", "c", 65),)
_SYSID: Layout = (("system_id", "c", 16),)
_EMPTY: Layout = ()
LAYOUTS: dict[int, Layout] = {
    BIND_RECEIVER: _BIND,
    BIND_TRANSMITTER: _BIND,
    BIND_TRANSCEIVER: _BIND,
    BIND_RECEIVER_RESP: _SYSID,
    BIND_TRANSMITTER_RESP: _SYSID,
    BIND_TRANSCEIVER_RESP: _SYSID,
    SUBMIT_SM: _SM,
    DELIVER_SM: _SM,
    SUBMIT_SM_RESP: _ID,
    DELIVER_SM_RESP: _ID,
    ENQUIRE_LINK: _EMPTY,
    ENQUIRE_LINK_RESP: _EMPTY,
    UNBIND: _EMPTY,
    UNBIND_RESP: _EMPTY,
    GENERIC_NACK: _EMPTY,
}
# Commands whose TLVs we read; others' trailing octets are ignored (bind_resp TLVs).
_WITH_TLVS = frozenset(
    {SUBMIT_SM, DELIVER_SM, BIND_RECEIVER_RESP, BIND_TRANSMITTER_RESP, BIND_TRANSCEIVER_RESP}
)


class PduError(Exception):
    """A PDU that cannot be decoded; ``status`` is what to answer it with."""

    def __init__(self, status: int, message: str, seq: int = 0, command_id: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.seq = seq
        self.command_id = command_id


class Pdu:
    """One decoded PDU: header values, mandatory parameters by name, and TLVs by tag."""

    __slots__ = ("command_id", "fields", "seq", "status", "tlvs")

    def __init__(
        self,
        command_id: int,
        status: int = 0,
        seq: int = 0,
        fields: dict[str, Any] | None = None,
        tlvs: dict[int, bytes] | None = None,
    ) -> None:
        self.command_id = command_id
        self.status = status
        self.seq = seq
        self.fields: dict[str, Any] = fields if fields is not None else {}
        self.tlvs: dict[int, bytes] = tlvs if tlvs is not None else {}

    @property
    def name(self) -> str:
        """The command's name, e.g. ``submit_sm``."""
        return COMMAND_NAMES.get(self.command_id, f"0x{self.command_id:08X}")

    def __repr__(self) -> str:
        return f"Pdu({self.name}, status={status_name(self.status)}, seq={self.seq}, {self.fields})"


# -- encoding --------------------------------------------------------------------------
def header(command_id: int, status: int, seq: int, body_len: int) -> bytes:
    """The 16-byte header of a PDU whose body has ``body_len`` octets."""
    return HEADER.pack(HEADER_LEN + body_len, command_id, status, seq)


def cstr(value: str | bytes, maxlen: int, name: str = "value") -> bytes:
    """A C-octet string (NUL-terminated), refused when longer than the field allows."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    if len(raw) >= maxlen:
        raise ValueError(f"{name}: {len(raw)} octets, at most {maxlen - 1} allowed")
    return raw + b"\x00"


def tlv(tag: int, value: bytes) -> bytes:
    """One optional parameter."""
    return struct.pack(">HH", tag, len(value)) + value


def tlv_u8(tag: int, value: int) -> bytes:
    """A one-octet integer TLV."""
    return struct.pack(">HHB", tag, 1, value)


def tlv_u16(tag: int, value: int) -> bytes:
    """A two-octet integer TLV."""
    return struct.pack(">HHH", tag, 2, value)


def encode_body(command_id: int, fields: dict[str, Any], tlvs: bytes = b"") -> bytes:
    """The body of ``command_id`` from its parameters (missing ones: empty / zero)."""
    out: list[bytes] = []
    for name, kind, maxlen in LAYOUTS[command_id]:
        value = fields.get(name)
        if kind == "c":
            out.append(cstr(value or b"", maxlen, name))
        elif kind == "b":
            out.append(bytes(((value or 0) & 0xFF,)))
        else:
            sm = value or b""
            if len(sm) > 254:
                raise ValueError(
                    f"short_message: {len(sm)} octets, at most 254 (use message_payload)"
                )
            out.append(bytes((len(sm),)))
            out.append(sm)
    out.append(tlvs)
    return b"".join(out)


def encode(
    command_id: int,
    seq: int,
    fields: dict[str, Any] | None = None,
    status: int = 0,
    tlvs: bytes = b"",
) -> bytes:
    """A whole PDU."""
    body = encode_body(command_id, fields or {}, tlvs)
    return header(command_id, status, seq, len(body)) + body


def with_header(command_id: int, seq: int, body: bytes, status: int = 0) -> bytes:
    """A PDU from a body encoded earlier (a submit_sm body is built once, sent on any bind)."""
    return header(command_id, status, seq, len(body)) + body


# -- decoding --------------------------------------------------------------------------
def decode(frame: bytes) -> Pdu:
    """Decode one whole PDU (``command_length`` octets); raises :class:`PduError`."""
    if len(frame) < HEADER_LEN:
        raise PduError(ESME_RINVCMDLEN, f"PDU of {len(frame)} octets is shorter than a header")
    length, command_id, status, seq = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError(ESME_RINVCMDLEN, "command_length does not match the frame", seq, command_id)
    if command_id == SUBMIT_SM_RESP and length > HEADER_LEN:  # the common case, made short
        nul = frame.find(b"\x00", HEADER_LEN, HEADER_LEN + 65)
        if nul > 0:
            return Pdu(command_id, status, seq, {"message_id": frame[16:nul].decode("latin-1")})
    layout = LAYOUTS.get(command_id)
    if layout is None:
        raise PduError(ESME_RINVCMDID, f"unknown command_id 0x{command_id:08X}", seq, command_id)
    fields: dict[str, Any] = {}
    pos, end = HEADER_LEN, length
    find = frame.find
    # A response with an error status may omit its body (SMPP 3.4 §4.1.2, §4.4.2).
    lenient = bool(command_id & RESP) and (status != 0 or pos == end)
    for name, kind, maxlen in layout:
        if pos >= end and lenient:
            break
        if kind == "c":
            nul = find(b"\x00", pos, pos + maxlen)  # the frame ends at ``end``
            if nul < 0:
                raise PduError(
                    ESME_RINVPARLEN, f"{name}: no NUL within {maxlen} octets", seq, command_id
                )
            fields[name] = frame[pos:nul].decode("latin-1")
            pos = nul + 1
        elif kind == "b":
            if pos >= end:
                raise PduError(ESME_RINVCMDLEN, f"{name}: PDU ends early", seq, command_id)
            fields[name] = frame[pos]
            pos += 1
        else:
            if pos >= end:
                raise PduError(ESME_RINVCMDLEN, "sm_length: PDU ends early", seq, command_id)
            n = frame[pos]
            if pos + 1 + n > end:
                raise PduError(ESME_RINVMSGLEN, f"sm_length {n} runs past the PDU", seq, command_id)
            fields[name] = frame[pos + 1 : pos + 1 + n]
            pos += 1 + n
    tlvs: dict[int, bytes] = {}
    if command_id in _WITH_TLVS:
        while pos < end:
            if pos + 4 > end:
                raise PduError(ESME_RINVOPTPARSTREAM, "truncated TLV header", seq, command_id)
            tag, n = struct.unpack_from(">HH", frame, pos)
            if pos + 4 + n > end:
                raise PduError(
                    ESME_RINVPARLEN, f"TLV 0x{tag:04X} runs past the PDU", seq, command_id
                )
            tlvs[tag] = frame[pos + 4 : pos + 4 + n]
            pos += 4 + n
    return Pdu(command_id, status, seq, fields, tlvs)


def tlv_int(pdu: Pdu, tag: int) -> int | None:
    """An integer TLV's value (any width), or None when absent or empty."""
    raw = pdu.tlvs.get(tag)
    return int.from_bytes(raw, "big") if raw else None


def tlv_cstr(pdu: Pdu, tag: int) -> str | None:
    """A C-octet string TLV's value without its NUL, or None when absent."""
    raw = pdu.tlvs.get(tag)
    if raw is None:
        return None
    return raw.split(b"\x00", 1)[0].decode("latin-1")


class Framer:
    """Cuts a TCP byte stream into PDUs by ``command_length``; refuses absurd lengths."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete PDU. Raises :class:`PduError`
        (``ESME_RINVCMDLEN``) when a length is impossible: the stream cannot be re-synced."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < HEADER_LEN or length > MAX_PDU:
                seq = int.from_bytes(buf[pos + 12 : pos + 16], "big") if size - pos >= 16 else 0
                del buf[:]
                raise PduError(ESME_RINVCMDLEN, f"command_length {length} is impossible", seq)
            if size - pos < length:
                break
            frames.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return frames
