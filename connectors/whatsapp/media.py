"""WhatsApp media: the documented type and size limits, upload, and the two-step download.

Limits (checked before anything is uploaded; 1 MB = 1024 * 1024 bytes):

========  ===================================================================  ========
kind      MIME types                                                           max
========  ===================================================================  ========
image     image/jpeg, image/png                                                5 MB
audio     audio/aac, audio/amr, audio/mpeg, audio/mp4, audio/ogg (Opus)        16 MB
video     video/mp4, video/3gpp (video/3gp)                                    16 MB
document  application/pdf, text/plain, MS Word/Excel/PowerPoint (old and OOXML) 100 MB
sticker   image/webp                                                           100 KB,
                                                                               500 KB
                                                                               animated
========  ===================================================================  ========

Upload: ``POST {graph}/{phone_number_id}/media`` multipart (``messaging_product``,
``type``, ``file``) → ``{"id"}``; the message is then sent by that id.

Download (inbound media): ``GET {graph}/{media_id}`` with the Bearer token →
``{"url", "mime_type", "sha256", "file_size"}``, then ``GET url`` with the same token.
The URL lives five minutes: a 404 fetches a fresh one (up to ``URL_ROUNDS`` times). The
bytes must match the announced ``file_size`` and ``sha256`` (hex from the media endpoint,
or base64 from the webhook when the endpoint gave none) — a mismatch is refused
(``MediaRefused``), never stored. So is a media id or download URL that makes no URL
(the token is never sent to it). ``download`` raises nothing but ``ConnectorError``s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.base import (
    ConnectorError,
    ErrorCode,
    OutboundAttachment,
    PermanentError,
    RetryableError,
)
from connectors.whatsapp.errors import NETWORK, TIMEOUT, exception_for, parse_graph_error
from gateway import jsoncodec

log = logging.getLogger("connectors.whatsapp.media")

MB = 1024 * 1024
KB = 1024
IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
AUDIO_TYPES = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
VIDEO_TYPES = frozenset({"video/mp4", "video/3gpp", "video/3gp"})
DOCUMENT_TYPES = frozenset(
    {
        "application/pdf",
        "text/plain",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)
STICKER_TYPES = frozenset({"image/webp"})
MAX_BYTES = {
    "image": 5 * MB,
    "audio": 16 * MB,
    "video": 16 * MB,
    "document": 100 * MB,
    "sticker": 100 * KB,
}
ANIMATED_STICKER_BYTES = 500 * KB
MAX_CAPTION = 1024
# Kinds that carry a caption (audio and stickers do not).
CAPTIONED = frozenset({"image", "video", "document"})
URL_ROUNDS = 3
DEFAULT_DOWNLOAD_MAX = 100 * MB


class MediaRefused(PermanentError):
    """Media that must not be sent or stored: wrong type, too large, or corrupt."""

    def __init__(self, message: str, *, carrier_code: str | None = None) -> None:
        super().__init__(message, code=ErrorCode.CONTENT_INVALID, carrier_code=carrier_code)


def base_type(content_type: str) -> str:
    """``audio/ogg; codecs=opus`` → ``audio/ogg``."""
    return content_type.split(";", 1)[0].strip().lower()


def kind_of(content_type: str) -> str | None:
    """The WhatsApp message type that carries this MIME type, or None."""
    ctype = base_type(content_type)
    for kind, types in (
        ("image", IMAGE_TYPES),
        ("audio", AUDIO_TYPES),
        ("video", VIDEO_TYPES),
        ("document", DOCUMENT_TYPES),
        ("sticker", STICKER_TYPES),
    ):
        if ctype in types:
            return kind
    return None


def is_animated_webp(head: bytes) -> bool:
    """Whether WebP bytes declare animation (VP8X chunk with the animation flag)."""
    return (
        len(head) >= 21
        and head[:4] == b"RIFF"
        and head[8:12] == b"WEBP"
        and head[12:16] == b"VP8X"
        and bool(head[20] & 0x02)
    )


def check_outbound(att: OutboundAttachment, data: bytes) -> str:
    """Check an attachment against WhatsApp's limits; returns its kind or raises."""
    kind = kind_of(att.content_type)
    if kind is None:
        raise MediaRefused(
            f"WhatsApp cannot send {att.content_type!r}: images (JPEG, PNG), audio (AAC, AMR, "
            "MP3, M4A, OGG/Opus), video (MP4, 3GPP), documents (PDF, text, Office) and WebP "
            "stickers only"
        )
    if len(data) != att.size or hashlib.sha256(data).hexdigest() != att.sha256:
        raise MediaRefused(
            f"attachment {att.id} does not match its stored size and SHA-256 (corrupt blob)"
        )
    limit = MAX_BYTES[kind]
    if kind == "sticker" and is_animated_webp(data[:32]):
        limit = ANIMATED_STICKER_BYTES
    if len(data) > limit:
        raise MediaRefused(
            f"{kind} of {len(data)} bytes is over WhatsApp's limit of {limit} bytes "
            f"for {base_type(att.content_type)}"
        )
    return kind


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _json(response: httpx.Response) -> Any:
    try:
        return jsoncodec.loads_external(response.content)
    except ValueError:
        return None


def graph_failure(response: httpx.Response) -> ConnectorError:
    """The connector error of a non-2xx Graph API answer."""
    return exception_for(parse_graph_error(response.status_code, _json(response)))


def transport_failure(exc: httpx.HTTPError) -> RetryableError:
    """The connector error of a request that got no answer."""
    rule = TIMEOUT if isinstance(exc, httpx.TimeoutException) else NETWORK
    return RetryableError(f"{rule.what}: {type(exc).__name__}: {exc}", code=rule.code)


async def upload(
    http: httpx.AsyncClient,
    graph_url: str,
    token: str,
    phone_number_id: str,
    data: bytes,
    content_type: str,
    filename: str | None,
) -> str:
    """Upload media for ``phone_number_id``; returns Meta's media id."""
    try:
        response = await http.post(
            f"{graph_url}/{phone_number_id}/media",
            headers=_bearer(token),
            data={"messaging_product": "whatsapp", "type": base_type(content_type)},
            files={"file": (filename or "file", data, base_type(content_type))},
        )
    except httpx.HTTPError as exc:
        raise transport_failure(exc) from exc
    if response.status_code >= 300:
        raise graph_failure(response)
    body = _json(response)
    media_id = body.get("id") if isinstance(body, dict) else None
    if not media_id:
        raise RetryableError(f"media upload answered without an id: {response.text[:200]}")
    return str(media_id)


@dataclass(frozen=True, slots=True)
class Downloaded:
    """Media bytes fetched from Meta, checked against the announced size and hash."""

    data: bytes
    content_type: str
    sha256: str


def digest_matches(expected: str, digest: bytes) -> bool:
    """Whether ``expected`` (hex or base64, as Meta writes it) names ``digest``."""
    text = expected.strip()
    if len(text) == 64:
        try:
            return hmac.compare_digest(bytes.fromhex(text), digest)
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == len(digest):
            return hmac.compare_digest(raw, digest)
    return False


def _url_allowed(url: str, graph_url: str) -> bool:
    # The Bearer token goes with the download: only over https, or to the very host of a
    # plain-http Graph URL (a local simulator).
    try:
        httpx.URL(url)  # one httpx could not request is no URL to send a token to either
        parts, graph = urlsplit(url), urlsplit(graph_url)
    except (ValueError, httpx.InvalidURL):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and graph.scheme == "http" and parts.netloc == graph.netloc


async def download(
    http: httpx.AsyncClient,
    graph_url: str,
    token: str,
    media_id: str,
    *,
    webhook_sha256: str | None = None,
    max_bytes: int = DEFAULT_DOWNLOAD_MAX,
) -> Downloaded:
    """Fetch inbound media in two steps; raises ``MediaRefused`` for bad bytes."""
    for round_ in range(1, URL_ROUNDS + 1):
        try:
            meta_resp = await http.get(f"{graph_url}/{media_id}", headers=_bearer(token))
        except httpx.HTTPError as exc:
            raise transport_failure(exc) from exc
        except httpx.InvalidURL:  # a control character in the webhook's media id
            raise MediaRefused(f"media id {media_id!r} makes no URL") from None
        if meta_resp.status_code >= 300:
            raise graph_failure(meta_resp)
        info = _json(meta_resp)
        if not isinstance(info, dict) or not isinstance(info.get("url"), str):
            raise RetryableError(f"media {media_id}: no url in {meta_resp.text[:200]}")
        url: str = info["url"]
        if not _url_allowed(url, graph_url):
            raise MediaRefused(f"media {media_id}: refusing to send the token to {url!r}")
        size = str(info.get("file_size"))
        # ASCII digits only ("²".isdigit() holds), and few enough for int() (4,300 at most)
        announced = int(size) if size.isascii() and size.isdigit() and len(size) < 19 else None
        if announced is not None and announced > max_bytes:
            raise MediaRefused(f"media {media_id} has {announced} bytes, over {max_bytes}")
        try:
            async with http.stream("GET", url, headers=_bearer(token)) as response:
                if response.status_code == 404:
                    log.info("media %s: URL expired (404), fetching a fresh one", media_id)
                    continue
                if response.status_code >= 300:
                    await response.aread()
                    raise graph_failure(response)
                chunks, total = [], 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise MediaRefused(f"media {media_id} is larger than {max_bytes} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise transport_failure(exc) from exc
        data = b"".join(chunks)
        digest = hashlib.sha256(data)
        if announced is not None and len(data) != announced:
            raise MediaRefused(
                f"media {media_id}: got {len(data)} bytes, Meta announced {announced}"
            )
        expected = info.get("sha256") or webhook_sha256
        if expected and not digest_matches(str(expected), digest.digest()):
            raise MediaRefused(f"media {media_id}: SHA-256 mismatch (expected {expected})")
        ctype = str(info.get("mime_type") or response.headers.get("content-type") or "")
        log.debug("media %s: %d bytes in round %d", media_id, len(data), round_)
        return Downloaded(data, ctype or "application/octet-stream", digest.hexdigest())
    raise RetryableError(f"media {media_id}: the download URL answered 404 {URL_ROUNDS} times")
