"""Typed commands: the one input shape of every front door (public to extensions).

The API, the fast path, forwarding, and next the portal and email-to-fax send with a
:class:`SendRequest`; forwarding rules and the outbound policy change with
:class:`ForwardingRules` and :class:`PolicyUpdate`. Each is a msgspec ``Struct``:
``decode`` reads one from a JSON body (validated in C), ``convert`` from a plain dict, and
a caller inside the process builds one with keywords. ``schemas`` gives their OpenAPI
component schemas. An extension defines its own commands on :class:`Command` (the
webhooks do, in ``webhooks/commands.py``).
"""

from __future__ import annotations

from msgspec import UNSET, UnsetType

from gateway.commands.base import (
    Command,
    Fault,
    convert,
    decode,
    decoder,
    explain,
    parse,
    schemas,
)
from gateway.commands.rules import (
    FORWARDABLE,
    MAX_EMAIL,
    MAX_SMS,
    ForwardingRules,
    PolicyUpdate,
)
from gateway.commands.send import (
    MAX_ATTACHMENTS,
    MAX_TEXT,
    FaxCover,
    SendRequest,
    TemplateLanguage,
    WhatsAppTemplate,
)

__all__ = [
    "FORWARDABLE",
    "MAX_ATTACHMENTS",
    "MAX_EMAIL",
    "MAX_SMS",
    "MAX_TEXT",
    "UNSET",
    "Command",
    "Fault",
    "FaxCover",
    "ForwardingRules",
    "PolicyUpdate",
    "SendRequest",
    "TemplateLanguage",
    "UnsetType",
    "WhatsAppTemplate",
    "convert",
    "decode",
    "decoder",
    "explain",
    "parse",
    "schemas",
]
