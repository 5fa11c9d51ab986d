"""``Coordination`` (``gateway/coordination.py``) on the Redis store, shared by every
process on it. Each operation is one Lua script on the Redis server's clock (``TIME``),
so processes on several machines agree on when a lease or a pause ends.

Keys (P = the store's prefix)::

    P:co:slot:{name}      hash  slot index → "owner|until ms"
    P:co:tat:{name}       string  the rate's theoretical arrival time (ms), expiring
    P:co:val:{name}       string  a value with a lifetime
    P:co:parts:{name}     hash  part index → value, "#total", "#first" (ms), "#claimed"
    P:co:partsets         zset  incomplete sets by the time of their first part (ms)
    P:co:partsdone:{name} string  the part indexes a delivered set held ("1,2,3")
"""

from __future__ import annotations

from typing import Any, cast

from gateway.coordination import PartSet, PartState
from gateway.store.redis_backend import RedisBackend

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
SCRIPTS = {
    # KEYS: slot hash; ARGV: count, owner, lease ms → index or -1
    "co_claim_slot": _NOW
    + """
for i = 0, tonumber(ARGV[1]) - 1 do
  local v = redis.call('HGET', KEYS[1], i)
  if not v or tonumber(string.match(v, '|(%d+)$')) <= now then
    redis.call('HSET', KEYS[1], i, ARGV[2] .. '|' .. (now + tonumber(ARGV[3])))
    return i
  end
end
return -1
""",
    # KEYS: slot hash; ARGV: index, owner, lease ms ('' = release) → 1 held, 0 not
    "co_renew_slot": _NOW
    + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local owner, untl = string.match(v, '^(.*)|(%d+)$')
if owner ~= ARGV[2] or tonumber(untl) <= now then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
redis.call('HSET', KEYS[1], ARGV[1], owner .. '|' .. (now + tonumber(ARGV[3])))
return 1
""",
    # KEYS: slot hash; ARGV: count → slots held now
    "co_slots_held": _NOW
    + """
local n = 0
for i = 0, tonumber(ARGV[1]) - 1 do
  local v = redis.call('HGET', KEYS[1], i)
  if v and tonumber(string.match(v, '|(%d+)$')) > now then n = n + 1 end
end
return n
""",
    # GCRA. KEYS: tat; ARGV: interval ms, burst, pause ms ('' = reserve) → wait in µs
    "co_reserve": _NOW
    + """
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if ARGV[3] ~= '' then
  local resume = now + tonumber(ARGV[3]) + (tonumber(ARGV[2]) - 1) * interval
  if resume > tat then tat = resume end
  redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now) + 60000)
  return 0
end
if tat < now then tat = now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 60000)
local wait = tat - (tonumber(ARGV[2]) - 1) * interval - now
if wait < 0 then return 0 end
return math.floor(wait * 1000)
""",
    # KEYS: parts hash, partsets, done; ARGV: name, index, total, value, remember ms
    # → {state, total, index, value, index, value …}
    "co_add_part": _NOW
    + """
local done = redis.call('GET', KEYS[3])
if done then
  for i in string.gmatch(done, '%d+') do
    if i == ARGV[2] then return {'duplicate'} end
  end
  return {'late'}
end
local fresh = redis.call('HSETNX', KEYS[1], '#total', ARGV[3])
if fresh == 1 then
  redis.call('HSET', KEYS[1], '#first', now)
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) * 4 + 86400000)
end
local known = redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
if known or redis.call('HEXISTS', KEYS[1], '#claimed') == 1 then return {'held'} end
local total = tonumber(redis.call('HGET', KEYS[1], '#total'))
if redis.call('HLEN', KEYS[1]) - 2 < total then return {'held'} end
redis.call('HSET', KEYS[1], '#claimed', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
local out = {'complete', total}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) ~= '#' then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
end
return out
""",
    # KEYS: parts hash, partsets, done; ARGV: name, held indexes, remember ms
    "co_finish_parts": """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return 1
""",
    # KEYS: partsets; ARGV: prefix of the P:co:parts: keys, name prefix, timeout ms, limit
    # → {name, total, n, index, value …} per set claimed
    "co_expired_parts": _NOW
    + """
local names = redis.call('ZRANGE', KEYS[1], '-inf', now - tonumber(ARGV[3]), 'BYSCORE',
                         'LIMIT', 0, tonumber(ARGV[4]) * 4)
local out = {}
local taken = 0
for _, name in ipairs(names) do
  if taken >= tonumber(ARGV[4]) then break end
  if string.sub(name, 1, #ARGV[2]) == ARGV[2] then
    redis.call('ZREM', KEYS[1], name)
    local key = ARGV[1] .. name
    if redis.call('HEXISTS', key, '#claimed') == 0 and redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, '#claimed', 1)
      local all = redis.call('HGETALL', key)
      local parts = {}
      for i = 1, #all, 2 do
        if string.sub(all[i], 1, 1) ~= '#' then
          parts[#parts + 1] = all[i]; parts[#parts + 1] = all[i + 1]
        end
      end
      out[#out + 1] = name
      out[#out + 1] = redis.call('HGET', key, '#total')
      out[#out + 1] = #parts
      for _, p in ipairs(parts) do out[#out + 1] = p end
      taken = taken + 1
    end
  end
end
return out
""",
    # KEYS: parts hash, partsets; ARGV: name
    "co_return_parts": """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], '#claimed')
redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], '#first'), ARGV[1])
return 1
""",
}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisCoordination:
    """:class:`gateway.coordination.Coordination` on one Redis database."""

    spans_processes = True

    def __init__(self, backend: RedisBackend) -> None:
        self._b = backend
        backend.register_scripts(SCRIPTS)

    def _k(self, *parts: str) -> str:
        return self._b.key("co", *parts)

    async def _call(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        return await self._b.call(name, keys, args)

    async def claim_slot(self, name: str, count: int, owner: str, lease: float) -> int | None:
        """See :meth:`Coordination.claim_slot`."""
        index = int(await self._call("co_claim_slot", [self._k("slot", name)],
                                     [count, owner, _ms(lease)]))  # fmt: skip
        return None if index < 0 else index

    async def renew_slot(self, name: str, index: int, owner: str, lease: float) -> bool:
        """See :meth:`Coordination.renew_slot`."""
        key = [self._k("slot", name)]
        return bool(await self._call("co_renew_slot", key, [index, owner, _ms(lease)]))

    async def release_slot(self, name: str, index: int, owner: str) -> None:
        """See :meth:`Coordination.release_slot`."""
        await self._call("co_renew_slot", [self._k("slot", name)], [index, owner, ""])

    async def slots_held(self, name: str, count: int) -> int:
        """See :meth:`Coordination.slots_held`."""
        return int(await self._call("co_slots_held", [self._k("slot", name)], [count]))

    async def reserve(self, name: str, rate: float, burst: int) -> float:
        """See :meth:`Coordination.reserve`."""
        args: list[str | int] = [str(1000.0 / rate), burst, ""]
        return int(await self._call("co_reserve", [self._k("tat", name)], args)) / 1e6

    async def push_back(self, name: str, seconds: float, rate: float, burst: int) -> None:
        """See :meth:`Coordination.push_back`."""
        args: list[str | int] = [str(1000.0 / rate), burst, _ms(seconds)]
        await self._call("co_reserve", [self._k("tat", name)], args)

    async def get(self, name: str) -> str | None:
        """See :meth:`Coordination.get`."""
        return cast(str | None, await self._b.client.get(self._k("val", name)))

    async def put(self, name: str, value: str, ttl: float) -> None:
        """See :meth:`Coordination.put`."""
        await self._b.client.set(self._k("val", name), value, px=_ms(ttl))

    async def delete(self, name: str) -> None:
        """See :meth:`Coordination.delete`."""
        await self._b.client.delete(self._k("val", name))

    def _part_keys(self, name: str) -> list[str]:
        return [self._k("parts", name), self._k("partsets"), self._k("partsdone", name)]

    async def add_part(
        self, name: str, index: int, total: int, value: str, remember: float
    ) -> tuple[PartState, PartSet | None]:
        """See :meth:`Coordination.add_part`."""
        reply = await self._call("co_add_part", self._part_keys(name),
                                 [name, index, total, value, _ms(remember)])  # fmt: skip
        state = cast(PartState, str(reply[0]))
        if state != "complete":
            return state, None
        parts = {int(reply[i]): str(reply[i + 1]) for i in range(2, len(reply), 2)}
        return state, PartSet(name, int(reply[1]), parts)

    async def finish_parts(self, part_set: PartSet, remember: float) -> None:
        """See :meth:`Coordination.finish_parts`."""
        held = ",".join(str(i) for i in sorted(part_set.parts))
        await self._call("co_finish_parts", self._part_keys(part_set.name),
                         [part_set.name, held, _ms(remember)])  # fmt: skip

    async def expired_parts(self, prefix: str, timeout: float, limit: int) -> list[PartSet]:
        """See :meth:`Coordination.expired_parts`."""
        reply = await self._call("co_expired_parts", [self._k("partsets")],
                                 [self._k("parts", ""), prefix, _ms(timeout), limit])  # fmt: skip
        out: list[PartSet] = []
        i = 0
        while i < len(reply):
            name, total, n = str(reply[i]), int(reply[i + 1]), int(reply[i + 2])
            flat = reply[i + 3 : i + 3 + n]
            parts = {int(flat[j]): str(flat[j + 1]) for j in range(0, n, 2)}
            out.append(PartSet(name, total, parts))
            i += 3 + n
        return out

    async def return_parts(self, part_set: PartSet) -> None:
        """See :meth:`Coordination.return_parts`."""
        keys = self._part_keys(part_set.name)[:2]
        await self._call("co_return_parts", keys, [part_set.name])
