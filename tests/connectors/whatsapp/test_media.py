"""Media limits, upload and the two-step download, against the simulator."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest

from connectors.base import AuthError, OutboundAttachment, RetryableError
from connectors.whatsapp import media
from connectors.whatsapp.media import MediaRefused, check_outbound, digest_matches, kind_of
from connectors.whatsapp.simulator import WhatsAppSimulator
from gateway.clock import FrozenClock
from tests.connectors.whatsapp.conftest import META_PNID

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


def attachment(tmp_path: Path, data: bytes, ctype: str, name: str = "f") -> OutboundAttachment:
    path = tmp_path / name
    path.write_bytes(data)
    return OutboundAttachment(
        "att_1", str(path), ctype, len(data), hashlib.sha256(data).hexdigest(), name
    )


def webp(animated: bool, size: int) -> bytes:
    flags = 0x02 if animated else 0x00
    head = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WEBPVP8X" + b"\x0a\x00\x00\x00"
    head += bytes([flags])
    return head + b"\x00" * (size - len(head))


@pytest.mark.parametrize(
    ("ctype", "kind"),
    [
        ("image/jpeg", "image"),
        ("image/png", "image"),
        ("audio/ogg; codecs=opus", "audio"),
        ("audio/mpeg", "audio"),
        ("video/mp4", "video"),
        ("video/3gpp", "video"),
        ("application/pdf", "document"),
        ("text/plain", "document"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "document"),
        ("image/webp", "sticker"),
        ("image/gif", None),
        ("application/zip", None),
    ],
)
def test_kind_of(ctype: str, kind: str | None) -> None:
    assert kind_of(ctype) == kind


def test_limits_are_checked_per_kind(tmp_path: Path) -> None:
    assert check_outbound(attachment(tmp_path, JPEG, "image/jpeg"), JPEG) == "image"
    big = b"\xff" * (5 * media.MB + 1)
    with pytest.raises(MediaRefused, match=r"image of 5242881 bytes is over .* 5242880"):
        check_outbound(attachment(tmp_path, big, "image/jpeg"), big)
    at_limit = b"\x00" * (16 * media.MB)
    assert check_outbound(attachment(tmp_path, at_limit, "video/mp4"), at_limit) == "video"
    with pytest.raises(MediaRefused, match="cannot send 'image/gif'"):
        check_outbound(attachment(tmp_path, b"GIF89a", "image/gif"), b"GIF89a")


def test_stickers_static_100kb_animated_500kb(tmp_path: Path) -> None:
    static = webp(False, 150 * 1024)
    with pytest.raises(MediaRefused, match="sticker"):
        check_outbound(attachment(tmp_path, static, "image/webp"), static)
    animated = webp(True, 150 * 1024)
    assert check_outbound(attachment(tmp_path, animated, "image/webp"), animated) == "sticker"
    huge = webp(True, 600 * 1024)
    with pytest.raises(MediaRefused):
        check_outbound(attachment(tmp_path, huge, "image/webp"), huge)


def test_a_blob_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    att = attachment(tmp_path, JPEG, "image/jpeg")
    with pytest.raises(MediaRefused, match="corrupt blob"):
        check_outbound(att, JPEG[:-1] + b"\x00")


def test_digest_matches_hex_and_base64() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert digest_matches(digest.hex(), digest)
    assert digest_matches(base64.b64encode(digest).decode(), digest)
    assert digest_matches(base64.urlsafe_b64encode(digest).decode().rstrip("="), digest)
    assert not digest_matches(hashlib.sha256(b"abd").hexdigest(), digest)
    assert not digest_matches("not a digest", digest)


pytestmark = pytest.mark.anyio


async def test_upload_then_two_step_download(
    sim: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    token = sim.access_token
    media_id = await media.upload(
        http, sim.graph_url, token, META_PNID, JPEG, "image/jpeg", "photo.jpg"
    )
    assert sim.media[media_id].data == JPEG
    got = await media.download(http, sim.graph_url, token, media_id)
    assert got.data == JPEG and got.content_type == "image/jpeg"
    assert got.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert sim.url_requests == 1


async def test_a_fresh_url_after_404(sim: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    sim.expire_next_urls = 2
    got = await media.download(http, sim.graph_url, sim.access_token, media_id)
    assert got.data == JPEG and sim.url_requests == 3
    sim.expire_next_urls = 3
    with pytest.raises(RetryableError, match="answered 404 3 times"):
        await media.download(http, sim.graph_url, sim.access_token, media_id)


async def test_urls_expire_after_five_minutes(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, clock: FrozenClock
) -> None:
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    auth = {"Authorization": f"Bearer {sim.access_token}"}
    info = (await http.get(f"{sim.graph_url}/{media_id}", headers=auth)).json()
    assert info["sha256"] == hashlib.sha256(JPEG).hexdigest() and info["file_size"] == len(JPEG)
    clock.advance(minutes=4, seconds=59)
    assert (await http.get(info["url"], headers=auth)).content == JPEG
    assert (await http.get(info["url"])).status_code == 401  # the URL needs the token too
    clock.advance(seconds=1)
    assert (await http.get(info["url"], headers=auth)).status_code == 404


async def test_corrupt_bytes_are_refused(sim: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    sim.corrupt_media.add(media_id)
    with pytest.raises(MediaRefused, match="SHA-256 mismatch"):
        await media.download(http, sim.graph_url, sim.access_token, media_id)


async def test_a_size_other_than_announced_is_refused(
    sim: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    sim.truncate_media.add(media_id)
    with pytest.raises(
        MediaRefused, match=f"got {len(JPEG) - 1} bytes, Meta announced {len(JPEG)}"
    ):
        await media.download(http, sim.graph_url, sim.access_token, media_id)


async def test_webhook_hash_is_checked_when_meta_gives_none(
    sim: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    # Without a hash from the media endpoint, the webhook's base64 one is used.
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    sim.hash_in_media_info = False
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    right = base64.b64encode(hashlib.sha256(JPEG).digest()).decode()
    args = (http, sim.graph_url, sim.access_token, media_id)
    with pytest.raises(MediaRefused, match="SHA-256 mismatch"):
        await media.download(*args, webhook_sha256=wrong)
    assert (await media.download(*args, webhook_sha256=right)).data == JPEG


async def test_size_cap_and_announced_size(sim: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    with pytest.raises(MediaRefused, match="over 100"):
        await media.download(http, sim.graph_url, sim.access_token, media_id, max_bytes=100)
    assert sim.url_requests == 1  # refused on the announced size, before downloading


async def test_bad_token_and_unknown_media(sim: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    media_id = sim._store_media(JPEG, "image/jpeg", META_PNID).id
    with pytest.raises(AuthError) as auth_error:
        await media.download(http, sim.graph_url, "wrong", media_id)
    assert auth_error.value.carrier_code == "190"
    with pytest.raises(Exception, match="#100"):
        await media.download(http, sim.graph_url, sim.access_token, "12345")


async def test_upload_limits_of_the_simulator(
    sim: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    big = b"\xff" * (5 * media.MB + 1)
    with pytest.raises(Exception, match="131053"):
        await media.upload(
            http, sim.graph_url, sim.access_token, META_PNID, big, "image/jpeg", None
        )
    assert sim.media == {}


async def test_the_token_only_goes_to_https_or_the_graph_host(sim: WhatsAppSimulator) -> None:
    assert media._url_allowed("https://lookaside.fbsbx.com/x", "https://graph.facebook.com/v25.0")
    assert not media._url_allowed("http://evil.example/x", "https://graph.facebook.com/v25.0")
    assert media._url_allowed(f"{sim.base_url}/_media/t", sim.graph_url)
    assert not media._url_allowed("http://127.0.0.2:1/_media/t", sim.graph_url)
