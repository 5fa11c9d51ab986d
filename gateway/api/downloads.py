"""Serving a stored attachment's bytes safely: the one helper of the API's download
(``GET /v1/attachments/{id}/content``) and the portal's (``GET /a/{id}``).

The filename and the content type come from whoever uploaded the file (an API client, a
WhatsApp contact), so neither is trusted:

- ``Content-Disposition`` is written per RFC 6266 with RFC 5987's ``filename*``: an ASCII
  fallback in a quoted string from which quotes, backslashes and control characters are
  gone (a ``"`` in a name cannot close the string and inject a second parameter), and the
  real name percent-encoded as UTF-8 (a name outside Latin-1 such as "Счёт №1.pdf" cannot
  break the header either);
- a type that a browser would run or render as a page (HTML, SVG, XML, JavaScript, and
  anything not known to be passive) is served as ``application/octet-stream`` and always
  as an attachment; ``X-Content-Type-Options: nosniff`` keeps the browser from guessing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from urllib.parse import quote

from starlette.responses import Response

from gateway.models import Attachment

SAFE_FALLBACK = "application/octet-stream"
# Images a browser shows as a picture (never SVG: an SVG document runs scripts).
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Text types a browser shows as text or downloads; every other text/* (html, xml,
# javascript, css …) is served as bytes.
_PASSIVE_TEXT = frozenset({"text/plain", "text/csv", "text/vcard", "text/x-vcard", "text/calendar"})
_PASSIVE_TOP = frozenset({"image", "audio", "video", "application", "font"})
_ACTIVE_MARKS = ("html", "xml", "svg", "script", "javascript", "ecmascript", "x-shockwave")
# RFC 5987 attr-char beyond letters and digits (quote() keeps "_.-~" itself).
_ATTR_CHAR = "!#$&+^`|"


def base_type(content_type: str) -> str:
    """The type without parameters, lower case: ``Text/HTML; charset=x`` → ``text/html``."""
    return content_type.split(";", 1)[0].strip().lower()


def served_type(content_type: str) -> str:
    """The type to serve bytes of ``content_type`` with: the declared one when it is
    passive, else ``application/octet-stream``."""
    if not content_type.isascii() or not content_type.isprintable():
        return SAFE_FALLBACK  # a header value must not carry control characters
    base = base_type(content_type)
    top, _, sub = base.partition("/")
    if not sub or any(mark in base for mark in _ACTIVE_MARKS):
        return SAFE_FALLBACK
    if top == "text":
        return content_type if base in _PASSIVE_TEXT else SAFE_FALLBACK
    return content_type if top in _PASSIVE_TOP else SAFE_FALLBACK


def ascii_fallback(filename: str) -> str:
    """``filename`` in printable ASCII without ``"``, ``\\``, ``/`` or control characters
    (accents dropped, other letters as ``_``); ``download`` when nothing is left."""
    decomposed = unicodedata.normalize("NFKD", filename)
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        out.append(ch if " " <= ch <= "~" and ch not in '"\\/' else "_")
    name = "".join(out).strip(" .")
    return name if name.strip("_") else "download"


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """The RFC 6266 header: ``disposition; filename="<ascii>"; filename*=UTF-8''<name>``."""
    fallback = ascii_fallback(filename)
    encoded = quote(filename, safe=_ATTR_CHAR, encoding="utf-8")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def download(
    att: Attachment,
    data: bytes,
    *,
    inline: frozenset[str] = frozenset(),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The response serving ``data`` of ``att``: shown in the browser only when its type is
    one of ``inline`` (and passive), otherwise as an attachment to save."""
    media_type = served_type(att.content_type)
    shown = base_type(media_type) in inline and media_type != SAFE_FALLBACK
    out = {
        "Content-Disposition": content_disposition(
            att.filename or att.id, "inline" if shown else "attachment"
        ),
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{att.sha256}"',
        **(headers or {}),
    }
    return Response(data, 200, headers=out, media_type=media_type)
