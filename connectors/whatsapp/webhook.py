"""Meta's webhook: the X-Hub-Signature-256 check and the payload → gateway objects.

Signature: ``X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256(app_secret, body)>``
over the RAW body (Meta escapes non-ASCII as ``\\u00e4``; parsing and re-serialising the
JSON would change the bytes), compared in constant time.

Parsing (:func:`parse`) walks ``entry[].changes[].value`` (``field == "messages"``) and
turns ``messages[]`` into :class:`InboundMessage` and ``statuses[]`` into
:class:`StatusReport`. It never raises on content: what it cannot use is skipped and
reported in ``Parsed.skipped`` (the caller logs it) so that one odd item never makes
Meta re-send a whole batch.

Inbound messages, normalized:

- ``from_``: the wa_id with a ``+`` (E.164); ``to``: the business number whose
  ``phone_number_id`` is ``metadata.phone_number_id`` (an unknown id skips the change);
  ``received_at``: the message's unix ``timestamp`` (a string of seconds; one that is
  unreadable or more than an hour ahead of the gateway's clock gives the time of arrival
  instead); ``channel`` ``whatsapp``; ``carrier_id``: the ``wamid``.
- ``text``: the text body, a media caption, a button's or list row's title, or a readable
  form of locations, contacts, orders, reactions and unsupported messages.
- ``attachments``: media (image, document, audio, video, sticker) as a reference (Meta's
  media id); the connector downloads it before the message is stored.
- ``meta["whatsapp"]``: ``type``; ``wa_id``; ``profile_name`` (from ``contacts``);
  ``phone_number_id``; ``reply_to`` (``context.id``, the wamid answered) and ``context``
  (raw: forwarded flags, quoted message); ``media`` (id, kind, mime_type, sha256,
  filename); ``reaction`` ({message_id, emoji}); ``errors`` (Meta's, for
  ``unsupported``); ``referral`` (Click-to-WhatsApp ads); ``raw`` (the type's own object
  for location, contacts, interactive, button, order and unknown types).

``system`` and ``request_welcome`` messages are not from the user and are skipped.
Reactions are stored as messages (text: the emoji; removing a reaction arrives as an
empty emoji, text ``(reaction removed)``): the inbox shows them, and they come from the
user.

Statuses: ``sent``/``delivered``/``read``/``failed`` map to the gateway's statuses,
``played`` (a voice message played) to ``read``; ``failed`` carries the normalized error
of :mod:`connectors.whatsapp.errors`. Other values are skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import InboundAttachment, InboundMessage, StatusReport
from connectors.whatsapp.errors import normalized, parse_status_errors

SIGNATURE_HEADER = "X-Hub-Signature-256"
MEDIA_KINDS = ("image", "document", "audio", "video", "sticker")
STATUS_MAP = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
}
SKIPPED_TYPES = frozenset({"system", "request_welcome"})
_WA_ID = re.compile(r"[1-9]\d{1,14}")
# Meta stamps an update when it happens: one stamped further ahead of our clock than this
# is taken as unreadable (now is used). Near year 9999 it would also overflow the 24-hour
# window computed from it, which broke every later read of the conversation.
MAX_AHEAD = timedelta(hours=1)


def sign(app_secret: str | bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    key = app_secret.encode() if isinstance(app_secret, str) else app_secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is Meta's signature of the raw ``body`` (constant-time)."""
    if not header:
        return False
    expected = sign(app_secret, body)
    return hmac.compare_digest(expected.encode(), header.strip().encode())


@dataclass(slots=True)
class MediaRef:
    """Inbound media Meta announced; downloaded by id before the message is stored."""

    id: str
    kind: str
    mime_type: str
    sha256: str | None = None
    filename: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As kept in the message's meta and in a job payload."""
        return {
            "id": self.id,
            "kind": self.kind,
            "mime_type": self.mime_type,
            "sha256": self.sha256,
            "filename": self.filename,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MediaRef:
        """Load what :meth:`to_dict` wrote."""
        return cls(
            str(data["id"]),
            str(data["kind"]),
            str(data["mime_type"]),
            data.get("sha256"),
            data.get("filename"),
        )


@dataclass(slots=True)
class ParsedInbound:
    """One inbound message and its media (None when it has none)."""

    message: InboundMessage
    media: MediaRef | None = None


@dataclass(slots=True)
class Parsed:
    """Everything one webhook POST carried."""

    inbound: list[ParsedInbound] = field(default_factory=list)
    statuses: list[StatusReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)  # value.errors: system/app/account level


def e164(wa_id: object) -> str | None:
    """``"16505551234"`` → ``"+16505551234"``; None when it is not a phone number."""
    text = str(wa_id).strip().lstrip("+") if isinstance(wa_id, str | int) else ""
    return f"+{text}" if _WA_ID.fullmatch(text) else None


def unix_time(value: object, now: datetime | None = None) -> datetime | None:
    """A unix timestamp in seconds (Meta sends strings) as an aware UTC datetime; None when
    unreadable or (given ``now``) more than :data:`MAX_AHEAD` in the future."""
    try:
        seconds = int(str(value))
    except (TypeError, ValueError):
        return None
    try:
        at = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return None if now is not None and at > now + MAX_AHEAD else at


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _location_text(loc: dict[str, Any]) -> str:
    where = ", ".join(str(loc[k]) for k in ("name", "address") if loc.get(k))
    coords = f"{loc.get('latitude')}, {loc.get('longitude')}"
    return f"Location: {where} ({coords})" if where else f"Location: {coords}"


def _contacts_text(cards: list[Any]) -> str:
    parts = []
    for card in cards:
        card = _dict(card)
        name = _dict(card.get("name")).get("formatted_name") or "(no name)"
        phones = [str(_dict(p).get("phone")) for p in _list(card.get("phones")) if p]
        parts.append(f"{name} {', '.join(phones)}".strip())
    return "Contact: " + "; ".join(parts) if parts else "Contact card"


def _interactive_text(obj: dict[str, Any]) -> str:
    kind = obj.get("type")
    reply = _dict(obj.get(kind)) if isinstance(kind, str) else {}
    title = reply.get("title")
    if kind == "list_reply" and title and reply.get("description"):
        return f"{title} — {reply['description']}"
    if title:
        return str(title)
    if kind == "nfm_reply":
        return str(reply.get("body") or reply.get("name") or "Form response")
    return f"[interactive reply: {kind}]"


def _text_for(kind: str, msg: dict[str, Any], wa: dict[str, Any]) -> str | None:
    """The readable text of one message; fills ``wa`` (meta) with what belongs there."""
    obj = _dict(msg.get(kind))
    if kind == "text":
        body = obj.get("body")
        return str(body) if body is not None else None
    if kind in MEDIA_KINDS:
        caption = obj.get("caption")
        return str(caption) if caption else None
    if kind == "reaction":
        emoji = obj.get("emoji") or ""
        wa["reaction"] = {"message_id": obj.get("message_id"), "emoji": emoji}
        return str(emoji) if emoji else "(reaction removed)"
    if kind == "unsupported":
        what = obj.get("type") or "unknown"
        return f"[unsupported WhatsApp message: {what}]"
    wa["raw"] = msg.get(kind)
    if kind == "location":
        return _location_text(obj)
    if kind == "contacts":
        return _contacts_text(_list(msg.get("contacts")))
    if kind == "interactive":
        return _interactive_text(obj)
    if kind == "button":
        return str(obj.get("text") or obj.get("payload") or "[button]")
    if kind == "order":
        items = _list(obj.get("product_items"))
        note = f": {obj['text']}" if obj.get("text") else ""
        return f"Order of {len(items)} item(s){note}"
    return f"[WhatsApp {kind} message]"


def _inbound(
    msg: dict[str, Any],
    *,
    connector_id: str,
    to: str,
    phone_number_id: str,
    names: Mapping[str, str],
    now: datetime,
    skipped: list[str],
) -> ParsedInbound | None:
    wamid = msg.get("id")
    kind = str(msg.get("type") or "unknown")
    if not isinstance(wamid, str) or not wamid:
        skipped.append(f"message without an id (type {kind})")
        return None
    if kind in SKIPPED_TYPES:
        skipped.append(f"{wamid}: {kind} message (not from the user)")
        return None
    sender = e164(msg.get("from"))
    if sender is None:
        skipped.append(f"{wamid}: sender {msg.get('from')!r} is not a phone number")
        return None
    received = unix_time(msg.get("timestamp"), now)
    if received is None:
        skipped.append(f"{wamid}: unreadable timestamp {msg.get('timestamp')!r}; used now")
        received = now
    wa_id = str(msg.get("from"))
    wa: dict[str, Any] = {"type": kind, "wa_id": wa_id, "phone_number_id": phone_number_id}
    if wa_id in names:
        wa["profile_name"] = names[wa_id]
    context = _dict(msg.get("context"))
    if context:
        wa["context"] = context
        if context.get("id"):
            wa["reply_to"] = context["id"]
    for extra in ("errors", "referral"):
        if msg.get(extra):
            wa[extra] = msg[extra]
    text = _text_for(kind, msg, wa)
    attachments: list[InboundAttachment] = []
    media = None
    if kind in MEDIA_KINDS:
        obj = _dict(msg.get(kind))
        if obj.get("id"):
            media = MediaRef(
                str(obj["id"]),
                kind,
                str(obj.get("mime_type") or "application/octet-stream"),
                str(obj["sha256"]) if obj.get("sha256") else None,
                str(obj["filename"]) if obj.get("filename") else None,
            )
            wa["media"] = media.to_dict()
            attachments.append(
                InboundAttachment(media.mime_type, filename=media.filename, reference=media.id)
            )
        else:
            skipped.append(f"{wamid}: {kind} without a media id; stored without it")
    message = InboundMessage(
        connector_id=connector_id,
        channel="whatsapp",
        carrier_id=wamid,
        from_=sender,
        to=to,
        text=text,
        received_at=received,
        attachments=attachments,
        meta={"whatsapp": wa},
    )
    return ParsedInbound(message, media)


def _status(
    st: dict[str, Any], *, connector_id: str, now: datetime, skipped: list[str]
) -> StatusReport | None:
    wamid, raw = st.get("id"), st.get("status")
    if not isinstance(wamid, str) or not wamid:
        skipped.append(f"status {raw!r} without a message id")
        return None
    status = STATUS_MAP.get(str(raw))
    if status is None:
        skipped.append(f"{wamid}: status {raw!r} is not tracked")
        return None
    at = unix_time(st.get("timestamp"), now) or now
    error = normalized(parse_status_errors(st.get("errors"))) if status == "failed" else None
    return StatusReport(connector_id, wamid, status, at, error)


def parse(
    doc: object, *, connector_id: str, numbers_by_id: Mapping[str, str], now: datetime
) -> Parsed:
    """Everything a webhook body (already parsed JSON) carries for this connector."""
    out = Parsed()
    if not isinstance(doc, dict) or doc.get("object") != "whatsapp_business_account":
        out.skipped.append(f"object {_dict(doc).get('object')!r} is not a WhatsApp account")
        return out
    for entry in _list(doc.get("entry")):
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            if change.get("field") != "messages":
                out.skipped.append(f"field {change.get('field')!r} is not handled")
                continue
            value = _dict(change.get("value"))
            pnid = str(_dict(value.get("metadata")).get("phone_number_id") or "")
            to = numbers_by_id.get(pnid)
            if to is None:
                out.skipped.append(f"phone_number_id {pnid!r} is not one of this connector's")
                continue
            if value.get("errors"):
                out.errors.extend(_list(value["errors"]))
            names = {
                str(c.get("wa_id")): str(_dict(c.get("profile")).get("name"))
                for c in map(_dict, _list(value.get("contacts")))
                if c.get("wa_id") and _dict(c.get("profile")).get("name")
            }
            for msg in _list(value.get("messages")):
                parsed = _inbound(
                    _dict(msg),
                    connector_id=connector_id,
                    to=to,
                    phone_number_id=pnid,
                    names=names,
                    now=now,
                    skipped=out.skipped,
                )
                if parsed is not None:
                    out.inbound.append(parsed)
            for st in _list(value.get("statuses")):
                report = _status(_dict(st), connector_id=connector_id, now=now, skipped=out.skipped)
                if report is not None:
                    out.statuses.append(report)
    return out
