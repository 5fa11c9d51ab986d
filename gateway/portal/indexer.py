"""The inbox index as a read model of the event log: what each event does to its
conversation's summary (``IndexChange``), and one indexing step.

Only message events move the index: ``message.created`` (an outbound message accepted),
``message.received`` (inbound) and ``message.status`` (a status change, also the move of a
WhatsApp message to SMS). The index cursor is compare-and-set, so every process may run
the step: an event is applied exactly once whoever applies it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from gateway import events as event_types
from gateway.models import Channel, Direction, Event, Status, parse_iso
from gateway.portal import search
from gateway.portal.storage import IndexChange, PortalStore, snippet
from gateway.store.base import Store

log = logging.getLogger("gateway.portal.indexer")
BATCH = 500
MESSAGE_EVENTS = frozenset(
    {event_types.MESSAGE_CREATED, event_types.MESSAGE_RECEIVED, event_types.MESSAGE_STATUS}
)


def profile_name(meta: dict[str, Any]) -> str | None:
    """The WhatsApp profile name an inbound message's ``meta`` carries, if any."""
    section = meta.get("whatsapp")
    name = section.get("profile_name") if isinstance(section, dict) else None
    return name.strip() or None if isinstance(name, str) else None


async def change_for(event: Event, store: Store) -> IndexChange | None:
    """What ``event`` does to its conversation's summary; None for other events."""
    if event.type not in MESSAGE_EVENTS:
        return None
    data = event.data
    try:
        conversation_id = data["conversation_id"]
        inbound = data["direction"] == Direction.INBOUND
        member_number = data["to"] if inbound else data["from"]
        remote = data["from"] if inbound else data["to"]
        channel = data["channel"]
        created = event.type != event_types.MESSAGE_STATUS
        at = parse_iso(data["created_at"] if created else data["updated_at"])
        text = data.get("text")
    except (KeyError, TypeError, ValueError):
        log.warning("event %s (%s): not a message view; skipped", event.seq, event.type)
        return None
    name = None
    whatsapp_at = None
    if event.type == event_types.MESSAGE_RECEIVED and channel == Channel.WHATSAPP:
        whatsapp_at = at
        # The public view leaves meta out; the profile name is in the stored message.
        message = await store.get_message(data["id"])
        if message is not None:
            name = profile_name(message.meta)
    return IndexChange(
        conversation_id=conversation_id,
        team_id=event.team_id,
        member_id=data["member_id"],
        member_number=member_number,
        remote_number=remote,
        message_id=data["id"],
        at=at,
        channel=channel,
        direction=data["direction"],
        status=data["status"],
        text=snippet(text) if text is not None else _attachment_label(data),
        new_message=created,
        inbound=event.type == event_types.MESSAGE_RECEIVED,
        failed=data["status"] == Status.FAILED,
        contact_name=name,
        whatsapp_inbound_at=whatsapp_at,
        search_text=search.fold(text) if created and text else "",
        search_head=search.head(remote, name),
    )


def _attachment_label(data: dict[str, Any]) -> str | None:
    # A message without text (a fax, an image) is listed by what it carries; the
    # template renders the label, so only a marker is stored.
    return None if not data.get("attachments") else ""


async def changes_for(events: Sequence[Event], store: Store) -> list[IndexChange]:
    """The index changes of ``events``, in order."""
    out = []
    for event in events:
        change = await change_for(event, store)
        if change is not None:
            out.append(change)
    return out


async def index_step(store: Store, portal: PortalStore, batch: int = BATCH) -> int:
    """Apply the next events after the index cursor; how many events were read (0: the
    index is up to date, or another process moved the cursor first)."""
    cursor = await portal.index_cursor()
    events = await store.list_events(cursor, batch)
    if not events:
        return 0
    changes = await changes_for(events, store)
    await portal.apply_index(cursor, events[-1].seq, changes)
    return len(events)
