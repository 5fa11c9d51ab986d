"""``DocumentPreview`` (``gateway/services.py``): what a document will fax as — its page
count and page 1 as a PNG — rendered exactly as the fax channel renders it
(``render.py``), for front doors that show it before sending (the portal's composer)."""

from __future__ import annotations

from fax.document_errors import DocumentError
from fax.render import render_document_async, thumbnail
from gateway.errors import ValidationError
from gateway.services import PagePreview

THUMBNAIL_WIDTH = 240


class FaxPreview:
    """Renders documents (in the renderer's sandbox, off the event loop)."""

    async def preview(self, data: bytes, content_type: str) -> PagePreview:
        """Page count and page-1 thumbnail, or ``ValidationError`` with the reason."""
        try:
            rendered = await render_document_async(data, content_type)
        except DocumentError as exc:
            raise ValidationError(exc.reason, code=exc.code, field="files") from None
        return PagePreview(rendered.pages, thumbnail(rendered.tiff, 1, THUMBNAIL_WIDTH))
