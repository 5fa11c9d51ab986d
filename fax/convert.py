"""The fax channel's jobs around the core's messages (``services.ChannelJobs``).

``fax_convert`` prepares an accepted outbound fax: its cover page, text and attachments
are rendered (``render.py``, in the sandbox) into one TIFF-F, which is stored with its PDF
and a page-1 thumbnail as attachments of the message (``meta["fax"]``: ``tiff``, ``pdf``,
``thumbnail``, ``pages``); the message moves to ``queued`` and the ordinary ``send`` job is
enqueued. A document that cannot be faxed fails the message with the reason and gives its
unit back.

``fax_received`` follows every received fax: its pages as a PDF (img2pdf, losslessly) and
a page-1 thumbnail, then the mail to the member and their forwarding addresses
(``fax.mail.outgoing``), retried as a job while the relay cannot take it.

Both are safe to run again (a worker that died mid-job): each step looks at what the
message already has before doing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from fax.document_errors import DocumentError
from fax.render import (
    RenderedFax,
    combine,
    pages_to_pdf,
    render_cover_async,
    render_document_async,
    render_text_async,
    thumbnail,
)
from gateway.extensions import Host
from gateway.ids import new_id
from gateway.models import Attachment, Job, Message, Status
from gateway.store.base import StatusUpdate

log = logging.getLogger("fax.convert")

FAX = "fax"
CONVERT = "fax_convert"
RECEIVED = "fax_received"
MAX_PAGES = 50
THUMBNAIL_WIDTH = 300
CONTENT_INVALID = "content_invalid"  # connectors.base.ErrorCode.CONTENT_INVALID


class FaxJobs:
    """``services.ChannelJobs`` of the fax channel."""

    def preparation_kind(self, channel: str) -> str | None:
        """``fax_convert`` for fax."""
        return CONVERT if channel == FAX else None

    def follow_up_kinds(self, channel: str) -> Sequence[str]:
        """``fax_received`` for fax."""
        return (RECEIVED,) if channel == FAX else ()


def fax_meta(msg: Message) -> dict[str, Any]:
    """A copy of the message's ``meta["fax"]`` section."""
    section = msg.meta.get(FAX)
    return dict(section) if isinstance(section, dict) else {}


def send_job_id(message_id: str) -> str:
    """The id of a converted fax's send job: fixed, so a conversion run again after a
    crash can tell whether it already enqueued it."""
    return f"job_{message_id}_send"


async def store_attachment(
    host: Host, team_id: str, data: bytes, content_type: str, filename: str
) -> Attachment:
    """``data`` as a new attachment of ``team_id`` (blob first, then its record)."""
    sha = await asyncio.to_thread(host.blobs.put, data)
    att = Attachment(
        new_id("att"), team_id, sha, len(data), content_type, filename, host.clock.now()
    )
    await host.store.put_attachment(att)
    return att


async def render_message(host: Host, msg: Message, cover: dict[str, Any] | None) -> RenderedFax:
    """The message's fax: cover page, then its text, then its attachments, in order."""
    parts: list[RenderedFax] = []
    if msg.text:
        parts.append(await render_text_async(msg.text, max_pages=MAX_PAGES))
    for att_id in msg.attachments:
        att = await host.store.get_attachment(att_id)
        if att is None:
            raise DocumentError(f"attachment {att_id} is gone")
        data = await asyncio.to_thread(host.blobs.get, att.sha256)
        parts.append(await render_document_async(data, att.content_type, max_pages=MAX_PAGES))
    if cover is not None:
        fields = {
            "to": cover.get("to") or "",
            "sender": cover.get("from") or "",
            "subject": cover.get("subject") or "",
            "note": cover.get("note") or "",
        }
        rest = sum(p.pages for p in parts)
        page = await render_cover_async(pages=rest + 1, **fields)
        if page.pages != 1:  # a long note ran on: say the true total
            page = await render_cover_async(pages=rest + page.pages, **fields)
        parts.insert(0, page)
    if not parts:
        raise DocumentError("the fax has no pages (no text, attachment or cover)")
    return combine(parts, max_pages=MAX_PAGES)


async def convert_job(host: Host, job: Job) -> None:
    """Render an accepted outbound fax, store its pages, queue it for sending."""
    msg = await host.store.get_message(str(job.payload["message_id"]))
    if msg is None:
        return
    section = fax_meta(msg)
    if msg.status == Status.QUEUED and section.get("tiff"):
        await _enqueue_send(host, msg.id)  # converted by a run that died before this
        return
    if msg.status != Status.ACCEPTED:
        return  # failed or sent meanwhile: nothing to do
    cover = section.get("cover")
    try:
        fax = await render_message(host, msg, cover if isinstance(cover, dict) else None)
        pdf = await asyncio.to_thread(pages_to_pdf, fax.tiff)
        png = await asyncio.to_thread(thumbnail, fax.tiff, 1, THUMBNAIL_WIDTH)
    except DocumentError as exc:
        log.info("fax %s cannot be converted: %s", msg.id, exc.reason)
        await _fail(host, msg, f"the fax cannot be sent: {exc.reason}", exc.code)
        return
    except Exception as exc:
        # The renderer itself in trouble (its sandbox lost): the job is tried again with
        # backoff; at its last attempt the fax fails and its unit goes back, rather than
        # waiting "accepted" for ever.
        if job.attempts < job.max_attempts:
            raise
        log.exception("fax %s: conversion failed %d times", msg.id, job.attempts)
        await _fail(host, msg, f"the fax could not be converted ({type(exc).__name__})", None)
        return
    tiff_att = await store_attachment(host, msg.team_id, fax.tiff, "image/tiff", "fax.tif")
    pdf_att = await store_attachment(host, msg.team_id, pdf, "application/pdf", "fax.pdf")
    png_att = await store_attachment(host, msg.team_id, png, "image/png", "page-1.png")
    section.update(
        pages=fax.pages,
        pages_sent=0,
        tiff=tiff_att.id,
        pdf=pdf_att.id,
        thumbnail=png_att.id,
        resolution=fax.resolution,
    )
    update = StatusUpdate(
        status=Status.QUEUED,
        meta={FAX: section},
        attachments=(tiff_att.id, pdf_att.id, png_att.id),
    )
    await host.store.update_message(msg.id, update, host.clock.now())
    await _enqueue_send(host, msg.id)


async def _fail(host: Host, msg: Message, reason: str, code: str | None) -> None:
    """The fax failed before it was sent: say why, give its unit back."""
    error: dict[str, object] = {"code": CONTENT_INVALID, "message": reason, "carrier_code": code,
             "retryable": False}  # fmt: skip
    update = StatusUpdate(status=Status.FAILED, error=error, release=True)
    await host.store.update_message(msg.id, update, host.clock.now())


async def _enqueue_send(host: Host, message_id: str) -> None:
    job_id = send_job_id(message_id)
    if await host.store.get_job(job_id) is not None:
        return
    now = host.clock.now()
    attempts = host.settings.job_max_attempts
    job = Job(job_id, "send", {"message_id": message_id}, now, attempts, created_at=now)
    await host.store.enqueue(job)
    host.wake_workers()


async def received_pages(host: Host, msg: Message) -> tuple[dict[str, Any], bytes, bytes] | None:
    """A received fax's ``meta["fax"]``, PDF and page-1 PNG, made and stored with the
    message the first time (None: the message carries no TIFF pages)."""
    section = fax_meta(msg)
    if section.get("pdf") and section.get("thumbnail"):
        pdf_att = await host.store.get_attachment(str(section["pdf"]))
        png_att = await host.store.get_attachment(str(section["thumbnail"]))
        if pdf_att is not None and png_att is not None:
            pdf = await asyncio.to_thread(host.blobs.get, pdf_att.sha256)
            png = await asyncio.to_thread(host.blobs.get, png_att.sha256)
            return section, pdf, png
    tiff_att = None
    for att_id in msg.attachments:
        att = await host.store.get_attachment(att_id)
        if att is not None and att.content_type == "image/tiff":
            tiff_att = att
            break
    if tiff_att is None:
        return None
    data = await asyncio.to_thread(host.blobs.get, tiff_att.sha256)
    pdf = await asyncio.to_thread(pages_to_pdf, data)
    png = await asyncio.to_thread(thumbnail, data, 1, THUMBNAIL_WIDTH)
    pdf_att = await store_attachment(host, msg.team_id, pdf, "application/pdf", "fax.pdf")
    png_att = await store_attachment(host, msg.team_id, png, "image/png", "page-1.png")
    section.update(tiff=tiff_att.id, pdf=pdf_att.id, thumbnail=png_att.id)
    update = StatusUpdate(meta={FAX: section}, attachments=(pdf_att.id, png_att.id))
    await host.store.update_message(msg.id, update, host.clock.now())
    return section, pdf, png


async def received_job(host: Host, job: Job) -> None:
    """A received fax as PDF and thumbnail, then mailed (``fax.mail.outgoing``)."""
    from fax.mail.outgoing import mail_received_fax

    msg = await host.store.get_message(str(job.payload["message_id"]))
    if msg is None:
        return
    made = await received_pages(host, msg)
    if made is None:
        log.warning("received fax %s has no TIFF pages; nothing to mail", msg.id)
        return
    section, pdf, png = made
    await mail_received_fax(host, job, msg, section, pdf, png)


