"""The shared store: one Redis (``redis://host:port/db?prefix=gw``) for many processes.

Every key starts with ``{prefix}:`` (query parameter ``prefix``, default ``gw``), so several
gateways (or test cases) can share one database. Documents are the compact JSON of the
model's ``to_dict()``. With P = the prefix:

    P:team:{id}                       team doc          P:teams            zset 0, ids (lex)
    P:member:{id}                     member doc        P:team:{t}:members zset 0, ids (lex)
    P:team:{t}:active                 set of active member ids (the plan limit counts it)
    P:number:{e164}                   owning member id
    P:apikey:{hash}   P:attachment:{id}                 docs
    P:setting:{scope}                 settings doc (policy, forwarding rules …)
    P:conv:{id}                       conversation doc
    P:convkey:{t}:{member#}:{remote#} conversation id of the triple
    P:team:{t}:convs                  zset, score = last_message_at in ms (ties: id)
    P:msg:{id}                        message doc       P:msg:{id}:history list of StatusChange
    P:team:{t}:msgs  P:member:{m}:msgs  P:conv:{c}:msgs    zsets 0, message ids (lex = time)
    P:carrier:{connector}             hash carrier id -> message id
    P:dedupe:{key}                    message id of a stored inbound message
    P:ledger:{t}:{period}             hash used|included|price:{member}:{channel}, overage
    P:job:{id}   P:jobs:…             the job queue: see ``redis_jobs.py``
    P:events:seq                      counter           P:events  zset, score = seq,
                                                         member = "{seq} {doc without seq}"
                                      (every append PUBLISHes its last seq on the channel
                                      P:events:seq: the log's readers need not poll)
    P:idem:{scope}:{key}              hash fp, code, body, exp (ms, compared with ``now``), ref
    P:rate:{limit key}                zset of accepted sends: message id, score = created ms

Extensions keep their keys beside these through the store's ``RedisBackend``
(``redis_backend.py``, ``roles.py``), under names that no key above uses.

Atomicity comes from Lua scripts, which Redis runs one at a time. Inserts that check
shared state (plan limit, conversation triple, dedupe key, ledger, idempotency claim)
are a single script. Updates whose rules live in Python (``rules.py``) read the doc,
apply the rule, then commit with a compare-and-set script that writes only if the doc
is unchanged; the check covers the one doc, so the shared ledger, indexes and event
counter never cause a retry. Times are always the caller's ``now``, never Redis TIME.
Scripts touch only their KEYS, but one operation spans many keys: use one Redis node
(no Cluster), version 6.2 or later (ZADD GT, ZRANGE ... BYSCORE/BYLEX REV LIMIT).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis

from gateway import jsoncodec
from gateway.errors import Conflict, CreditLimitExceeded, Forbidden
from gateway.ids import new_id
from gateway.models import (
    ApiKey,
    Attachment,
    Charge,
    Conversation,
    Event,
    Job,
    LedgerLine,
    Member,
    Message,
    StatusChange,
    Team,
    from_ms,
    iso,
    to_ms,
)
from gateway.store import rules
from gateway.store.base import (
    IDEM_KEEP,
    IdemRecord,
    Limit,
    MessageExists,
    MessageFilter,
    Page,
    Reroute,
    StatusUpdate,
)
from gateway.store.redis_backend import RedisBackend
from gateway.store.redis_jobs import CAS_TRIES as _CAS_TRIES
from gateway.store.redis_jobs import RedisJobs
from gateway.store.redis_jobs import job_slot as _job_slot
from gateway.store.redis_jobs import text as _text
from gateway.store.redis_scripts import SCRIPTS
from gateway.store.rules import event_doc

_Doc = TypeVar("_Doc", Team, Member, ApiKey, Attachment, Conversation, Message, Job)


def _dumps(doc: dict[str, Any]) -> str:
    return jsoncodec.dumps(doc)


def _gc_ms(ttl: timedelta) -> int:
    # A real expiry only collects garbage; the ``exp`` field compared with ``now`` decides.
    return 2 * max(ttl // timedelta(milliseconds=1), 60_000)


def _threshold_parts(charge: Charge, pct: int, event_id: str, at: datetime) -> tuple[str, str]:
    """The stored document of ``rules.threshold_event`` around its ``used`` value.

    Written out rather than encoded: every send passes these, and all values are ids,
    codes and numbers that need no JSON escaping (a test holds it to the real encoding).
    """
    head = (
        f'{{"id":"{event_id}","type":"quota.threshold","team_id":"{charge.team_id}",'
        f'"data":{{"member_id":"{charge.member_id}","channel":"{charge.channel}",'
        f'"period":"{charge.period}","threshold":{pct},"included":{charge.included},"used":'
    )
    return head, f'}},"created_at":"{iso(at)}"}}'


def _matches(m: Message, flt: MessageFilter) -> bool:
    """Whether ``m`` passes every filter that is set."""
    return (
        all(
            getattr(flt, name) in (None, getattr(m, name))
            for name in ("member_id", "conversation_id", "channel", "direction", "status")
        )
        and m.team_id == flt.team_id
    )


class RedisStore(RedisJobs):
    """Store backend on one Redis database shared by every gateway process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._backend = RedisBackend(url)
        self.prefix = self._backend.prefix
        self._p = f"{self.prefix}:"  # what every key starts with

    # -- plumbing --------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, check that the server answers and register the scripts."""
        await self._backend.open(SCRIPTS)

    async def aclose(self) -> None:
        """Close the connection pool (after the calls already sent)."""
        if self._announcements is not None:
            await self._announcements.aclose()
        await self._backend.aclose()

    async def ping(self) -> None:
        """Raise if Redis cannot answer."""
        await self._r.ping()

    @property
    def backend(self) -> RedisBackend:
        """The client, prefix, scripts and lane. Public on purpose: the Redis
        implementations of extensions' storage roles (``roles.py``) work through it."""
        return self._backend

    @property
    def _r(self) -> aioredis.Redis:
        return self._backend.client

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _run(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        return await self._backend.call(name, keys, args)

    async def _run_batched(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        """Like ``_run``, but the calls of one loop tick share one round trip, pipelined
        on the lane's connection (each script stays atomic on its own). Sends are many
        and small: the round trip, not Redis, is their cost."""
        return await self._backend.lane.call(name, keys, args)

    async def _get(self, cls: type[_Doc], kind: str, ident: str) -> _Doc | None:
        raw = await self._read(self._k(kind, ident))
        return cls.from_dict(jsoncodec.loads(raw)) if raw is not None else None

    async def _many(self, cls: type[_Doc], kind: str, ids: Iterable[object]) -> list[_Doc]:
        keys = [self._k(kind, _text(i)) for i in ids]
        raws = await self._r.mget(keys) if keys else []
        return [cls.from_dict(jsoncodec.loads(raw)) for raw in raws if raw is not None]

    async def _put(
        self, key: str, doc: dict[str, Any], index: str, member: str, score: int
    ) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(key, _dumps(doc))
            pipe.zadd(index, {member: score})
            await pipe.execute()

    # -- directory -------------------------------------------------------------------
    async def create_team(self, team: Team) -> None:
        """Store a new team."""
        await self._put(self._k("team", team.id), team.to_dict(), self._k("teams"), team.id, 0)

    async def get_team(self, team_id: str) -> Team | None:
        """The team, or None."""
        return await self._get(Team, "team", team_id)

    async def list_teams(self) -> list[Team]:
        """Every team, oldest first (ids sort by creation time)."""
        return await self._many(Team, "team", await self._r.zrange(self._k("teams"), 0, -1))

    async def create_member(self, member: Member, max_active: int) -> None:
        """Store a new member, refusing a full plan or a number owned by someone else."""
        k, team, numbers = self._k, member.team_id, member.numbers()
        keys = [k("member", member.id), k("team", team, "members"), k("team", team, "active")]
        keys += [k("number", n) for n in numbers]
        args: list[str | int] = [member.id, _dumps(member.to_dict()), int(member.active)]
        outcome, index = await self._run("create_member", keys, [*args, max_active])
        if outcome == "plan_limit":
            raise Forbidden(
                f"the team's plan allows at most {max_active} active members", code="plan_limit"
            )
        if outcome == "number_taken":
            raise Conflict(
                f"{numbers[int(index) - 1]} already belongs to a member", code="number_taken"
            )

    async def get_member(self, member_id: str) -> Member | None:
        """The member, or None."""
        return await self._get(Member, "member", member_id)

    async def list_members(self, team_id: str) -> list[Member]:
        """The team's members, oldest first."""
        ids = await self._r.zrange(self._k("team", team_id, "members"), 0, -1)
        return await self._many(Member, "member", ids)

    async def member_by_number(self, number: str) -> Member | None:
        """The member who owns ``number``, or None."""
        member_id = await self._r.get(self._k("number", number))
        return await self.get_member(_text(member_id)) if member_id is not None else None

    async def set_member_active(
        self, member_id: str, active: bool, max_active: int
    ) -> Member | None:
        """Activate or deactivate the member (activation within the plan's cap)."""
        member = await self.get_member(member_id)
        if member is None:
            return None
        team = member.team_id
        keys = [self._k("member", member_id), self._k("team", team, "active")]
        outcome = await self._run("set_member_active", keys, [member_id, int(active), max_active])
        if outcome == "plan_limit":
            raise Forbidden(
                f"the team's plan allows at most {max_active} active members", code="plan_limit"
            )
        if outcome is None:
            return None
        return Member.from_dict(jsoncodec.loads(outcome))

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (and list it under its team)."""
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self._k("apikey", key.key_hash), _dumps(key.to_dict()))
            pipe.hset(self._k("team", key.team_id, "apikeys"), key.id, key.key_hash)
            await pipe.execute()

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """The team's API keys, oldest first."""
        hashes = await self._r.hvals(self._k("team", team_id, "apikeys"))
        keys = await self._many(ApiKey, "apikey", hashes)
        return sorted(keys, key=lambda k: k.id)

    async def delete_api_key(self, team_id: str, key_id: str) -> bool:
        """Revoke the team's key."""
        index = self._k("team", team_id, "apikeys")
        key_hash = await self._r.hget(index, key_id)
        if key_hash is None:
            return False
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._k("apikey", _text(key_hash)))
            pipe.hdel(index, key_id)
            _, removed = await pipe.execute()
        return bool(removed)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The API key with this hash, or None."""
        return await self._get(ApiKey, "apikey", key_hash)

    # -- attachments -----------------------------------------------------------------
    async def put_attachment(self, attachment: Attachment) -> None:
        """Store attachment metadata."""
        await self._r.set(self._k("attachment", attachment.id), _dumps(attachment.to_dict()))

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        """The attachment, or None."""
        return await self._get(Attachment, "attachment", attachment_id)

    # -- settings documents ------------------------------------------------------------
    async def get_setting(self, scope: str) -> dict[str, Any] | None:
        """The settings document stored under ``scope``, or None."""
        raw = await self._r.get(self._k("setting", scope))
        return None if raw is None else dict(jsoncodec.loads(raw))

    async def put_setting(self, scope: str, doc: dict[str, Any]) -> None:
        """Store (replace) the settings document under ``scope``."""
        await self._r.set(self._k("setting", scope), _dumps(doc))

    # -- conversations ---------------------------------------------------------------
    async def conversation_for(
        self, team_id: str, member_id: str, member_number: str, remote_number: str, now: datetime
    ) -> Conversation:
        """The conversation of the triple, created if new (one per triple, also in a race)."""
        conv = Conversation(
            new_id("conv"), team_id, member_id, member_number, remote_number, now, now
        )
        keys = [self._k("convkey", team_id, member_number, remote_number)]
        keys += [self._k("conv", conv.id), self._k("team", team_id, "convs")]
        conv_id = _text(await self._run_batched(
            "conversation_for", keys, [conv.id, _dumps(conv.to_dict()), to_ms(now)]
        ))  # fmt: skip
        if conv_id == conv.id:
            return conv
        found = await self.get_conversation(conv_id)
        if found is None:  # cannot happen: the script writes the triple and the doc together
            raise RuntimeError(f"conversation {conv_id} is indexed but missing")
        return found

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None (``last_message_at`` from its activity score)."""
        conv = await self._get(Conversation, "conv", conversation_id)
        if conv is not None:
            score = await self._r.zscore(self._k("team", conv.team_id, "convs"), conv.id)
            if score is not None:
                conv.last_message_at = from_ms(int(score))
        return conv

    async def find_conversation(
        self, team_id: str, member_number: str, remote_number: str
    ) -> Conversation | None:
        """The conversation of the triple as stored now, or None (never created here)."""
        conv_id = await self._r.get(self._k("convkey", team_id, member_number, remote_number))
        return None if conv_id is None else await self.get_conversation(_text(conv_id))

    async def list_conversations(
        self, team_id: str, member_id: str | None, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        """Conversations by latest activity, newest first (cursor ``{ms}:{id}``)."""
        key = self._k("team", team_id, "convs")
        top_ms, _, top_id = (cursor or "").partition(":")
        batch, offset = max(2 * (limit + 1), 50), 0
        found: list[tuple[Conversation, int]] = []
        # BYSCORE REV returns equal scores by member (id) descending, the sqlite order.
        while len(found) <= limit:
            rows = await self._r.zrange(
                key, top_ms or "+inf", "-inf", desc=True, byscore=True,
                offset=offset, num=batch, withscores=True,
            )  # fmt: skip
            offset += len(rows)
            pairs = [(_text(r[0]), int(r[1])) for r in cast(list[tuple[str, float]], rows)]
            if cursor:  # at the cursor's own score, only ids below the cursor's id
                pairs = [(c, s) for c, s in pairs if s < int(top_ms) or c < top_id]
            convs = await self._many(Conversation, "conv", [c for c, _ in pairs])
            scores = dict(pairs)
            for c in convs:
                c.last_message_at = from_ms(scores[c.id])
            found += [(c, scores[c.id]) for c in convs if member_id in (None, c.member_id)]
            if len(rows) < batch:
                break
        items = [c for c, _ in found[:limit]]
        nxt = f"{found[limit - 1][1]}:{items[-1].id}" if len(found) > limit else None
        return Page(items, nxt)

    # -- messages --------------------------------------------------------------------
    def _message_keys(self, m: Message) -> list[str]:
        # What _k builds, spelled out: every send and inbound message needs these seven.
        p, mid, conv = self._p, m.id, m.conversation_id
        return [
            f"{p}msg:{mid}",
            f"{p}team:{m.team_id}:msgs",
            f"{p}member:{m.member_id}:msgs",
            f"{p}conv:{conv}:msgs",
            f"{p}msg:{mid}:history",
            f"{p}conv:{conv}",
            f"{p}team:{m.team_id}:convs",
        ]

    @staticmethod
    def _message_args(m: Message, doc: dict[str, Any], inbound_whatsapp: bool) -> list[str | int]:
        first = _dumps(StatusChange(m.id, m.status, m.created_at).to_dict())
        args: list[str | int] = [m.id, _dumps(doc), first, iso(m.created_at), to_ms(m.created_at)]
        return [*args, m.conversation_id, int(inbound_whatsapp)]

    def _log_keys(self) -> list[str]:
        return [f"{self._p}events:seq", f"{self._p}events"]

    async def submit_outbound(
        self,
        message: Message,
        charge: Charge | None,
        job: Job,
        events: list[Event],
        limits: Sequence[Limit] = (),
    ) -> list[Event]:
        """Take the limits' slots, book the charge, insert the message, enqueue the job,
        append events: all or none, in the one script (and round trip) of the send."""
        state, score = _job_slot(job)
        p, period = self._p, charge.period if charge else "-"
        keys = self._message_keys(message)
        keys += [f"{p}job:{job.id}", f"{p}jobs:{state}", f"{p}ledger:{message.team_id}:{period}"]
        keys += self._log_keys()
        doc = message.to_dict()
        if charge is not None:  # the object gets it only once the script has succeeded
            doc["charged_period"] = charge.period
        args = self._message_args(message, doc, False)
        args += [job.id, _dumps(job.to_dict()), score]
        candidates: dict[int, str] = {}
        if charge is None:
            args += ["", 0, 0, 0, 0, len(events), *map(event_doc, events)]
        else:
            args += [f"{charge.member_id}:{charge.channel}", charge.units, charge.included]
            args += [charge.overage_price_micros, charge.credit_limit_micros]
            args += [len(events), *map(event_doc, events)]
            # Only the script knows the usage, so it picks the thresholds crossed and
            # splices the usage into these documents (events are built only for those).
            for pct in charge.thresholds:
                candidates[pct] = event_id = new_id("evt")
                head, tail = _threshold_parts(charge, pct, event_id, message.created_at)
                args += [pct, head, tail]
        for limit in limits:  # KEYS 13… and the last 2 ARGV per limit (see the script)
            keys.append(self._k("rate", limit.key))
            args += [limit.cap, limit.window_ms]
        reply = await self._run_batched("submit_outbound", keys, args)
        # "1|crossed thresholds|event seqs|used after", or "0|overage|cost" when refused,
        # or "L|limit number|ms until it frees" when a limit is full, or "D" when the
        # message id is already stored.
        fields = _text(reply).split("|")
        if fields[0] == "D":
            raise MessageExists(message.id)
        if fields[0] == "L":
            raise limits[int(fields[1]) - 1].refusal(int(fields[2]))
        if fields[0] == "0":  # refused before the script wrote anything
            assert charge is not None
            raise CreditLimitExceeded(
                "this send would take the team's overage past its credit limit",
                overage_micros=int(fields[1]),
                cost_micros=int(fields[2]),
                credit_limit_micros=charge.credit_limit_micros,
            )
        if charge is not None:
            message.charged_period = charge.period
        out = list(events)
        for crossed in filter(None, fields[1].split(",")):
            assert charge is not None  # only a charge crosses thresholds
            pct = int(crossed)
            event = rules.threshold_event(charge, pct, int(fields[3]), message.created_at)
            event.id = candidates[pct]
            out.append(event)
        for ev, seq in zip(out, filter(None, fields[2].split(",")), strict=True):
            ev.seq = int(seq)
        return out

    async def store_inbound(
        self,
        message: Message,
        dedupe_key: str,
        events: list[Event],
        jobs: Sequence[Job] = (),
    ) -> tuple[Message, bool]:
        """Store an inbound message (and enqueue ``jobs``) unless its dedupe key was seen."""
        keys = [*self._message_keys(message), self._k("dedupe", dedupe_key), *self._log_keys()]
        keys += [self._k("jobs", "ready"), *(self._k("job", job.id) for job in jobs)]
        args = self._message_args(message, message.to_dict(), message.channel == "whatsapp")
        args += [len(events), *map(event_doc, events)]
        for job in jobs:
            state, score = _job_slot(job)
            if state != "ready":
                raise ValueError(f"job {job.id} must be ready to be enqueued, not {state}")
            args += [job.id, _dumps(job.to_dict()), score]
        reply = await self._run("store_inbound", keys, args)
        if reply[0] == 0:
            earlier = await self.get_message(reply[1])
            if earlier is None:  # cannot happen: one script writes the key and the message
                raise RuntimeError(f"inbound message {reply[1]} is indexed but missing")
            return earlier, False
        for ev, seq in zip(events, reply[1], strict=True):
            ev.seq = int(seq)
        return message, True

    async def get_message(self, message_id: str) -> Message | None:
        """The message, or None (read from the store, and kept for the next
        compare-and-set of this process, see ``_remember``)."""
        key = self._k("msg", message_id)
        raw = await self._read(key)
        self._remember(key, raw)
        return Message.from_dict(jsoncodec.loads(raw)) if raw is not None else None

    async def list_messages(
        self, flt: MessageFilter, cursor: str | None, limit: int
    ) -> Page[Message]:
        """Messages matching the filter, newest first (cursor = last id returned)."""
        if flt.conversation_id:
            index = self._k("conv", flt.conversation_id, "msgs")
        elif flt.member_id:
            index = self._k("member", flt.member_id, "msgs")
        else:
            index = self._k("team", flt.team_id, "msgs")
        top, batch = f"({cursor}" if cursor else "+", max(2 * (limit + 1), 50)
        found: list[Message] = []
        # The narrowest index yields ids newest first; the other filters read the docs
        # (status changes live in the doc only).
        while len(found) <= limit:
            ids = await self._r.zrange(index, top, "-", desc=True, bylex=True, offset=0, num=batch)
            found += [m for m in await self._many(Message, "msg", ids) if _matches(m, flt)]
            if len(ids) < batch:
                break
            top = f"({_text(ids[-1])}"
        items = found[:limit]
        return Page(items, items[-1].id if len(found) > limit else None)

    async def update_message(
        self, message_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        """Apply a status update atomically (forward only), retrying if the doc moved."""
        return await self._update(message_id, update, now)

    async def _update(
        self, message_id: str, update: StatusUpdate, now: datetime, connector_id: str | None = None
    ) -> tuple[Message, bool] | None:
        """``update_message``; with ``connector_id``, only while the message is on it."""
        key = self._k("msg", message_id)
        raw = self._known(key)  # tried first; the script refuses it if it is stale
        for _ in range(_CAS_TRIES):
            if raw is None:
                raw = await self._read(key)
            if raw is None:
                return None
            msg = Message.from_dict(jsoncodec.loads(raw))
            if connector_id is not None and msg.connector_id != connector_id:
                return msg, False
            changed, event, keys, args, parts = self._message_update(msg, raw, update, now)
            seq = int(await self._run_batched("update_message", keys, [*args, *parts]))
            if seq >= 0:
                if event is not None:
                    event.seq = seq
                self._remember(key, str(args[1]))
                self._remember_carrier(msg, args, parts)
                return msg, changed
            raw = None  # moved: read it again
        raise RuntimeError(f"message {message_id}: too much contention")

    def _message_update(
        self, msg: Message, raw: str, update: StatusUpdate, now: datetime
    ) -> tuple[bool, Event | None, list[str], list[str | int], list[str | int]]:
        """Apply ``update`` to ``msg`` (read as ``raw``) in memory; whether its status
        changed, its event, and the KEYS, ARGV 1-8 and more carrier ids of the
        ``update_message`` script (``complete_send`` takes the same)."""
        changed = rules.apply_update(msg, update, now)
        carrier = update.carrier_id if update.carrier_id and msg.connector_id else ""
        ledger = self._k("ledger", msg.team_id, msg.charged_period or "-")
        line = ""
        if update.release and msg.charged_period:
            line, msg.charged_period = f"{msg.member_id}:{msg.channel}", None
        event = rules.status_event(msg, now) if changed else None
        change = StatusChange(msg.id, msg.status, now, update.detail) if changed else None
        keys = [
            self._k("msg", msg.id),
            self._k("msg", msg.id, "history"),
            self._k("carrier", msg.connector_id or "-"),
        ]
        keys += [ledger, *self._log_keys()]
        args: list[str | int] = [raw, _dumps(msg.to_dict()), carrier, msg.id, line]
        args += [msg.units, _dumps(change.to_dict()) if change else ""]
        args.append(event_doc(event) if event else "")
        parts: list[str | int] = list(update.part_ids) if carrier else []
        return changed, event, keys, args, parts

    def _remember_carrier(
        self, msg: Message, args: list[str | int], parts: list[str | int]
    ) -> None:
        """Note the carrier ids just recorded for ``msg`` (ARGV 3 and the parts): the
        receipts for them mostly come back to this process, which then finds the message
        without a round trip. A carrier id names one message for good, and the update
        still checks that the message is on that connector."""
        if args[2]:
            for carrier_id in (args[2], *parts):
                key = self._k("carrier", msg.connector_id or "-", str(carrier_id))
                self._remember(key, msg.id)

    # -- the send and receipt paths: one script each ------------------------------------
    async def complete_send(
        self, message_id: str, update: StatusUpdate, job_id: str, token: str, now: datetime
    ) -> tuple[Message, bool] | None:
        """Apply ``update`` to the message and ack the job, in one script (retried if the
        message doc moved)."""
        key, job_key = self._k("msg", message_id), self._k("job", job_id)
        known = self._known(key), self._known(job_key)  # tried first (see _remember)
        for _ in range(_CAS_TRIES):
            if None in known:
                known = tuple(await self._read_many([key, job_key]))  # type: ignore[assignment]
            raw, job_raw = known
            if raw is None:
                await self.ack_job(job_id, token)
                return None
            held = ""  # the job doc the script deletes if it is still this one
            indexes = [self._k("jobs", "ready"), self._k("jobs", "leased")]
            if job_raw is not None:
                job = Job.from_dict(jsoncodec.loads(job_raw))
                if job.state == "leased" and job.token == token:
                    held = _text(job_raw)
                indexes.append(self._parked(job.kind))  # an expired lease may be parked
            else:
                indexes.append(self._k("jobs", "dead"))  # nothing to remove: any key
            msg = Message.from_dict(jsoncodec.loads(raw))
            changed, event, keys, args, parts = self._message_update(msg, _text(raw), update, now)
            keys += [job_key, *indexes]
            reply = await self._run_batched("complete_send", keys, [*args, held, job_id, *parts])
            seq = int(reply[0])
            if seq >= 0:
                if event is not None:
                    event.seq = seq
                self._remember(key, str(args[1]))
                self._remember(job_key, None)
                self._remember_carrier(msg, args, parts)
                return msg, changed
            known = (None, None)  # moved: read both again
        raise RuntimeError(f"message {message_id}: too much contention")

    async def update_by_carrier_id(
        self, connector_id: str, carrier_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        """Find the message by its carrier id and apply ``update`` (unless it moved to
        another connector since)."""
        message_id = self._known(self._k("carrier", connector_id, carrier_id))
        if message_id is None:
            # Recorded by another process (an SMSC spreads receipts over the binds): the
            # id and the doc in one read, the doc then tried first by the update.
            found = await self._run_batched(
                "read_by_carrier", [self._k("carrier", connector_id)],
                [carrier_id, self._k("msg", "")],
            )  # fmt: skip
            if found is None:
                return None
            message_id, raw = _text(found[0]), found[1]
            if raw is not None:
                self._remember(self._k("msg", message_id), _text(raw))
        return await self._update(message_id, update, now, connector_id)

    # -- end of the send and receipt paths ----------------------------------------------
    async def message_by_carrier_id(self, connector_id: str, carrier_id: str) -> Message | None:
        """The message a carrier knows by ``carrier_id``."""
        message_id = await self._r.hget(self._k("carrier", connector_id), carrier_id)
        return await self.get_message(_text(message_id)) if message_id is not None else None

    async def reroute_message(
        self, message_id: str, reroute: Reroute, charge: Charge, job: Job | None, now: datetime
    ) -> tuple[Message, bool] | None:
        """Move a message to another channel: release, charge, requeue — one script,
        retried if the message doc moved meanwhile."""
        key = self._k("msg", message_id)
        for _ in range(_CAS_TRIES):
            raw = await self._r.get(key)
            if raw is None:
                return None
            msg = Message.from_dict(jsoncodec.loads(raw))
            if not rules.can_reroute(msg, reroute):
                return msg, False
            release = f"{msg.member_id}:{msg.channel}" if msg.charged_period else ""
            keys = [key, self._k("msg", msg.id, "history")]
            keys += [self._k("ledger", msg.team_id, msg.charged_period or "-")]
            keys += [self._k("ledger", charge.team_id, charge.period), *self._log_keys()]
            keys += [self._k("job", job.id if job else "-"), self._k("jobs", "ready")]
            released = msg.units
            rules.apply_reroute(msg, reroute, charge.period, now)
            event = rules.status_event(msg, now)
            change = StatusChange(msg.id, msg.status, now, reroute.detail)
            args: list[str | int] = [_text(raw), _dumps(msg.to_dict()), release, released]
            args += [f"{charge.member_id}:{charge.channel}", charge.units, charge.included]
            args += [charge.overage_price_micros, charge.credit_limit_micros]
            args += [_dumps(change.to_dict()), event_doc(event)]
            if job is not None:
                state, score = _job_slot(job)
                if state != "ready":
                    raise ValueError(f"job {job.id} must be ready to be enqueued, not {state}")
                args += [job.id, _dumps(job.to_dict()), score]
            else:
                args += ["", "", 0]
            candidates: dict[int, str] = {}
            for pct in charge.thresholds:
                candidates[pct] = event_id = new_id("evt")
                head, tail = _threshold_parts(charge, pct, event_id, now)
                args += [pct, head, tail]
            fields = _text(await self._run("reroute_message", keys, args)).split("|")
            if fields[0] == "-1":
                continue  # the doc changed since it was read: read it again
            if fields[0] == "0":  # refused before the script wrote anything
                raise CreditLimitExceeded(
                    "this send would take the team's overage past its credit limit",
                    overage_micros=int(fields[1]),
                    cost_micros=int(fields[2]),
                    credit_limit_micros=charge.credit_limit_micros,
                )
            events = [event]
            for crossed in filter(None, fields[1].split(",")):
                pct = int(crossed)
                threshold = rules.threshold_event(charge, pct, int(fields[3]), now)
                threshold.id = candidates[pct]
                events.append(threshold)
            for ev, seq in zip(events, filter(None, fields[2].split(",")), strict=True):
                ev.seq = int(seq)
            return msg, True
        raise RuntimeError(f"message {message_id}: too much contention")

    async def status_history(self, message_id: str) -> list[StatusChange]:
        """The message's status changes, oldest first."""
        rows = await self._r.lrange(self._k("msg", message_id, "history"), 0, -1)
        return [StatusChange.from_dict(jsoncodec.loads(r)) for r in rows]

    # -- quota ledger ----------------------------------------------------------------
    async def ledger(self, team_id: str, period: str) -> tuple[list[LedgerLine], int]:
        """Units used per member and channel, and the team's overage cost."""
        fields = await self._r.hgetall(self._k("ledger", team_id, period))
        lines, overage = [], 0
        for name, value in fields.items():
            kind, _, line = _text(name).partition(":")
            if kind == "overage":
                overage = int(value)
            elif kind == "used":
                member_id, _, channel = line.rpartition(":")
                lines.append(LedgerLine(member_id, channel, period, int(value)))
        lines.sort(key=lambda ln: (ln.member_id, ln.channel))
        return lines, overage

    # -- jobs: see redis_jobs.RedisJobs -----------------------------------------------
    # -- events ----------------------------------------------------------------------
    async def append_events(self, events: list[Event]) -> list[Event]:
        """Append events and number them."""
        if events:
            seqs = await self._run("append_events", self._log_keys(), [*map(event_doc, events)])
            for ev, seq in zip(events, seqs, strict=True):
                ev.seq = int(seq)
        return events

    async def list_events(self, after_seq: int, limit: int) -> list[Event]:
        """Events after ``after_seq``, oldest first."""
        rows = await self._r.zrange(
            self._k("events"), f"({after_seq}", "+inf", byscore=True, offset=0, num=limit
        )
        out = []
        for row in rows:
            seq, _, doc = _text(row).partition(" ")
            out.append(Event.from_dict(jsoncodec.loads(doc)))
            out[-1].seq = int(seq)
        return out

    async def prune_events(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events created before ``before``: they
        are read (one ZRANGE) and the old ones removed by score (events are only ever
        appended with higher seqs, so nothing newer is in that range)."""
        cutoff = iso(before)
        rows = await self._r.zrange(self._k("events"), 0, limit - 1)
        last = None
        for row in rows:
            seq, _, doc = _text(row).partition(" ")
            if str(jsoncodec.loads(doc).get("created_at", "")) >= cutoff:
                break
            last = int(seq)
        if last is None:
            return 0
        return int(await self._r.zremrangebyscore(self._k("events"), "-inf", last))

    async def events_at(self, seqs: Sequence[int]) -> list[Event]:
        """The events with these seqs, in seq order (one round trip)."""
        wanted = sorted(set(seqs))
        if not wanted:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for seq in wanted:
                pipe.zrange(self._k("events"), seq, seq, byscore=True)
            results = await pipe.execute()
        out = []
        for rows in results:
            for row in rows:
                number, _, doc = _text(row).partition(" ")
                out.append(Event.from_dict(jsoncodec.loads(doc)))
                out[-1].seq = int(number)
        return out

    # -- idempotency -----------------------------------------------------------------
    async def idem_claim(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        ttl: timedelta,
        ref: str | None = None,
    ) -> IdemRecord | None:
        """Claim an idempotency key (with ``ref``), or return the record that holds it."""
        args: list[str | int] = [to_ms(now), fingerprint, to_ms(now + ttl), _gc_ms(ttl)]
        rec = await self._run("idem_claim", [self._k("idem", scope, key)], [*args, ref or ""])
        if rec is None:
            return None
        fp, code, body, held = rec
        if code != "":
            return IdemRecord(fp, int(code), body)
        return IdemRecord(fp, None, None, held or None)

    async def idem_complete(
        self,
        scope: str,
        key: str,
        status_code: int,
        body: str,
        now: datetime,
        keep: timedelta = IDEM_KEEP,
    ) -> None:
        """Store the response for a claimed key (kept for ``keep``)."""
        args: list[str | int] = [status_code, body, to_ms(now + keep), _gc_ms(keep)]
        await self._run("idem_complete", [self._k("idem", scope, key)], args)

    async def prune_idempotency(self, now: datetime, limit: int) -> int:
        """Nothing to do: every record's key expires in Redis by itself."""
        return 0

    async def idem_release(self, scope: str, key: str) -> None:
        """Drop a claim."""
        await self._r.delete(self._k("idem", scope, key))
