"""What the templates show of messages and conversations: contact labels, status ticks
per channel, fax progress, attachments and the WhatsApp window.

Fax messages carry their progress in ``meta["fax"]`` (``pages``, ``pages_sent``,
``phase`` — ``converting`` / ``dialling`` / ``sending`` —, ``next_try`` with
``retry_reason`` while a fax that failed for now waits for its next try, the ``tiff`` the
conversion made, and the
attachment ids ``thumbnail`` (page 1 as PNG) and ``pdf``); top-level ``meta["pages"]`` /
``meta["pages_sent"]`` are read too. Without a thumbnail a fax shows as an icon.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.models import Attachment, Channel, Direction, Message, Status, parse_iso
from gateway.portal.i18n import Formats, _, ngettext
from gateway.portal.live import contact_label
from gateway.portal.storage import Summary
from gateway.window import Window, window_at

PENDING = frozenset({Status.ACCEPTED, Status.QUEUED, Status.SENDING})
CHANNEL_NAMES = {"sms": "SMS", "whatsapp": "WhatsApp", "fax": "Fax"}


def channel_name(channel: str) -> str:
    """``SMS``, ``WhatsApp``, ``Fax``."""
    return CHANNEL_NAMES.get(channel, channel)


def fax_meta(message: Message) -> dict[str, Any]:
    """The fax section of a message's meta (see the module docstring)."""
    section = message.meta.get("fax")
    out = dict(section) if isinstance(section, dict) else {}
    for key in ("pages", "pages_sent"):
        if key not in out and key in message.meta:
            out[key] = message.meta[key]
    return out


@dataclass(slots=True)
class Tick:
    """A message's status as its channel can tell it."""

    # pending | sent | delivered | read | failed | received | progress | retry (a fax
    # that failed for now and will be tried again: no "Retry" button, it retries itself)
    kind: str
    label: str
    detail: str | None = None  # the failure's reason, the next try


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fax_progress(message: Message, fmt: Formats, live_page: int | None = None) -> Tick:
    """Converting, queued, dialling, page k of n, sent; failed for now with the reason
    and the next try (queued again); failed with the reason."""
    meta = fax_meta(message)
    pages = _int(meta.get("pages"))
    sent = _int(meta.get("pages_sent")) or 0
    if live_page is not None and message.status == Status.SENDING:
        sent = max(sent, live_page - 1)
    if message.status == Status.FAILED:
        return Tick("failed", _("Failed"), _failure(message, fmt, meta))
    if message.status in (Status.SENT, Status.DELIVERED, Status.READ):
        label = _("Sent")
        if pages:
            label = ngettext("Sent, %(num)d page", "Sent, %(num)d pages", pages) % {"num": pages}
        return Tick("sent", label)
    phase = meta.get("phase")
    if message.status == Status.SENDING and pages and (sent > 0 or phase == "sending"):
        page = min(pages, sent + 1)
        return Tick("progress", _("Page {k} of {n}").format(k=page, n=pages))
    if message.status == Status.SENDING or phase == "dialling":
        return Tick("pending", _("Dialling"))
    if message.status == Status.QUEUED and meta.get("next_try"):
        # An attempt failed for now (busy, no answer): why, and when the next one is.
        reason = meta.get("retry_reason")
        parts = [reason] if isinstance(reason, str) and reason else []
        with contextlib.suppress(ValueError):
            when = fmt.datetime(parse_iso(str(meta["next_try"])))
            parts.append(_("next try {time}").format(time=when))
        return Tick("retry", _("Failed, next try"), "; ".join(parts) or None)
    if phase == "converting" or message.status == Status.ACCEPTED or not meta.get("tiff"):
        return Tick("pending", _("Converting"))
    return Tick("pending", _("Queued"))  # converted, waiting for its send job or a line


def _failure(message: Message, fmt: Formats, meta: dict[str, Any] | None = None) -> str | None:
    error = message.error or {}
    reason = error.get("message") if isinstance(error.get("message"), str) else None
    parts = [reason] if reason else []
    next_try = (meta or {}).get("next_try") or error.get("retry_at")
    if isinstance(next_try, str):
        with contextlib.suppress(ValueError):
            parts.append(_("next try {time}").format(time=fmt.datetime(parse_iso(next_try))))
    return "; ".join(parts) or None


def tick(message: Message, fmt: Formats, live_page: int | None = None) -> Tick:
    """The status ticks of ``message`` (SMS has no read receipt; fax has pages)."""
    if message.direction == Direction.INBOUND:
        return Tick("received", _("Received"))
    if message.channel == Channel.FAX:
        return fax_progress(message, fmt, live_page)
    status = message.status
    if status == Status.FAILED:
        return Tick("failed", _("Failed"), _failure(message, fmt))
    if status in PENDING:
        return Tick("pending", _("Sending"))
    if status == Status.SENT:
        return Tick("sent", _("Sent"))
    if status == Status.DELIVERED or (status == Status.READ and message.channel == Channel.SMS):
        return Tick("delivered", _("Delivered"))
    if status == Status.READ:
        return Tick("read", _("Read"))
    return Tick("pending", status)


@dataclass(slots=True)
class AttachmentView:
    """An attachment as a bubble shows it."""

    id: str
    kind: str  # image | pdf | file
    filename: str
    size: int
    thumbnail: str | None = None  # attachment id of a preview image
    pages: int | None = None  # as the fax will carry it (before sending)


@dataclass(slots=True)
class Bubble:
    """One message in the thread."""

    message: Message
    tick: Tick
    attachments: list[AttachmentView] = field(default_factory=list)
    pages: int | None = None
    fallback_note: str | None = None

    @property
    def outbound(self) -> bool:
        """Whether the member sent it."""
        return self.message.direction == Direction.OUTBOUND


def attachment_view(att: Attachment, thumbnail: str | None = None) -> AttachmentView:
    """How to show ``att``."""
    kind = "file"
    if att.content_type in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        kind = "image"
    elif att.content_type == "application/pdf":
        kind = "pdf"
    return AttachmentView(att.id, kind, att.filename or att.id, att.size, thumbnail)


def bubble(
    message: Message,
    attachments: dict[str, Attachment],
    fmt: Formats,
    live_page: int | None = None,
) -> Bubble:
    """The bubble of ``message`` (``attachments`` by id, for its own)."""
    meta = fax_meta(message) if message.channel == Channel.FAX else {}
    thumb = meta.get("thumbnail") if isinstance(meta.get("thumbnail"), str) else None
    pdf = meta.get("pdf") if isinstance(meta.get("pdf"), str) else None
    views = []
    ids = list(message.attachments)
    if pdf and pdf not in ids:
        ids.append(pdf)
    for att_id in ids:
        att = attachments.get(att_id)
        if att is None or att_id == thumb:
            continue
        view = attachment_view(att, thumb if att.content_type == "application/pdf" else None)
        views.append(view)
    note = None
    used = message.meta.get("fallback_used")
    if isinstance(used, dict) and used.get("to") == "sms":
        note = _("Sent as SMS: the WhatsApp window was closed")
    return Bubble(message, tick(message, fmt, live_page), views, _int(meta.get("pages")), note)


def attachment_ids(messages: list[Message]) -> list[str]:
    """Every attachment the bubbles of ``messages`` may show."""
    out: list[str] = []
    for m in messages:
        out += m.attachments
        if m.channel == Channel.FAX:
            meta = fax_meta(m)
            out += [v for k in ("thumbnail", "pdf") if isinstance(v := meta.get(k), str)]
    return out


@dataclass(slots=True)
class WindowView:
    """The WhatsApp window of a conversation as the thread shows it."""

    window: Window
    now: datetime

    @property
    def open(self) -> bool:
        """Whether free-form WhatsApp messages may go."""
        return self.window.open

    @property
    def never(self) -> bool:
        """The contact never wrote on WhatsApp."""
        return self.window.expires_at is None

    @property
    def seconds_left(self) -> float:
        """Seconds until it closes (0 when closed)."""
        if not self.window.open or self.window.expires_at is None:
            return 0.0
        return max(0.0, (self.window.expires_at - self.now).total_seconds())


def window_of(last_inbound: datetime | None, now: datetime) -> WindowView:
    """The window opened by the contact's last WhatsApp message, at ``now``."""
    return WindowView(window_at(last_inbound, now), now)


def contact(summary_or_number: Summary | str, region: str) -> str:
    """The contact's WhatsApp profile name, or the number in national format at home."""
    if isinstance(summary_or_number, Summary):
        if summary_or_number.contact_name:
            return summary_or_number.contact_name
        return contact_label(summary_or_number.remote_number, region)
    return contact_label(summary_or_number, region)
