"""The webhooks' storage on Redis: keys beside the core's, one Lua script per atomic step.

Every call goes through the store's ``RedisBackend`` (``gateway/store/redis_backend.py``):
its client, its key prefix P, and these scripts, registered on it when the role opens. The
attempts' finishes, the fan-out and requeues share the core's batched, pipelined round
trips (``call_batched``). Keys, with P the store's prefix:

    P:whep:{id} endpoint doc   P:whep:{id}:failing ms   P:team:{t}:wheps / P:wheps zsets
    P:wh:version counter       P:wh:cursor hash seq|owner|lease   P:wh:due zset
    P:whd:{id} delivery hash   P:whd:{id}:log list      P:whep:{id}:whd zset (score seq)
    P:whlane:{lane} zset of the lane's pending deliveries (score seq)
    P:wh:done zset of finished deliveries (score: when they finished, ms), for retention

Times are the caller's ``now`` in ms, never Redis TIME.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis

from gateway import jsoncodec
from gateway.errors import Conflict
from gateway.models import from_ms, to_ms
from gateway.store.base import Page
from gateway.store.redis_backend import RedisBackend
from webhooks.models import (
    DELIVERY_PENDING,
    WEBHOOK_LOG_KEEP,
    Delivery,
    DeliveryOutcome,
    FinishResult,
    WebhookEndpoint,
)

_CAS_TRIES = 1000  # each failed compare-and-set means another caller made progress
_FIELDS = ["d", "st", "n", "due", "tok", "lane", "last", "up"]


def _dumps(doc: dict[str, Any]) -> str:
    return jsoncodec.dumps(doc)


def _text(value: object) -> str:
    # decode_responses=True hands back str; redis-py's types also allow bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


# A delivery is a hash: d (its fixed fields as JSON), st (status), n (attempts), due (ms or
# ''), tok (lease token or ''), lane, last (the last attempt's JSON or ''), up (ms); its log
# is a list beside it. Only lane heads and leases are in the due zset. A lane zset holds
# the lane's pending deliveries (score = seq); an unordered delivery passes its own hash
# key as its lane key and has none.
SCRIPTS = {
    # KEYS: doc, team's endpoints, all endpoints, version; ARGV: id, doc, max per team
    "wh_create_endpoint": """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('INCR', KEYS[4])
return 1
""",
    # KEYS: doc, failing since, version; ARGV: version expected, new doc, '1' = reset
    "wh_update_endpoint": """
local raw = redis.call('GET', KEYS[1])
if not raw or cjson.decode(raw).version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
redis.call('INCR', KEYS[3])
return 1
""",
    # KEYS: doc, failing since, team's endpoints, all endpoints, version; ARGV: id
    "wh_delete_endpoint": """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('INCR', KEYS[5])
return 1
""",
    # KEYS: due, endpoint's deliveries, then per delivery: hash, log, lane
    # ARGV: the delivery ids
    "wh_drop_deliveries": """
for i, id in ipairs(ARGV) do
  local b = 3 * i
  if KEYS[b + 2] ~= KEYS[b] then redis.call('ZREM', KEYS[b + 2], id) end
  redis.call('DEL', KEYS[b], KEYS[b + 1])
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ARGV
""",
    # KEYS: cursor; ARGV: owner, now ms, lease until ms → the cursor, or -1 (held)
    "wh_lease_fanout": """
local cur = redis.call('HMGET', KEYS[1], 'seq', 'owner', 'lease')
if cur[2] and cur[2] ~= ARGV[1] and tonumber(cur[3]) > tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease', ARGV[3])
return tonumber(cur[1]) or 0
""",
    # KEYS: 1 cursor, 2 version, 3 due, then per delivery: hash, lane, endpoint's list
    # ARGV: 1 after seq, 2 new seq, 3 version, 4 token, 5 lease until ms, 6 lease
    # limit, 7 now ms, then per delivery: id, fixed doc, lane, seq → leased ids or nil
    "wh_fanout": """
if (tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0) ~= tonumber(ARGV[1]) then
  return false
end
if (tonumber(redis.call('GET', KEYS[2])) or 0) ~= tonumber(ARGV[3]) then return false end
redis.call('HSET', KEYS[1], 'seq', ARGV[2])
local leased, limit, now = {}, tonumber(ARGV[6]), ARGV[7]
for i = 0, (#ARGV - 7) / 4 - 1 do
  local a, k = 8 + 4 * i, 4 + 3 * i
  local id = ARGV[a]
  if redis.call('EXISTS', KEYS[k]) == 0 then
local head = true
if KEYS[k + 1] ~= KEYS[k] then
  head = redis.call('ZCARD', KEYS[k + 1]) == 0
  redis.call('ZADD', KEYS[k + 1], ARGV[a + 3], id)
end
local n, due, tok = 0, '', ''
if head and #leased < limit then
  n, due, tok = 1, ARGV[5], ARGV[4]
  leased[#leased + 1] = id
elseif head then
  due = now
end
redis.call('HSET', KEYS[k], 'd', ARGV[a + 1], 'st', 'pending', 'n', n, 'due', due,
  'tok', tok, 'lane', ARGV[a + 2], 'last', '', 'up', now)
if due ~= '' then redis.call('ZADD', KEYS[3], due, id) end
redis.call('ZADD', KEYS[k + 2], ARGV[a + 3], id)
  end
end
return leased
""",
    # KEYS: 1 due, then the deliveries' hashes; ARGV: 1 now ms, 2 token, 3 lease until
    # ms, 4 limit, then the candidate ids → per leased delivery: d, st, n, lane, last
    "wh_lease": """
local out = {}
for i = 5, #ARGV do
  if #out >= tonumber(ARGV[4]) then break end
  local id, key = ARGV[i], KEYS[i - 3]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= tonumber(ARGV[1]) then
if redis.call('EXISTS', key) == 1 then
  local n = redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 'tok', ARGV[2], 'due', ARGV[3], 'up', ARGV[1])
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  local f = redis.call('HMGET', key, 'd', 'st', 'lane', 'last')
  out[#out + 1] = {f[1], f[2], n, f[3], f[4]}
else
  redis.call('ZREM', KEYS[1], id)  -- its endpoint was deleted
end
  end
end
return out
""",
    # KEYS: 1 hash, 2 log, 3 due, 4 lane, 5 next in the lane's hash, 6 endpoint's
    # failing since, 7 the finished deliveries (retention). ARGV: 1 id, 2 token,
    # 3 status, 4 due ms ('' = none), 5 attempt record, 6 now ms, 7 next id ('' = none),
    # 8 endpoint ok ('1', '0', ''), 9 log entries kept → {1, failing since ms or '',
    # promoted id or ''}, {0} (lease lost) or {-1, next id} (the lane's next is not
    # ARGV[7]: nothing written)
    "wh_finish": """
if ARGV[2] == '' or redis.call('HGET', KEYS[1], 'tok') ~= ARGV[2] then return {0} end
local ordered, final = KEYS[4] ~= KEYS[1], ARGV[3] ~= 'pending'
if final and ordered then
  local nxt = ''
  for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, 1)) do
if m ~= ARGV[1] then nxt = m break end
  end
  if nxt ~= ARGV[7] then return {-1, nxt} end
end
redis.call('HSET', KEYS[1], 'st', ARGV[3], 'due', ARGV[4], 'tok', '', 'last', ARGV[5],
  'up', ARGV[6])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[9]), -1)
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
local promoted = ''
if final and ordered then
  redis.call('ZREM', KEYS[4], ARGV[1])
  if ARGV[7] ~= '' and redis.call('HGET', KEYS[5], 'due') == '' then
redis.call('HSET', KEYS[5], 'due', ARGV[6], 'up', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[7])
promoted = ARGV[7]
  end
end
if final then redis.call('ZADD', KEYS[7], ARGV[6], ARGV[1]) end
if ARGV[8] == '1' then
  redis.call('DEL', KEYS[6])
elseif ARGV[8] == '0' then
  redis.call('SET', KEYS[6], ARGV[6], 'NX')
end
return {1, redis.call('GET', KEYS[6]) or '', promoted}
""",
    # KEYS: hash, due, endpoint's deliveries, finished ones; ARGV: id, fixed doc, seq, now ms
    # → the hash's d, st, n, due, tok, lane, last, up afterwards
    "wh_requeue": """
local f = redis.call('HMGET', KEYS[1], 'st', 'due', 'tok')
if not f[1] then
  redis.call('HSET', KEYS[1], 'd', ARGV[2], 'st', 'pending', 'n', 0, 'due', ARGV[4],
'tok', '', 'lane', ARGV[1], 'last', '', 'up', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
elseif f[1] ~= 'pending' then
  redis.call('HSET', KEYS[1], 'st', 'pending', 'n', 0, 'due', ARGV[4], 'lane', ARGV[1],
'up', ARGV[4])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
elseif f[3] == '' and f[2] ~= '' then
  redis.call('HSET', KEYS[1], 'due', ARGV[4], 'up', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
return redis.call('HMGET', KEYS[1], 'd', 'st', 'n', 'due', 'tok', 'lane', 'last', 'up')
""",
    # Retention. KEYS: done; ARGV: before ms, limit, P:whd: prefix, P:whep: prefix
    # → deliveries deleted (a requeued one left the done zset; a deleted one is gone)
    "wh_prune": """
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[1], 'BYSCORE',
                               'LIMIT', 0, tonumber(ARGV[2]))) do
  local key = ARGV[3] .. id
  local f = redis.call('HMGET', key, 'st', 'd')
  if f[1] and f[1] ~= 'pending' then
    local ep = cjson.decode(f[2])['endpoint_id']
    redis.call('ZREM', ARGV[4] .. ep .. ':whd', id)
    redis.call('DEL', key, key .. ':log')
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return n
""",
}


class RedisWebhookStore:
    """``WebhookStore`` on the Redis store's ``RedisBackend``."""

    def __init__(self, backend: RedisBackend) -> None:
        self._b = backend
        self._k = backend.key

    @classmethod
    async def open(cls, backend: RedisBackend) -> RedisWebhookStore:
        """The role on ``backend``, its scripts registered."""
        backend.register_scripts(SCRIPTS)
        return cls(backend)

    @property
    def _r(self) -> aioredis.Redis:
        return self._b.client

    def _lane_key(self, delivery_id: str, lane: str) -> str:
        return self._k("whd", delivery_id) if lane == delivery_id else self._k("whlane", lane)

    async def create_endpoint(self, endpoint: WebhookEndpoint, max_per_team: int) -> None:
        """Store a new endpoint unless the team has ``max_per_team`` already."""
        keys = [self._k("whep", endpoint.id), self._k("team", endpoint.team_id, "wheps")]
        keys += [self._k("wheps"), self._k("wh", "version")]
        args: list[str | int] = [endpoint.id, _dumps(endpoint.to_dict()), max_per_team]
        if not int(await self._b.call("wh_create_endpoint", keys, args)):
            raise Conflict(
                f"the team already has {max_per_team} webhook endpoints, the most it may",
                code="webhook_endpoint_limit",
            )

    async def _endpoints(self, ids: Sequence[object]) -> list[WebhookEndpoint]:
        keys: list[str] = []
        for i in ids:
            keys += [self._k("whep", _text(i)), self._k("whep", _text(i), "failing")]
        raws = await self._r.mget(keys) if keys else []
        out = []
        for doc, failing in zip(raws[::2], raws[1::2], strict=True):
            if doc is not None:
                since = from_ms(int(failing)) if failing else None
                out.append(WebhookEndpoint.from_dict(jsoncodec.loads(doc), since))
        return out

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint, or None."""
        found = await self._endpoints([endpoint_id])
        return found[0] if found else None

    async def list_endpoints(self, team_id: str | None) -> list[WebhookEndpoint]:
        """The team's (or every) endpoint, oldest first (ids sort by creation time)."""
        index = self._k("wheps") if team_id is None else self._k("team", team_id, "wheps")
        return await self._endpoints(await self._r.zrange(index, 0, -1))

    async def update_endpoint(self, endpoint: WebhookEndpoint, reset_failing: bool = False) -> bool:
        """Replace the endpoint if its stored version is the one before ``endpoint``'s."""
        keys = [self._k("whep", endpoint.id), self._k("whep", endpoint.id, "failing")]
        keys.append(self._k("wh", "version"))
        args: list[str | int] = [endpoint.version - 1, _dumps(endpoint.to_dict())]
        args.append("1" if reset_failing else "")
        return bool(int(await self._b.call("wh_update_endpoint", keys, args)))

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint, then its deliveries a chunk at a time."""
        endpoint = await self.get_endpoint(endpoint_id)
        if endpoint is None:
            return False
        keys = [self._k("whep", endpoint_id), self._k("whep", endpoint_id, "failing")]
        keys += [self._k("team", endpoint.team_id, "wheps"), self._k("wheps")]
        keys.append(self._k("wh", "version"))
        if not int(await self._b.call("wh_delete_endpoint", keys, [endpoint_id])):
            return False
        # The endpoint is gone (and the version moved, so no fan-out adds to it): what is
        # left can go in pieces.
        index = self._k("whep", endpoint_id, "whd")
        while ids := [_text(i) for i in await self._r.zrange(index, 0, 499)]:
            async with self._r.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hget(self._k("whd", i), "lane")
                lanes = await pipe.execute()
            keys = [self._k("wh", "due"), index]
            for i, lane in zip(ids, lanes, strict=True):
                keys += [self._k("whd", i), self._k("whd", i, "log")]
                keys.append(self._lane_key(i, _text(lane) if lane is not None else i))
            await self._b.call("wh_drop_deliveries", keys, list(ids))
        return True

    async def endpoints_version(self) -> int:
        """The endpoints' change counter."""
        return int(await self._r.get(self._k("wh", "version")) or 0)

    async def lease_fanout(self, owner: str, now: datetime, ttl: timedelta) -> int | None:
        """Take or renew the fan-out lease; the cursor, or None while another holds it."""
        args: list[str | int] = [owner, to_ms(now), to_ms(now + ttl)]
        cursor = int(await self._b.call("wh_lease_fanout", [self._k("wh", "cursor")], args))
        return None if cursor < 0 else cursor

    async def fanout(
        self,
        after_seq: int,
        new_seq: int,
        endpoints_version: int,
        deliveries: Sequence[Delivery],
        token: str,
        lease_until: datetime,
        lease_limit: int,
        now: datetime,
    ) -> list[Delivery] | None:
        """Advance the cursor and add deliveries, leasing the new lane heads (one script)."""
        keys = [self._k("wh", "cursor"), self._k("wh", "version"), self._k("wh", "due")]
        args: list[str | int] = [after_seq, new_seq, endpoints_version, token]
        args += [to_ms(lease_until), lease_limit, to_ms(now)]
        for d in deliveries:
            keys += [self._k("whd", d.id), self._lane_key(d.id, d.lane)]
            keys.append(self._k("whep", d.endpoint_id, "whd"))
            args += [d.id, _dumps(d.static_doc()), d.lane, d.seq]
        leased = await self._b.call_batched("wh_fanout", keys, args)
        if leased is None:
            return None
        chosen = {_text(i) for i in leased}
        out = []
        for d in deliveries:
            if d.id in chosen:
                d.status, d.attempts, d.token, d.due_at = DELIVERY_PENDING, 1, token, lease_until
                d.last_attempt, d.updated_at = None, now
                out.append(d)
        return out

    async def lease_deliveries(
        self, now: datetime, token: str, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries (earliest first)."""
        if limit < 1:
            return []
        due = self._k("wh", "due")
        now_ms = to_ms(now)
        out: list[Delivery] = []
        # Concurrent callers read the same candidates: take what is left, then read again
        # (a leased delivery's score moved past now) until the limit or the due ones end.
        while len(out) < limit:
            want = 2 * (limit - len(out))
            ids = [_text(i) for i in await self._r.zrange(due, "-inf", now_ms, byscore=True,
                                                          offset=0, num=want)]  # fmt: skip
            if not ids:
                break
            keys = [due, *(self._k("whd", i) for i in ids)]
            args: list[str | int] = [now_ms, token, to_ms(lease_until), limit - len(out), *ids]
            for doc, status, attempts, lane, last in await self._b.call("wh_lease", keys, args):
                d = Delivery.from_static(jsoncodec.loads(doc), _text(lane))
                d.status, d.attempts, d.token = _text(status), int(attempts), token
                d.due_at, d.updated_at = lease_until, now
                d.last_attempt = jsoncodec.loads(last) if last else None
                out.append(d)
            if len(ids) < want:
                break
        return out

    async def finish_delivery(
        self, delivery: Delivery, outcome: DeliveryOutcome, now: datetime
    ) -> FinishResult | None:
        """Record an attempt of a leased delivery; promote its lane's next on a final one."""
        lane = self._lane_key(delivery.id, delivery.lane)
        nxt = ""
        if outcome.status != DELIVERY_PENDING and lane != self._k("whd", delivery.id):
            members = await self._r.zrange(lane, 0, 1)
            nxt = next((_text(m) for m in members if _text(m) != delivery.id), "")
        pending = outcome.status == DELIVERY_PENDING
        due = to_ms(outcome.retry_at or now) if pending else ""
        ok = {True: "1", False: "0", None: ""}[outcome.endpoint_ok]
        for _ in range(_CAS_TRIES):
            keys = [self._k("whd", delivery.id), self._k("whd", delivery.id, "log")]
            keys += [self._k("wh", "due"), lane, self._k("whd", nxt or delivery.id)]
            keys.append(self._k("whep", delivery.endpoint_id, "failing"))
            keys.append(self._k("wh", "done"))
            args: list[str | int] = [delivery.id, delivery.token or "", outcome.status, due]
            args += [_dumps(outcome.attempt), to_ms(now), nxt, ok, WEBHOOK_LOG_KEEP]
            reply = await self._b.call_batched("wh_finish", keys, args)
            if int(reply[0]) == 0:
                return None
            if int(reply[0]) == -1:  # the lane changed since it was read: its next is this
                nxt = _text(reply[1])
                continue
            failing = from_ms(int(reply[1])) if reply[1] else None
            return FinishResult(failing, _text(reply[2]) or None)
        raise RuntimeError(f"delivery {delivery.id}: too much contention")

    def _delivery(self, fields: Sequence[Any]) -> Delivery:
        """A delivery from its hash fields d, st, n, due, tok, lane, last, up."""
        doc, status, attempts, due, token, lane, last, updated = map(_text, fields)
        d = Delivery.from_static(jsoncodec.loads(doc), lane)
        d.status, d.attempts, d.token = status, int(attempts), token or None
        d.due_at = from_ms(int(due)) if due else None
        d.last_attempt = jsoncodec.loads(last) if last else None
        d.updated_at = from_ms(int(updated))
        return d

    async def requeue_deliveries(
        self, deliveries: Sequence[Delivery], now: datetime
    ) -> list[Delivery]:
        """Send deliveries again, each in no lane (see the protocol); one script each."""
        calls = []
        for d in deliveries:
            keys = [self._k("whd", d.id), self._k("wh", "due")]
            keys.append(self._k("whep", d.endpoint_id, "whd"))
            keys.append(self._k("wh", "done"))
            args: list[str | int] = [d.id, _dumps(d.static_doc()), d.seq, to_ms(now)]
            calls.append(self._b.call_batched("wh_requeue", keys, args))
        return [self._delivery(fields) for fields in await asyncio.gather(*calls)]

    async def prune_deliveries(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` deliveries finished before ``before``, with their logs
        (one script: the oldest of the finished index)."""
        args: list[str | int] = [to_ms(before), limit, self._k("whd", ""), self._k("whep", "")]
        return int(await self._b.call("wh_prune", [self._k("wh", "done")], args))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery with its attempt log."""
        key = self._k("whd", delivery_id)
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hmget(key, _FIELDS)
            pipe.lrange(self._k("whd", delivery_id, "log"), 0, -1)
            fields, log = await pipe.execute()
        if fields[0] is None:
            return None
        d = self._delivery(fields)
        d.log = [jsoncodec.loads(r) for r in log]
        return d

    async def list_deliveries(
        self, endpoint_id: str, status: str | None, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """The endpoint's deliveries, newest event first (cursor: the last seq returned)."""
        index = self._k("whep", endpoint_id, "whd")
        top, batch = f"({int(cursor)}" if cursor else "+inf", max(2 * (limit + 1), 50)
        found: list[Delivery] = []
        while len(found) <= limit:
            ids = await self._r.zrange(index, top, "-inf", desc=True, byscore=True,
                                       offset=0, num=batch, withscores=True)  # fmt: skip
            if not ids:
                break
            async with self._r.pipeline(transaction=False) as pipe:
                for member, _score in cast(list[tuple[str, float]], ids):
                    pipe.hmget(self._k("whd", _text(member)), _FIELDS)
                rows = await pipe.execute()
            for fields in rows:
                if fields[0] is not None and (status is None or _text(fields[1]) == status):
                    found.append(self._delivery(fields))
            if len(ids) < batch:
                break
            top = f"({int(ids[-1][1])}"
        items = found[:limit]
        return Page(items, str(items[-1].seq) if len(found) > limit else None)
