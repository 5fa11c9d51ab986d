"""The composer's routes: its partial, the live preview (which also keeps the draft),
sending, retrying a failed message, and fax files."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, NotFound, ValidationError
from gateway.extensions import service
from gateway.ids import new_id
from gateway.models import Attachment, Channel, Direction, Status
from gateway.portal import compose, i18n
from gateway.portal.accounts import Viewer
from gateway.portal.routes.thread import conversation_of, messages_context
from gateway.portal.security import Form, read_form
from gateway.portal.storage import Draft
from gateway.portal.views import AttachmentView, attachment_view
from gateway.portal.web import Portal, is_htmx, portal_of, render, see_other, viewer_of
from gateway.services import DOCUMENT_PREVIEW

MAX_FAX_FILES = 10
FAX_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/tiff"})


async def composer(request: Request) -> Response:
    """GET /c/{id}/composer?channel=…: the composer (a channel switch, the window closing)."""
    portal, viewer, conv = await conversation_of(request)
    text = request.query_params.get("text")
    context = await compose.composer_context(
        portal,
        viewer,
        conv,
        request.query_params.get("channel"),
        None,
        text[:10_000] if text else None,
    )
    return render(request, "_composer.html", {"c": context})


async def preview(request: Request) -> Response:
    """POST /c/{id}/preview: what the text costs; the text is kept as the draft."""
    portal, viewer, conv = await conversation_of(request)
    form = await read_form(request)
    text = str(form.get("text") or "")[:10_000]
    channel = str(form.get("channel") or "")
    if channel not in compose.channels_of(viewer, conv):
        channel = compose.channels_of(viewer, conv)[0] if compose.channels_of(viewer, conv) else ""
    await portal.store.put_draft(
        Draft(viewer.member.id, conv.id, text, channel or None, portal.rt.clock.now())
    )
    result = await compose.preview(portal, viewer, conv, channel, text) if channel else None
    return render(request, "_preview.html", {"preview": result})


async def _store(portal: Portal, team_id: str, data: bytes, ctype: str, name: str) -> Attachment:
    sha = portal.rt.blobs.put(data)
    att = Attachment(new_id("att"), team_id, sha, len(data), ctype, name, portal.rt.clock.now())
    await portal.rt.store.put_attachment(att)
    return att


async def _store_files(
    portal: Portal, viewer: Viewer, form: Form
) -> list[tuple[Attachment, bytes]]:
    files = form.files("files")
    if len(files) > MAX_FAX_FILES:
        raise ValidationError(i18n._("At most 10 files per fax."), field="files")
    for upload in files:
        if upload.content_type not in FAX_TYPES:
            raise ValidationError(
                i18n._("{name}: only PDF, PNG, JPEG and TIFF files can be faxed.").format(
                    name=upload.filename
                ),
                field="files",
            )
        if not upload.data:
            raise ValidationError(
                i18n._("{name} is empty.").format(name=upload.filename), field="files"
            )
    return [
        (await _store(portal, viewer.team.id, u.data, u.content_type, u.filename), u.data)
        for u in files
    ]


async def _previews(
    portal: Portal, viewer: Viewer, stored: list[tuple[Attachment, bytes]]
) -> list[AttachmentView]:
    """The files as the fax will carry them: page count and page 1, rendered by the fax
    channel's ``DocumentPreview`` service when one is installed (else images show
    themselves and documents an icon)."""
    renderer = service(portal.rt, DOCUMENT_PREVIEW)
    views = []
    for att, data in stored:
        view = attachment_view(att)
        if renderer is not None:
            try:
                pages = await renderer.preview(data, att.content_type)
            except ValidationError as exc:
                raise ValidationError(f"{att.filename}: {exc.detail}", field="files") from None
            thumb = await _store(
                portal, viewer.team.id, pages.thumbnail_png, "image/png", f"{att.filename}.png"
            )
            view.thumbnail, view.pages = thumb.id, pages.pages
        views.append(view)
    return views


def _upload_limit(portal: Portal) -> int:
    return MAX_FAX_FILES * portal.rt.settings.max_attachment_bytes + 256 * 1024


async def fax_files(request: Request) -> Response:
    """POST /c/{id}/fax/files: store the chosen files and show them before sending."""
    portal, viewer, _ = await conversation_of(request)
    form = await read_form(request, _upload_limit(portal))
    try:
        files = await _previews(portal, viewer, await _store_files(portal, viewer, form))
    except GatewayError as exc:
        return render(request, "_fax_files.html", {"files": [], "error": exc}, 422)
    return render(request, "_fax_files.html", {"files": files, "error": None})


async def _thread_update(
    request: Request,
    portal: Portal,
    viewer: Viewer,
    conv: Any,
    error: GatewayError | None,
    text: str | None,
    channel: str | None,
) -> Response:
    context = await messages_context(request, portal, viewer, conv, None)
    context["c"] = await compose.composer_context(portal, viewer, conv, channel, error, text)
    return render(request, "_thread_update.html", context, 422 if error else 200)


async def send(request: Request) -> Response:
    """POST /c/{id}/send: send the composer's message (text, template, fax files)."""
    portal, viewer, conv = await conversation_of(request)
    form = await read_form(request, _upload_limit(portal))
    channel = str(form.get("channel") or "")
    if form.get("as_sms") == "1":
        channel = Channel.SMS.value  # "Send as SMS" once the WhatsApp window closed
    text = str(form.get("text") or "")
    error: GatewayError | None = None
    try:
        if channel not in compose.channels_of(viewer, conv):
            raise ValidationError(i18n._("Choose one of your channels."), field="channel")
        template = None
        wanted = str(form.get("template") or "") if form.get("send_template") else ""
        if wanted:
            template = next(
                (t for t in portal.settings.templates if f"{t.name}:{t.language}" == wanted), None
            )
            if template is None or channel != Channel.WHATSAPP:
                raise ValidationError(
                    i18n._("Choose one of the offered templates."), field="template"
                )
            text = ""
        attachments = form.getlist("attachment")
        if channel == Channel.FAX:
            if not attachments:
                # Without script the files come with the send; with it they were stored
                # (and shown) already and only their ids come.
                attachments = [a.id for a, _ in await _store_files(portal, viewer, form)]
        elif attachments:
            raise ValidationError(i18n._("Only a fax takes files here."), field="files")
        if not text.strip() and template is None and not attachments:
            raise ValidationError(i18n._("Write a message first."), field="text")
        command = compose.send_request(
            channel, conv.member_number, conv.remote_number, text or None, attachments, template
        )
        nonce = form.get("nonce")
        await compose.send(portal, viewer, command, str(nonce) if nonce else None)
    except GatewayError as exc:
        error = exc
    else:
        await portal.store.put_draft(
            Draft(viewer.member.id, conv.id, "", None, portal.rt.clock.now())
        )
        text = ""
    if not is_htmx(request):
        if error is not None:
            context = {"status": 422, "error": error, "back": f"/c/{conv.id}"}
            return render(request, "error.html", context, 422)
        return see_other(f"/c/{conv.id}?channel={channel}")
    return await _thread_update(
        request, portal, viewer, conv, error, text if error else "", channel
    )


async def retry(request: Request) -> Response:
    """POST /m/{id}/retry: send a failed message again (as a new message)."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    await read_form(request)
    msg = await portal.rt.store.get_message(request.path_params["id"])
    if (
        msg is None
        or msg.team_id != viewer.team.id
        or msg.member_id != viewer.member.id
        or msg.direction != Direction.OUTBOUND
    ):
        raise NotFound("message not found")
    conv = await portal.rt.store.get_conversation(msg.conversation_id)
    if conv is None:
        raise NotFound("conversation not found")
    error: GatewayError | None = None
    if msg.status == Status.FAILED:
        try:
            await compose.send(portal, viewer, compose.retry_request(msg))
        except GatewayError as exc:
            error = exc
        else:
            await portal.store.clear_failed(conv.id, msg.id)
    if not is_htmx(request):
        if error is not None:
            return render(
                request, "error.html", {"status": 422, "error": error, "back": f"/c/{conv.id}"}, 422
            )
        return see_other(f"/c/{conv.id}")
    return await _thread_update(request, portal, viewer, conv, error, None, None)
