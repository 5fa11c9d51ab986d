"""Delivery receipts: which deliver_sm is one, and what it says (TLVs first, then text).

The text form (SMPP 3.4 Appendix B) is
``id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm[ss] done date:YYMMDDhhmm[ss]
stat:DDDDDDD err:E text:…``; carriers vary the case, the date length (10 or 12 digits)
and write ``err`` in decimal or hex. Message ids may be hex in one place and decimal in
the other, so :func:`id_forms` gives every spelling an id may have been given in.

Nothing here raises on what an SMSC sends: :func:`parse` answers None for a receipt it
cannot read, and an id that is no plain number (``²``, thousands of digits) is compared
only as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors.base import ErrorCode
from connectors.smpp.pdu import (
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    Pdu,
    tlv_cstr,
    tlv_int,
)

# esm_class message type (bits 2-5): SMSC delivery receipt, SME delivery acknowledgement,
# intermediate delivery notification. (0x10 user ack and 0x18 conversation abort are not
# statements about delivery.)
RECEIPT_TYPES = frozenset({0x04, 0x08, 0x20})
ESM_TYPE_MASK = 0x3C

# message_state TLV values (SMPP 3.4 §5.2.28) → the text form's stat words.
STATE_WORDS = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
    9: "SKIPPED",
}
# stat word → (gateway status or None for "no change", error code when failed).
STAT_MAP: dict[str, tuple[str | None, str | None]] = {
    "DELIVRD": ("delivered", None),
    "DELIVERED": ("delivered", None),
    "EXPIRED": ("failed", ErrorCode.EXPIRED),
    "UNDELIV": ("failed", ErrorCode.UNREACHABLE),
    "UNDELIVERABLE": ("failed", ErrorCode.UNREACHABLE),
    "REJECTD": ("failed", ErrorCode.REJECTED),
    "REJECTED": ("failed", ErrorCode.REJECTED),
    "DELETED": ("failed", ErrorCode.CARRIER_ERROR),
    "SKIPPED": ("failed", ErrorCode.CARRIER_ERROR),
    "UNKNOWN": ("failed", ErrorCode.UNKNOWN),
    "ACCEPTD": (None, None),
    "ACCEPTED": (None, None),
    "ENROUTE": (None, None),
}

# submit_sm_resp ids have at most 64 octets: as hex read in decimal, at most 78 digits.
# A longer "number" matches no id we filed (and int() refuses more than 4300 digits).
MAX_NUMERIC_ID = 80

_FIELD = re.compile(r"\b(id|sub|dlvrd|submit date|done date|stat|err)\s*:\s*(\S*)", re.IGNORECASE)
_TEXT = re.compile(r"\btext\s*:", re.IGNORECASE)


@dataclass(slots=True)
class Receipt:
    """What one delivery receipt says."""

    message_id: str
    stat: str  # the stat word, upper case (DELIVRD, UNDELIV, …)
    err: str | None = None
    submit_text: str = ""  # the dates as written; parsed only when asked for
    done_text: str = ""
    network_error: int | None = None

    @property
    def submit_date(self) -> datetime | None:
        """``submit date`` (taken as UTC), if readable."""
        return parse_date(self.submit_text)

    @property
    def done_date(self) -> datetime | None:
        """``done date`` (taken as UTC), if readable."""
        return parse_date(self.done_text)

    @property
    def status(self) -> str | None:
        """The gateway status it moves the message to; None for no change (ENROUTE…)."""
        return STAT_MAP.get(self.stat, ("failed", ErrorCode.UNKNOWN))[0]

    def error(self) -> dict[str, object] | None:
        """The normalized error of a failed delivery (raw stat and err beside)."""
        status, code = STAT_MAP.get(self.stat, ("failed", ErrorCode.UNKNOWN))
        if status != "failed":
            return None
        raw = f"stat={self.stat}"
        if self.err is not None:
            raw += f" err={self.err}"
        if self.network_error is not None:
            raw += f" network_error=0x{self.network_error:06X}"
        return {
            "code": code,
            "message": f"carrier reports {self.stat}",
            "carrier_code": raw,
            "retryable": False,
        }


def is_receipt(pdu: Pdu) -> bool:
    """Whether a deliver_sm is a delivery receipt rather than an inbound message."""
    if int(pdu.fields.get("esm_class", 0)) & ESM_TYPE_MASK in RECEIPT_TYPES:
        return True
    # Some SMSCs leave esm_class at 0 but send the receipt TLVs.
    return TAG_RECEIPTED_MESSAGE_ID in pdu.tlvs and TAG_MESSAGE_STATE in pdu.tlvs


def parse_date(value: str) -> datetime | None:
    """``YYMMDDhhmm`` or ``YYMMDDhhmmss`` (taken as UTC); None when malformed."""
    if not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        return datetime(
            2000 + int(value[0:2]),
            int(value[2:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[8:10]),
            int(value[10:12]) if len(value) == 12 else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_text(text: str) -> dict[str, str]:
    """The ``key:value`` fields of a text receipt, keys lower case (``text`` excluded)."""
    m = _TEXT.search(text)
    head = text[: m.start()] if m else text
    return {k.lower(): v for k, v in _FIELD.findall(head)}


def parse(pdu: Pdu, text: str) -> Receipt | None:
    """The receipt a deliver_sm carries: TLVs first, then the text; None if it has neither."""
    fields = parse_text(text) if text else {}
    message_id = tlv_cstr(pdu, TAG_RECEIPTED_MESSAGE_ID) or fields.get("id")
    if not message_id:
        return None
    state = tlv_int(pdu, TAG_MESSAGE_STATE)
    stat = STATE_WORDS.get(state, "UNKNOWN") if state is not None else fields.get("stat", "")
    if not stat:
        return None
    network = pdu.tlvs.get(TAG_NETWORK_ERROR_CODE)
    return Receipt(
        message_id=message_id,
        stat=stat.upper(),
        err=fields.get("err"),
        submit_text=fields.get("submit date", ""),
        done_text=fields.get("done date", ""),
        network_error=int.from_bytes(network, "big") if network else None,
    )


def numeric(raw: str) -> bool:
    """Whether an id (stripped, lower case) is worth reading as a number: ASCII (``"²"``
    is a digit to ``str.isdigit`` but not to ``int``) and at most :data:`MAX_NUMERIC_ID`
    characters long."""
    return len(raw) <= MAX_NUMERIC_ID and raw.isascii()


def id_forms(message_id: str) -> list[str]:
    """Every spelling of an id: as given, and read as hex ↔ decimal (lower case, no
    leading zeros). The first entry is the id as given (lower case)."""
    raw = message_id.strip().lower()
    forms = [raw]
    if not numeric(raw):
        return forms
    if raw.isdigit():
        n = int(raw)
        forms += [str(n), f"{n:x}"]
    if raw and all(c in "0123456789abcdef" for c in raw):
        n = int(raw, 16)
        forms += [f"{n:x}", str(n)]
    out: list[str] = []
    for f in forms:
        if f not in out:
            out.append(f)
    return out
