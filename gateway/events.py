"""The event log that developers' webhooks and the portal both read.

Events are appended by the store in the same transaction as the change they describe;
this module names the types and builds their payloads.

Public: extensions (webhooks, the portal) read the event types from here.
"""

from __future__ import annotations

from datetime import datetime

from gateway.ids import new_id
from gateway.models import Event, Message

MESSAGE_CREATED = "message.created"
MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
QUOTA_THRESHOLD = "quota.threshold"
# A page of an outbound fax was confirmed by the far end (data: message_id, page, pages).
FAX_PAGE = "fax.page"
# Forwarding of an inbound message (gateway/forwarding.py); not about one message's status.
FORWARD_SENT = "forward.sent"
FORWARD_FAILED = "forward.failed"


def message_event(kind: str, message: Message, now: datetime) -> Event:
    """An event whose data is the message as the API shows it."""
    return Event(new_id("evt"), kind, message.team_id, message.public(), now)
