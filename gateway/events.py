"""The event log that developers' webhooks and the portal both read.

Events are appended by the store in the same transaction as the change they describe;
this module names the types and builds their payloads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from gateway.ids import new_id
from gateway.models import Event, Message
from gateway.store.base import Store

MESSAGE_CREATED = "message.created"
MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
QUOTA_THRESHOLD = "quota.threshold"
EVENT_TYPES = (MESSAGE_CREATED, MESSAGE_RECEIVED, MESSAGE_STATUS, QUOTA_THRESHOLD)


def message_event(kind: str, message: Message, now: datetime) -> Event:
    """An event whose data is the message as the API shows it."""
    return Event(new_id("evt"), kind, message.team_id, message.public(), now)


async def read_after(store: Store, after_seq: int, batch: int = 500) -> AsyncIterator[Event]:
    """Every event after ``after_seq``, in order, read in batches."""
    while True:
        events = await store.list_events(after_seq, batch)
        for event in events:
            yield event
        if len(events) < batch:
            return
        after_seq = events[-1].seq
