"""The send command: ``POST /v1/messages`` and its preview, and every other front door.

The API, forwarding by SMS, and (next) the portal and email-to-fax all send through
``outbound.submit(rt, principal, SendRequest(...))``. The shape is checked here; what
needs the team, the member or the channel (numbers, ownership, per-channel limits, the
WhatsApp window) is checked by ``outbound.draft``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.commands.base import Command, Fault
from gateway.errors import GatewayError, ValidationError
from gateway.models import Channel

MAX_TEXT = {Channel.SMS: 1600, Channel.WHATSAPP: 4096, Channel.FAX: 10_000}
MAX_ATTACHMENTS = {Channel.SMS: 0, Channel.WHATSAPP: 1, Channel.FAX: 10}
# Meta's template names, and its template languages: ``de``, ``en_US``, ``pt_BR``, ``fil`` …
TEMPLATE_NAME = "^[a-z0-9_]{1,512}$"
TEMPLATE_LANGUAGE = "^[a-z]{2,3}(_[A-Za-z]{2,4})?$"
COMPONENT_TYPES = ("header", "body", "footer", "button", "carousel", "limited_time_offer")
MAX_COVER_LINE = 200  # a cover page's to, from and subject
MAX_COVER_NOTE = 4000  # about a page of text

_NAME_REFUSAL = (
    "'template.name' must be the approved template's name (lowercase letters, digits and "
    "underscores)"
)
_LANGUAGE_REFUSAL = (
    "'template.language' must be the template's language code, e.g. \"de\" or \"en_US\" "
    '(or {"code": "en_US"})'
)
COMPONENTS_REFUSAL = (
    "'template.components' must be a list of objects whose 'type' is one of "
    + ", ".join(sorted(COMPONENT_TYPES))
)
_KINDS = {"attachments": "list", "cover": "an object {to, from, subject, note}"}


class TemplateLanguage(Command, kw_only=True):
    """A template language as WhatsApp takes it: `{"code": "en_US"}`."""

    code: Annotated[str, Meta(pattern=TEMPLATE_LANGUAGE)]


Component = Annotated[
    dict[str, Any],
    Meta(
        extra_json_schema={
            "required": ["type"],
            "additionalProperties": True,
            "properties": {"type": {"type": "string", "enum": list(COMPONENT_TYPES)}},
        }
    ),
]


class WhatsAppTemplate(Command, kw_only=True):
    """Only on whatsapp: send this approved message template instead of `text` and
    `attachments`. Templates may be sent outside the 24-hour window, so they take no
    `fallback`. One unit per template message."""

    name: Annotated[str, Meta(pattern=TEMPLATE_NAME, examples=["order_update"])]
    language: Annotated[
        Annotated[str, Meta(pattern=TEMPLATE_LANGUAGE)] | TemplateLanguage,
        Meta(
            description='The template\'s language code (`"de"`, `"en_US"`); answers show '
            'it as `{"code": …}`, the form WhatsApp takes.'
        ),
    ]
    components: Annotated[
        list[Component] | None,
        Meta(
            description="The template's parameters, as WhatsApp's Cloud API takes them "
            "(header, body, button …)."
        ),
    ] = None

    @property
    def language_code(self) -> str:
        """The language code, however it was given."""
        return self.language if isinstance(self.language, str) else self.language.code


Line = Annotated[str, Meta(max_length=MAX_COVER_LINE)]


class FaxCover(Command, kw_only=True):
    """A fax's cover page: whom it is for and from, a subject and a note (all optional)."""

    to: Line | None = None
    from_: Line | None = msgspec.field(default=None, name="from")
    subject: Line | None = None
    note: Annotated[str, Meta(max_length=MAX_COVER_NOTE)] | None = None


def _limits(limits: dict[Channel, int], unit: str) -> str:
    return ", ".join(f"{n}{unit} on {c.value}" for c, n in limits.items())


class SendRequest(Command, kw_only=True):
    """An outbound message. It needs `text` or `attachments` (or both); a null field
    counts as absent."""

    channel: Channel
    from_: Annotated[
        str,
        Meta(
            description="A number of the sending member: the mobile number for sms and "
            "whatsapp, the fax number for fax. E.164, or national format of the team's "
            "region.",
            examples=["+4915112345671"],
        ),
    ] = msgspec.field(name="from")
    to: Annotated[
        str,
        Meta(
            description="The recipient; E.164, or national format of the team's region.",
            examples=["+4917612345678"],
        ),
    ]
    text: Annotated[
        str | None,
        Meta(
            description=f"The text; at most {_limits(MAX_TEXT, ' characters')}.",
            extra_json_schema={"maxLength": max(MAX_TEXT.values())},
        ),
    ] = None
    attachments: Annotated[
        list[str] | None,
        Meta(
            description="Ids of uploaded attachments (`POST /v1/attachments`); at most "
            f"{_limits(MAX_ATTACHMENTS, '')}.",
            extra_json_schema={"maxItems": max(MAX_ATTACHMENTS.values())},
        ),
    ] = None
    fallback: Annotated[
        Literal["sms"] | None,
        Meta(
            description='Only on whatsapp: "sms" sends the message as SMS when WhatsApp '
            "refuses it for the 24-hour window: at once when the window is closed (the "
            "answer then has `channel` sms, `requested_channel` whatsapp and "
            "`fallback_used` sms; SMS add-on, units and segments), or later if WhatsApp "
            "refuses it all the same (error 131047): its WhatsApp units go back and the "
            "SMS units are charged. The message must fit an SMS: text only, at most "
            f"{MAX_TEXT[Channel.SMS]} characters."
        ),
    ] = None
    template: WhatsAppTemplate | None = None
    cover: Annotated[
        FaxCover | UnsetType | None,
        Meta(
            description="Only on fax: a cover page (to, from, subject, note) sent before "
            "the attachments and the text. The cover page is part of the fax: still one unit."
        ),
    ] = UNSET

    @classmethod
    def refuse(cls, fault: Fault, body: Any) -> GatewayError:
        """The refusals ``outbound.draft`` has always answered."""
        top = fault.path[0] if fault.path else None
        value = fault.value(body)
        if top == "template":
            return _template_refusal(fault, body)
        if top == "attachments" and len(fault.path) > 1:
            return ValidationError(f"attachment {value!r} not found", field="attachments")
        if top == "channel" and fault.kind == "value":
            return ValidationError(
                f"'channel' must be one of sms, whatsapp, fax (got {value!r})", field="channel"
            )
        if top == "fallback" and fault.kind == "value":
            return ValidationError("'fallback' can only be \"sms\", on WhatsApp", field="fallback")
        if isinstance(top, str) and len(fault.path) == 1 and fault.kind in ("type", "null"):
            if fault.kind == "null" and top in ("channel", "from", "to"):
                return ValidationError(f"'{top}' is required", field=top)
            kind = _KINDS.get(top, "str")
            article = "" if kind.startswith("an ") else "a "
            return ValidationError(f"'{top}' must be {article}{kind}", field=top)
        return super().refuse(fault, body)


def _template_refusal(fault: Fault, body: Any) -> GatewayError:
    """A template that does not fit: said about the whole ``template`` field."""
    channel = body.get("channel") if isinstance(body, dict) else None
    if channel in (Channel.SMS, Channel.FAX):  # its channel is checked first
        return ValidationError("'template' is only for channel whatsapp", field="template")
    inner = fault.path[1] if len(fault.path) > 1 else None
    if inner is None and fault.kind == "unknown":
        unknown = ", ".join(sorted(fault.names))
        return ValidationError(f"unknown field(s) in 'template': {unknown}", field="template")
    if inner is None:
        detail = "'template' must be an object {name, language, components}"
    elif inner == "name":
        detail = _NAME_REFUSAL
    elif inner == "language":
        detail = _LANGUAGE_REFUSAL
    else:
        detail = COMPONENTS_REFUSAL
    return ValidationError(detail, field="template")
