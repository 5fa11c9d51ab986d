"""How the SQLite store writes sends: one bulk batch per commit (see ``sqlite_engine``).

``submit_batch`` is the ``Engine.batched`` runner of ``SqliteStore.submit_outbound``; the
row encoders here are shared with the store's single-row writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway import jsoncodec
from gateway.errors import CreditLimitExceeded
from gateway.models import Charge, Event, Job, Message, to_ms
from gateway.store.base import (
    Limit,
    MessageExists,
    crossed_thresholds,
    ledger_overage_micros,
)
from gateway.store.rules import event_doc, threshold_event
from gateway.store.sqlite_rates import RateLog


def encode(doc: dict[str, Any]) -> str:
    """A stored document as JSON text."""
    return jsoncodec.dumps(doc)


@dataclass(slots=True)
class Send:
    """One ``submit_outbound`` call waiting for its commit's batch."""

    message: Message
    charge: Charge | None
    job: Job
    events: list[Event]
    limits: Sequence[Limit] = ()  # send limits: checked and taken by ``sqlite_rates``


def submit_batch(db: sqlite3.Connection, sends: list[Send]) -> list[object]:
    """Write the sends of one commit with a handful of bulk statements.

    The ledger lines and team totals they touch are read once; each send is then charged
    in order in memory (the transaction holds the write lock, so nothing else changes
    them), a send over its team's credit limit is refused alone, and the final ledger
    values, messages, jobs, events and conversation times go in with ``executemany``.
    """
    # Per ledger line: [used, included, price]; a line is written only once charged.
    lines: dict[tuple[str, str, str, str], list[int]] = {}
    charged: set[tuple[str, str, str, str]] = set()
    teams: dict[tuple[str, str], int] = {}
    outcomes: list[object] = []
    accepted: list[Send] = []
    rates = RateLog(db, (limit for send in sends for limit in send.limits))
    stored = _stored_ids(db, [send.message.id for send in sends])
    for send in sends:
        if send.message.id in stored:  # a repeated send: see Store.submit_outbound
            outcomes.append(MessageExists(send.message.id))
            continue
        if send.limits:  # checked first; a slot is taken only once the charge passed
            now_ms = to_ms(send.message.created_at)
            refused = rates.refusal(send.limits, now_ms)
            if refused is not None:
                outcomes.append(refused)
                continue
        charge = send.charge
        if charge is not None:
            key = (charge.team_id, charge.period, charge.member_id, charge.channel)
            if key not in lines:
                row = db.execute(
                    "SELECT used FROM ledger WHERE team_id = ? AND period = ? AND member_id = ? "
                    "AND channel = ?",
                    key,
                ).fetchone()
                lines[key] = [row[0] if row else 0, 0, 0]
            tkey = (charge.team_id, charge.period)
            if tkey not in teams:
                row = db.execute(
                    "SELECT overage_micros FROM ledger_team WHERE team_id = ? AND period = ?",
                    tkey,
                ).fetchone()
                teams[tkey] = row[0] if row else 0
            line = lines[key]
            before, after = line[0], line[0] + charge.units
            price = charge.overage_price_micros
            cost = ledger_overage_micros(after, charge.included, price) - ledger_overage_micros(
                before, charge.included, price
            )
            if cost > 0 and teams[tkey] + cost > charge.credit_limit_micros:
                outcomes.append(
                    CreditLimitExceeded(
                        "this send would take the team's overage past its credit limit",
                        overage_micros=teams[tkey],
                        cost_micros=cost,
                        credit_limit_micros=charge.credit_limit_micros,
                    )
                )
                continue
            line[:] = [after, charge.included, price]
            charged.add(key)
            teams[tkey] += cost
            send.message.charged_period = charge.period
            for pct in crossed_thresholds(before, after, charge.included, charge.thresholds):
                send.events.append(threshold_event(charge, pct, after, send.message.created_at))
        if send.limits:
            rates.take(send.limits, now_ms, send.message.id)
        stored.add(send.message.id)  # the same id again in this batch is a repeat too
        accepted.append(send)
        outcomes.append(send.events)
    rates.flush()
    if charged:
        db.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (team_id, period, "
            "member_id, channel) DO UPDATE SET used = excluded.used, "
            "included = excluded.included, price_micros = excluded.price_micros",
            [(*key, *lines[key]) for key in charged],
        )
        db.executemany(
            "INSERT INTO ledger_team VALUES (?, ?, ?) ON CONFLICT (team_id, period) "
            "DO UPDATE SET overage_micros = excluded.overage_micros",
            [(*tkey, total) for tkey, total in teams.items()],
        )
    if not accepted:
        return outcomes
    db.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [message_row(send.message) for send in accepted],
    )
    db.executemany(
        "INSERT INTO jobs VALUES (?, ?, ?, ?, ?)", [job_row(send.job) for send in accepted]
    )
    (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    event_rows = []
    for send in accepted:
        for event in send.events:
            seq += 1
            event.seq = seq
            event_rows.append((seq, event_doc(event)))
    db.executemany("INSERT INTO events VALUES (?, ?)", event_rows)
    latest: dict[str, int] = {}
    for send in accepted:
        at = to_ms(send.message.created_at)
        cid = send.message.conversation_id
        latest[cid] = max(at, latest.get(cid, 0))
    db.executemany(
        "UPDATE conversations SET last_ms = ?1 WHERE id = ?2 AND last_ms < ?1",
        [(at, cid) for cid, at in latest.items()],
    )
    return outcomes


def _stored_ids(db: sqlite3.Connection, ids: list[str]) -> set[str]:
    """Which of ``ids`` are stored messages (one primary-key probe per id, one statement
    per few hundred)."""
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", chunk)
        found.update(row[0] for row in rows)
    return found


def message_row(m: Message) -> tuple[object, ...]:
    """The ``messages`` row of a new message."""
    return (
        m.id,
        m.team_id,
        m.member_id,
        m.conversation_id,
        m.channel,
        m.direction,
        m.status,
        m.status,
        encode(m.to_dict()),
    )


def job_row(job: Job) -> tuple[object, ...]:
    """The ``jobs`` row of a new job."""
    return (job.id, job.state, to_ms(job.run_at), None, encode(job.to_dict()))
