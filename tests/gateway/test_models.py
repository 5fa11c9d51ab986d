"""Models, numbers, ids and status rules."""

from __future__ import annotations

import pytest

from gateway.errors import ValidationError
from gateway.ids import hash_secret, new_id, new_secret
from gateway.models import Channel, Plan, Status, addon_allows, can_transition
from gateway.numbers import country_of, normalize, normalize_landline, normalize_mobile


def test_numbers_normalize_to_e164() -> None:
    assert normalize("0151 1234 5671") == "+4915112345671"
    assert normalize("+49 (30) 1234567") == "+49301234567"
    assert normalize("0043 664 1234567") == "+436641234567"
    assert normalize("06641234567", "AT") == "+436641234567"
    assert country_of("+436641234567") == "AT"
    for bad in ("", "12", "hello", "+49 0000"):
        with pytest.raises(ValidationError) as exc:
            normalize(bad)
        assert exc.value.code == "invalid_number"


def test_mobile_and_landline_numbers() -> None:
    assert normalize_mobile("015112345671") == "+4915112345671"
    assert normalize_landline("030 12345670") == "+493012345670"
    with pytest.raises(ValidationError):
        normalize_mobile("030 12345670")
    with pytest.raises(ValidationError):
        normalize_landline("0151 12345671")


def test_addons() -> None:
    assert addon_allows(frozenset({"whatsapp"}), Channel.SMS)  # WhatsApp includes SMS
    assert addon_allows(frozenset({"sms"}), Channel.SMS)
    assert not addon_allows(frozenset({"sms"}), Channel.WHATSAPP)
    assert not addon_allows(frozenset({"sms", "whatsapp"}), Channel.FAX)
    assert Plan.STARTER.max_members == 2 and Plan.BUSINESS.max_members == 10


def test_status_transitions() -> None:
    S = Status
    assert can_transition(S.ACCEPTED, S.SENDING)
    assert can_transition(S.SENDING, S.QUEUED) and can_transition(S.QUEUED, S.SENDING)
    assert can_transition(S.SENT, S.READ)  # a skipped "delivered" is fine
    assert not can_transition(S.READ, S.DELIVERED)
    assert not can_transition(S.DELIVERED, S.SENT)
    assert can_transition(S.SENT, S.FAILED)
    assert not can_transition(S.FAILED, S.DELIVERED)
    assert not can_transition(S.RECEIVED, S.READ)
    assert not can_transition(S.SENT, S.SENT)


def test_ids_sort_by_time_and_secrets_hash() -> None:
    ids = [new_id("msg") for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(len(i) == 30 and i.startswith("msg_") for i in ids)
    secret = new_secret("gwk")
    assert secret.startswith("gwk_") and len(secret) > 40
    assert hash_secret(secret) == hash_secret(secret) != hash_secret(secret + "x")


def test_spelled_out_serialisations_match_the_fields() -> None:
    # The hot models spell to_dict out for speed; it must stay the generic serialisation.
    from dataclasses import fields
    from datetime import UTC, datetime

    from gateway.models import Event, Job, Message, StatusChange, _dump

    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    msg = Message("msg_1", "t", "m", "c", "sms", "outbound", "+49151", "+49176", "hi", ["a"],
                  "accepted", 1, 1, "gsm7", now, now, "c1", "x", {"code": "e"}, "sms", "2026-03",
                  {"k": 1})  # fmt: skip
    assert msg.to_dict() == _dump(msg)
    assert set(msg.to_dict()) == {f.name for f in fields(Message)}
    assert Message.from_dict(msg.to_dict()) == msg
    others = [
        Event("evt_1", "message.status", "t", {"a": 1}, now, 7),
        Job("job_1", "send", {"message_id": "m"}, now, 5, 2, "leased", now, "tok", "e", now),
        Job("job_2", "send", {}, now, 5),
        StatusChange("msg_1", "sent", now, {"x": 1}),
    ]
    for obj in others:
        assert obj.to_dict() == _dump(obj)
        assert set(obj.to_dict()) == {f.name for f in fields(obj)}  # type: ignore[arg-type]
        assert type(obj).from_dict(obj.to_dict()) == obj
