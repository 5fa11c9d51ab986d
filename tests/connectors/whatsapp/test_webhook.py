"""Signature checks and payload parsing of ``connectors/whatsapp/webhook.py``, on Meta's
documented example payloads (verbatim, in ``payloads/``) and on the other message types."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from connectors.base import InboundAttachment
from connectors.whatsapp import webhook
from connectors.whatsapp.webhook import MediaRef, e164, parse, sign, verify_signature
from tests.connectors.whatsapp.conftest import BUSINESS, META_PNID, payload, payload_doc

SECRET = "app-secret-4711"
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
IDS = {META_PNID: BUSINESS}


def parsed(doc: Any) -> webhook.Parsed:
    return parse(doc, connector_id="wa", numbers_by_id=IDS, now=NOW)


def one_message(msg: dict[str, Any], contacts: list[Any] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": META_PNID},
        "messages": [{"from": "16505551234", "id": "wamid.X", "timestamp": "1749416383", **msg}],
    }
    if contacts is not None:
        value["contacts"] = contacts
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
    }


# -- signature -----------------------------------------------------------------------------
def test_signature_is_hmac_sha256_hex_over_the_raw_body() -> None:
    body = payload("text.json")
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    assert verify_signature(SECRET, body, expected)


def test_bad_or_missing_signatures_fail() -> None:
    body = payload("text.json")
    good = sign(SECRET, body)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "")
    assert not verify_signature(SECRET, body, "sha256=" + "0" * 64)
    assert not verify_signature("another-secret", body, good)
    assert not verify_signature(SECRET, body + b" ", good)
    assert not verify_signature(SECRET, body, good.replace("sha256=", "sha1="))
    assert not verify_signature(SECRET, body, good.upper())  # Meta sends lowercase hex


def test_a_reserialised_body_does_not_verify() -> None:
    # Meta signs ASCII-escaped JSON ("\u00e4"); the same document serialised again
    # (another spacing, or UTF-8 for the umlaut) is other bytes and must not verify.
    doc = one_message({"type": "text", "text": {"body": "Grüße"}})
    raw = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode()
    assert b"\\u00fc" in raw
    signature = sign(SECRET, raw)
    assert verify_signature(SECRET, raw, signature)
    for again in (
        json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")).encode(),
        json.dumps(json.loads(raw)).encode(),
    ):
        assert again != raw
        assert not verify_signature(SECRET, again, signature)


# -- Meta's examples -----------------------------------------------------------------------
def test_metas_text_example() -> None:
    out = parsed(payload_doc("text.json"))
    assert out.skipped == [] and out.statuses == []
    (item,) = out.inbound
    msg = item.message
    assert item.media is None
    assert msg.connector_id == "wa" and msg.channel == "whatsapp"
    assert msg.carrier_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert msg.from_ == "+16505551234" and msg.to == BUSINESS
    assert msg.text == "Does it come in another color?"
    assert msg.received_at == datetime.fromtimestamp(1749416383, UTC)
    assert msg.attachments == []
    assert msg.meta == {
        "whatsapp": {
            "type": "text",
            "wa_id": "16505551234",
            "phone_number_id": META_PNID,
            "profile_name": "Sheena Nelson",
        }
    }


def test_metas_image_example() -> None:
    (item,) = parsed(payload_doc("image.json")).inbound
    msg = item.message
    assert msg.text == "Taj Mahal"
    assert msg.received_at == datetime.fromtimestamp(1744344496, UTC)
    ref = MediaRef(
        "1003383421387256", "image", "image/jpeg", "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    )
    assert item.media == ref
    assert msg.attachments == [InboundAttachment("image/jpeg", reference="1003383421387256")]
    assert msg.meta["whatsapp"]["media"] == ref.to_dict()
    assert msg.meta["whatsapp"]["type"] == "image"


def test_metas_document_example() -> None:
    (item,) = parsed(payload_doc("document.json")).inbound
    assert item.message.text == "my receipt"
    assert item.media == MediaRef(
        "622684793477189",
        "document",
        "application/pdf",
        "V5OPpLD/gEG6Xjg0MbmQDLFgcKsL+j5LfY4ny/pZ4MY=",
        "receipt.pdf",
    )
    assert item.message.attachments[0].filename == "receipt.pdf"


def test_metas_status_examples() -> None:
    sent = parsed(payload_doc("status_sent.json"))
    (report,) = sent.statuses
    assert (report.connector_id, report.status, report.error) == ("wa", "sent", None)
    assert report.carrier_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
    assert report.at == datetime.fromtimestamp(1750030073, UTC)
    assert sent.inbound == []
    (v24,) = parsed(payload_doc("status_sent_v24.json")).statuses
    assert v24.status == "sent" and v24.carrier_id == report.carrier_id
    (delivered,) = parsed(payload_doc("status_delivered.json")).statuses
    assert delivered.status == "delivered"
    assert delivered.carrier_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA"
    assert delivered.at == datetime.fromtimestamp(1750263773, UTC)


def test_metas_failed_example_carries_the_normalized_error() -> None:
    (failed,) = parsed(payload_doc("status_failed.json")).statuses
    assert failed.status == "failed"
    assert failed.error == {
        "code": "rejected",
        "message": (
            "held back to maintain healthy ecosystem engagement; retry after 24 hours "
            "[#131049: This message was not delivered to maintain healthy ecosystem "
            "engagement. (In order to maintain a healthy ecosystem engagement, the message "
            "failed to be delivered.)]"
        ),
        "carrier_code": "131049",
        "retryable": True,
    }


def test_metas_unsupported_example_is_kept_with_its_errors() -> None:
    (item,) = parsed(payload_doc("unsupported.json")).inbound
    assert item.message.text == "[unsupported WhatsApp message: edit]"
    wa = item.message.meta["whatsapp"]
    assert wa["type"] == "unsupported"
    assert wa["errors"][0]["code"] == 131051


# -- batching, routing, odd items ----------------------------------------------------------
def test_batched_entries_changes_messages_and_statuses() -> None:
    text, image = payload_doc("text.json"), payload_doc("image.json")
    sent, failed = payload_doc("status_sent.json"), payload_doc("status_failed.json")
    value = text["entry"][0]["changes"][0]["value"]
    value["messages"] += image["entry"][0]["changes"][0]["value"]["messages"]
    value["statuses"] = sent["entry"][0]["changes"][0]["value"]["statuses"]
    doc = {
        "object": "whatsapp_business_account",
        "entry": [text["entry"][0], failed["entry"][0], {"id": "2", "changes": []}],
    }
    doc["entry"][1]["changes"].append(
        payload_doc("status_delivered.json")["entry"][0]["changes"][0]
    )
    out = parsed(doc)
    assert [i.message.meta["whatsapp"]["type"] for i in out.inbound] == ["text", "image"]
    assert [s.status for s in out.statuses] == ["sent", "failed", "delivered"]
    assert out.skipped == []


def test_unknown_phone_number_id_skips_that_change_only() -> None:
    doc = payload_doc("text.json")
    other = json.loads(json.dumps(doc["entry"][0]["changes"][0]))
    other["value"]["metadata"]["phone_number_id"] = "999"
    doc["entry"][0]["changes"].append(other)
    out = parsed(doc)
    assert len(out.inbound) == 1
    assert out.skipped == ["phone_number_id '999' is not one of this connector's"]


def test_other_objects_and_fields_are_skipped() -> None:
    assert parsed({"object": "page", "entry": []}).skipped == [
        "object 'page' is not a WhatsApp account"
    ]
    doc = payload_doc("text.json")
    doc["entry"][0]["changes"][0]["field"] = "account_update"
    out = parsed(doc)
    assert out.inbound == [] and out.skipped == ["field 'account_update' is not handled"]
    assert parsed("not a dict").inbound == []


def test_senders_become_e164_and_bad_ones_are_skipped() -> None:
    assert e164("16505551234") == "+16505551234"
    assert e164("+4917612345678") == "+4917612345678"
    assert e164("0176") is None and e164("abc") is None and e164(None) is None
    out = parsed(one_message({"from": "status@broadcast", "type": "text", "text": {"body": "x"}}))
    assert out.inbound == [] and "is not a phone number" in out.skipped[0]


def test_bad_timestamp_falls_back_to_now() -> None:
    out = parsed(one_message({"timestamp": "soon", "type": "text", "text": {"body": "x"}}))
    assert out.inbound[0].message.received_at == NOW
    assert "unreadable timestamp" in out.skipped[0]


def test_reply_context_and_forwarding_go_to_meta() -> None:
    context = {"from": "15550783881", "id": "wamid.PREVIOUS", "forwarded": True}
    (item,) = parsed(
        one_message({"type": "text", "text": {"body": "yes"}, "context": context})
    ).inbound
    wa = item.message.meta["whatsapp"]
    assert wa["reply_to"] == "wamid.PREVIOUS" and wa["context"] == context


def test_readable_forms_of_structured_messages() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {
                "type": "location",
                "location": {
                    "latitude": 52.5186,
                    "longitude": 13.3762,
                    "name": "Reichstag",
                    "address": "Platz der Republik 1",
                },
            },
            "Location: Reichstag, Platz der Republik 1 (52.5186, 13.3762)",
        ),
        (
            {"type": "location", "location": {"latitude": 1.5, "longitude": 2.5}},
            "Location: 1.5, 2.5",
        ),
        (
            {
                "type": "contacts",
                "contacts": [
                    {
                        "name": {"formatted_name": "Anna Schmidt"},
                        "phones": [{"phone": "+49 151 1234567"}],
                    }
                ],
            },
            "Contact: Anna Schmidt +49 151 1234567",
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "y", "title": "Yes"},
                },
            },
            "Yes",
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": "r1", "title": "Red", "description": "the red one"},
                },
            },
            "Red — the red one",
        ),
        (
            {"type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}},
            "Stop promotions",
        ),
        (
            {
                "type": "order",
                "order": {"catalog_id": "1", "product_items": [{}, {}], "text": "asap"},
            },
            "Order of 2 item(s): asap",
        ),
        ({"type": "poll", "poll": {}}, "[WhatsApp poll message]"),
    ]
    for msg, text in cases:
        (item,) = parsed(one_message(msg)).inbound
        assert item.message.text == text
        assert item.message.meta["whatsapp"]["raw"] == msg[msg["type"]]


def test_reactions_are_messages_with_the_emoji() -> None:
    react = {"type": "reaction", "reaction": {"message_id": "wamid.OURS", "emoji": "\U0001f44d"}}
    (item,) = parsed(one_message(react)).inbound
    assert item.message.text == "\U0001f44d"
    assert item.message.meta["whatsapp"]["reaction"] == {
        "message_id": "wamid.OURS",
        "emoji": "\U0001f44d",
    }
    (removed,) = parsed(
        one_message({"type": "reaction", "reaction": {"message_id": "wamid.OURS"}})
    ).inbound
    assert removed.message.text == "(reaction removed)"


def test_system_messages_are_not_from_the_user() -> None:
    system = {"type": "system", "system": {"body": "changed number", "type": "user_changed_number"}}
    out = parsed(one_message(system))
    assert out.inbound == [] and "system message" in out.skipped[0]


def test_statuses_played_and_unknown() -> None:
    doc = payload_doc("status_sent_v24.json")
    st = doc["entry"][0]["changes"][0]["value"]["statuses"]
    st.append({**st[0], "status": "played"})
    st.append({**st[0], "status": "deleted"})
    st.append({"status": "read"})
    out = parsed(doc)
    assert [s.status for s in out.statuses] == ["sent", "read"]
    assert out.skipped[0].endswith("status 'deleted' is not tracked")
    assert out.skipped[1] == "status 'read' without a message id"


def test_value_errors_are_reported() -> None:
    doc = payload_doc("text.json")
    err = {"code": 131000, "title": "Something went wrong"}
    doc["entry"][0]["changes"][0]["value"]["errors"] = [err]
    assert parsed(doc).errors == [err]
