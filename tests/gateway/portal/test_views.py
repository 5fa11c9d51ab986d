"""What a bubble says per channel (ticks, fax progress, failures), and search folding."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.models import Attachment, Message
from gateway.portal import i18n, search
from gateway.portal.views import bubble, tick

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
FMT = i18n.Formats("en", ZoneInfo("Europe/Berlin"))


def msg(channel: str, status: str, direction: str = "outbound", **kw: object) -> Message:
    values: dict[str, object] = dict(
        id="msg_1", team_id="t", member_id="m", conversation_id="c", channel=channel,
        direction=direction, from_="+4915112345671", to="+4917612345678", text="hi",
        attachments=[], status=status, units=1, segments=1, encoding=None,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    values.update(kw)
    return Message(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def english() -> None:
    i18n.activate("en")


@pytest.mark.parametrize(
    ("channel", "status", "kind", "label"),
    [
        ("sms", "accepted", "pending", "Sending"),
        ("sms", "sent", "sent", "Sent"),
        ("sms", "delivered", "delivered", "Delivered"),
        ("sms", "read", "delivered", "Delivered"),  # SMS has no read receipt
        ("whatsapp", "read", "read", "Read"),
        ("whatsapp", "delivered", "delivered", "Delivered"),
    ],
)
def test_ticks_as_each_channel_tells_them(channel: str, status: str, kind: str, label: str) -> None:
    t = tick(msg(channel, status), FMT)
    assert (t.kind, t.label) == (kind, label)


def test_failures_say_why_and_when_the_next_try_is() -> None:
    error = {"message": "131026 Receiver is incapable of receiving this message"}
    t = tick(msg("whatsapp", "failed", error=error), FMT)
    assert t.kind == "failed" and t.detail == error["message"]
    fax = msg("fax", "failed", error={"message": "busy"},
              meta={"fax": {"pages": 3, "next_try": "2026-03-15T12:05:00.000Z"}})  # fmt: skip
    assert tick(fax, FMT).detail == "busy; next try 15 Mar 2026, 13:05:00"


@pytest.mark.parametrize(
    ("status", "meta", "live", "label"),
    [
        ("accepted", {}, None, "Converting"),
        ("queued", {"fax": {"phase": "converting"}}, None, "Converting"),
        # Converted (its TIFF stored), waiting for the send job: no longer converting.
        ("queued", {"fax": {"pages": 3, "pages_sent": 0, "tiff": "att_t"}}, None, "Queued"),
        ("queued", {"fax": {"pages": 3, "phase": "dialling"}}, None, "Dialling"),
        ("sending", {"fax": {"pages": 3, "pages_sent": 0}}, None, "Dialling"),
        ("sending", {"fax": {"pages": 3, "pages_sent": 1}}, None, "Page 2 of 3"),
        ("sending", {"pages": 3, "pages_sent": 0}, 3, "Page 3 of 3"),  # a fax.page event
        ("sent", {"fax": {"pages": 3, "pages_sent": 3}}, None, "Sent, 3 pages"),
        ("sent", {"fax": {"pages": 1}}, None, "Sent, 1 page"),
    ],
)
def test_fax_progress(status: str, meta: dict[str, object], live: int | None, label: str) -> None:
    assert tick(msg("fax", status, meta=meta, text=None), FMT, live).label == label


def test_a_fax_that_failed_for_now_says_why_and_when_the_next_try_is() -> None:
    meta = {"fax": {"pages": 3, "tiff": "att_t", "next_try": "2026-03-15T12:05:00.000Z",
                    "retry_reason": "the line was busy", "dials": 1}}  # fmt: skip
    t = tick(msg("fax", "queued", meta=meta, text=None), FMT)
    assert (t.kind, t.label) == ("retry", "Failed, next try")  # no Retry button: it retries
    assert t.detail == "the line was busy; next try 15 Mar 2026, 13:05:00"
    # Dialling again: the old schedule no longer shows.
    dialling = tick(msg("fax", "sending", meta=meta, text=None), FMT)
    assert dialling.label == "Dialling"


def test_a_received_fax_shows_its_pages_thumbnail_and_pdf() -> None:
    pdf = Attachment("att_pdf", "t", "s", 10, "application/pdf", "fax.pdf", NOW)
    png = Attachment("att_png", "t", "s", 10, "image/png", "p1.png", NOW)
    m = msg("fax", "received", "inbound", text=None, attachments=["att_pdf"],
            meta={"fax": {"pages": 2, "thumbnail": "att_png", "pdf": "att_pdf"}})  # fmt: skip
    b = bubble(m, {"att_pdf": pdf, "att_png": png}, FMT)
    assert b.pages == 2 and b.tick.kind == "received"
    assert [(a.id, a.kind, a.thumbnail) for a in b.attachments] == [("att_pdf", "pdf", "att_png")]


def test_fallback_is_noted() -> None:
    m = msg("sms", "sent", meta={"fallback_used": {"from": "whatsapp", "to": "sms"}})
    assert bubble(m, {}, FMT).fallback_note == "Sent as SMS: the WhatsApp window was closed"


@pytest.mark.parametrize(
    ("text", "query"),
    [("Jürgen Müller", "mueller"), ("Jürgen Mueller", "Müller"), ("Straße", "STRASSE"),
     ("Café Zoë", "cafe zoe"), ("ÄRGER", "aerger")],
)  # fmt: skip
def test_search_folds_umlauts(text: str, query: str) -> None:
    folded = search.fold_query(query)
    assert folded is not None and folded in search.fold(text)


def test_search_by_number_in_any_form() -> None:
    head = search.head("+4917612345678", None)
    for typed in ("0176 1234 5678", "+49 176 12345678", "004917612345678", "12345678"):
        q = search.fold_query(typed)
        assert q is not None and q in head, typed
