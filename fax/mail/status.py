"""Status mails to the sender of an email-to-fax: accepted (with its pages, once it is
converted), not sent yet (after each failed attempt that will be tried again: the reason
and the next try, from the ``message.status`` event of its move back to ``queued``, whose
``fax`` shows ``next_try`` and ``retry_reason``), sent (the report, page 1 inline, the
PDF), failed (the reason).

The watcher (:func:`watch`, part of the ``fax_mail`` background service) follows the
store's event log from a cursor kept in the settings (``fax_mail_status_cursor``): a
``message.status`` event of a fax that came by mail (it has an origin document,
``intake.ORIGIN``) becomes a ``fax_mail_status`` job; the job sends the mail through the
``[smtp]`` relay (``outgoing.deliver``, retried while the relay cannot take it) and notes
it in the origin document, so each kind of mail goes out once per fax (a "not sent yet"
mail once per retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fax.mail import outgoing
from fax.mail.intake import ORIGIN
from gateway.events import MESSAGE_STATUS
from gateway.extensions import Host
from gateway.models import Job

log = logging.getLogger("fax.mail")

JOB_KIND = "fax_mail_status"
CURSOR = "fax_mail_status_cursor"
BATCH = 500
KINDS = {"queued": "accepted", "sent": "sent", "failed": "failed"}


async def scan(host: Host) -> int:
    """Turn the new events into status mail jobs; how many jobs were enqueued."""
    cursor_doc = await host.store.get_setting(CURSOR) or {}
    cursor = int(cursor_doc.get("seq", 0))
    enqueued = 0
    while True:
        events = await host.store.list_events(cursor, BATCH)
        if not events:
            break
        for event in events:
            data = event.data
            kind = KINDS.get(str(data.get("status")))
            if (event.type != MESSAGE_STATUS or kind is None or data.get("channel") != "fax"
                    or data.get("direction") != "outbound"):  # fmt: skip
                continue
            message_id = str(data.get("id"))
            if await host.store.get_setting(ORIGIN.format(message_id)) is None:
                continue  # not a fax that came by mail
            payload: dict[str, object] = {"message_id": message_id, "kind": kind}
            fax = data.get("fax")
            fax = fax if isinstance(fax, dict) else {}
            if kind == "accepted" and fax.get("next_try"):
                # Back to queued after a failed attempt: one mail per retry, with the
                # reason and the time of the next try as the event saw them.
                dials = fax.get("dials", 0)
                payload.update(kind="retry", key=f"retry-{dials}", next_try=fax["next_try"],
                               reason=fax.get("retry_reason") or "the call failed")
            key = str(payload.get("key", payload["kind"]))
            job_id = f"job_faxstatus_{message_id}_{key}"
            if await host.store.get_job(job_id) is None:
                now = host.clock.now()
                attempts = host.settings.job_max_attempts
                await host.store.enqueue(Job(job_id, JOB_KIND, payload, now, attempts,
                                             created_at=now))  # fmt: skip
                enqueued += 1
        cursor = events[-1].seq
        await host.store.put_setting(CURSOR, {"seq": cursor})
    if enqueued:
        host.wake_workers()
    return enqueued


async def watch(host: Host, stop: asyncio.Event, interval: float = 1.0) -> None:
    """``scan`` every ``interval`` seconds until ``stop``; store trouble is logged."""
    while not stop.is_set():
        try:
            await scan(host)
        except Exception:
            log.exception("fax mail status: scanning the event log failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _blob_of(host: Host, attachment_id: object) -> bytes | None:
    if not attachment_id:
        return None
    att = await host.store.get_attachment(str(attachment_id))
    if att is None:
        return None
    return await asyncio.to_thread(host.blobs.get, att.sha256)


async def status_job(host: Host, job: Job) -> None:
    """Send one status mail about a fax that came by mail (once per kind)."""
    p = job.payload
    message_id, kind = str(p["message_id"]), str(p["kind"])
    key = str(p.get("key", kind))
    scope = ORIGIN.format(message_id)
    origin = await host.store.get_setting(scope)
    msg = await host.store.get_message(message_id)
    if origin is None or msg is None or key in origin.get("mailed", []):
        return
    retry = (str(p["reason"]), str(p["next_try"])) if kind == "retry" else None
    smtp = host.settings.smtp
    sender = smtp.sender if smtp else "gateway@localhost"
    pdf = png = None
    if kind == "sent":
        section = msg.meta.get("fax") if isinstance(msg.meta.get("fax"), dict) else {}
        assert isinstance(section, dict)
        pdf = await _blob_of(host, section.get("pdf"))
        png = await _blob_of(host, section.get("thumbnail"))
    email = outgoing.status_email(host, msg, kind, str(origin["sender"]), sender, pdf, png,
                                  retry=retry)  # fmt: skip
    if await outgoing.deliver(host, job, email, f"{key} mail about fax {message_id}"):
        origin["mailed"] = [*origin.get("mailed", []), key]
        await host.store.put_setting(scope, origin)

