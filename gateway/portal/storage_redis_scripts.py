"""The Lua scripts of ``storage_redis.py``: each check-and-write is one script.

Keys are ``P`` + a kind (``P`` = the store's prefix + ``:portal:``, passed as ARGV[1]):
``acct:{member}`` (JSON), ``acct_email`` (hash email → member), ``acct_team:{team}``
(zset), ``sess:{id}`` (JSON, expires with the session), ``sess_member:{member}`` (set),
``sum:{conversation}`` (JSON summary), ``inbox:{member}`` (zset by last activity in ms)
with its filter sets ``inbox:{member}:ch:{channel}``, ``:unread`` and ``:failed``,
``shead:{member}`` and ``stext:{member}`` (hashes of the folded search text),
``read:{member}`` (hash conversation → inbound messages seen) and ``idx`` (the index
cursor). One Redis node serves every key, so a script may reach the keys it derives.
"""

from __future__ import annotations

PUT_ACCOUNT = """
local P, member, email, doc, created = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local owner = redis.call('HGET', P .. 'acct_email', email)
if owner and owner ~= member then return 'email_taken' end
local old = redis.call('GET', P .. 'acct:' .. member)
if old then
  local prev = cjson.decode(old).email
  if prev ~= email then redis.call('HDEL', P .. 'acct_email', prev) end
end
local team = cjson.decode(doc).team_id
redis.call('SET', P .. 'acct:' .. member, doc)
redis.call('HSET', P .. 'acct_email', email, member)
redis.call('ZADD', P .. 'acct_team:' .. team, created, member)
return 'ok'
"""

UPDATE_ACCOUNT = """
-- ARGV[5] (optional): change only while the account's invitation is this job's.
local P, member, change, end_sessions = ARGV[1], ARGV[2], cjson.decode(ARGV[3]), ARGV[4]
local if_job = ARGV[5] or ''
local raw = redis.call('GET', P .. 'acct:' .. member)
if not raw then return 0 end
local doc = cjson.decode(raw)
if if_job ~= '' then
  local current = doc.invitation
  if type(current) ~= 'table' or current.job ~= if_job then return 0 end
end
for k, v in pairs(change) do doc[k] = v end
redis.call('SET', P .. 'acct:' .. member, cjson.encode(doc))
if end_sessions == '1' then
  local set = P .. 'sess_member:' .. member
  for _, id in ipairs(redis.call('SMEMBERS', set)) do redis.call('DEL', P .. 'sess:' .. id) end
  redis.call('DEL', set)
end
return 1
"""

CREATE_SESSION = """
-- ARGV[5]: milliseconds the session lives (from the caller's clock, not Redis TIME).
local P, id, member, doc, expires, replaces = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if replaces ~= '' then
  local old = redis.call('GET', P .. 'sess:' .. replaces)
  if old then
    redis.call('SREM', P .. 'sess_member:' .. cjson.decode(old).member_id, replaces)
    redis.call('DEL', P .. 'sess:' .. replaces)
  end
end
redis.call('SET', P .. 'sess:' .. id, doc, 'PX', expires)
redis.call('SADD', P .. 'sess_member:' .. member, id)
return 1
"""

TOUCH_SESSION = """
local P, id, seen = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('GET', P .. 'sess:' .. id)
if not raw then return 0 end
local doc = cjson.decode(raw)
doc.last_seen_at = seen
redis.call('SET', P .. 'sess:' .. id, cjson.encode(doc), 'KEEPTTL')
return 1
"""

END_SESSION = """
local P, id = ARGV[1], ARGV[2]
local raw = redis.call('GET', P .. 'sess:' .. id)
if not raw then return 0 end
redis.call('SREM', P .. 'sess_member:' .. cjson.decode(raw).member_id, id)
redis.call('DEL', P .. 'sess:' .. id)
return 1
"""

END_SESSIONS = """
local P, member = ARGV[1], ARGV[2]
local set = P .. 'sess_member:' .. member
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', set)) do
  n = n + redis.call('DEL', P .. 'sess:' .. id)
end
redis.call('DEL', set)
return n
"""

MARK_READ = """
local P, member, conv = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('GET', P .. 'sum:' .. conv)
local count = 0
if raw then count = tonumber(cjson.decode(raw).inbound_count) or 0 end
local old = tonumber(redis.call('HGET', P .. 'read:' .. member, conv)) or 0
if count > old then redis.call('HSET', P .. 'read:' .. member, conv, count) end
redis.call('ZREM', P .. 'inbox:' .. member .. ':unread', conv)
return 1
"""

# merge_change (storage.py) in Lua, then every set the conversation is in re-scored.
APPLY_INDEX = """
local P, after, new, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local cur = tonumber(redis.call('GET', P .. 'idx')) or 0
if cur ~= after then return 0 end
local function has(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end
for i = 5, #ARGV do
  local c = cjson.decode(ARGV[i])
  local skey = P .. 'sum:' .. c.conversation_id
  local raw = redis.call('GET', skey)
  local s
  if not raw then
    s = {conversation_id = c.conversation_id, team_id = c.team_id, member_id = c.member_id,
         member_number = c.member_number, remote_number = c.remote_number, last_at = c.at,
         last_ms = c.at_ms, last_message_id = c.message_id, last_text = c.text,
         last_channel = c.channel, last_direction = c.direction, last_status = c.status,
         channels = {}, contact_name = cjson.null, inbound_count = 0, failed = {},
         whatsapp_inbound_at = cjson.null}
  else
    s = cjson.decode(raw)
    if type(s.channels) ~= 'table' then s.channels = {} end
    if type(s.failed) ~= 'table' then s.failed = {} end
    local newer = c.at_ms > s.last_ms
      or (c.at_ms == s.last_ms and c.message_id >= s.last_message_id)
    if c.new_message and newer then
      s.last_at, s.last_ms, s.last_message_id = c.at, c.at_ms, c.message_id
      s.last_text, s.last_channel = c.text, c.channel
      s.last_direction, s.last_status = c.direction, c.status
    elseif c.message_id == s.last_message_id then
      s.last_status = c.status
      if c.text ~= cjson.null then s.last_text = c.text end
      s.last_channel = c.channel
    end
  end
  if not has(s.channels, c.channel) then
    table.insert(s.channels, c.channel)
    table.sort(s.channels)
  end
  if c.inbound then s.inbound_count = s.inbound_count + 1 end
  if c.failed and not has(s.failed, c.message_id) then table.insert(s.failed, c.message_id) end
  if c.contact_name ~= cjson.null and c.contact_name ~= '' then s.contact_name = c.contact_name end
  if c.whatsapp_inbound_at ~= cjson.null and (s.whatsapp_inbound_at == cjson.null
      or c.whatsapp_inbound_at > s.whatsapp_inbound_at) then
    s.whatsapp_inbound_at = c.whatsapp_inbound_at
  end
  redis.call('SET', skey, cjson.encode(s))
  local m, conv, score = s.member_id, s.conversation_id, s.last_ms
  local inbox = P .. 'inbox:' .. m
  redis.call('ZADD', inbox, score, conv)
  for _, ch in ipairs(s.channels) do redis.call('ZADD', inbox .. ':ch:' .. ch, score, conv) end
  if #s.failed > 0 then redis.call('ZADD', inbox .. ':failed', score, conv)
  else redis.call('ZREM', inbox .. ':failed', conv) end
  local read = tonumber(redis.call('HGET', P .. 'read:' .. m, conv)) or 0
  if s.inbound_count > read then redis.call('ZADD', inbox .. ':unread', score, conv)
  else redis.call('ZREM', inbox .. ':unread', conv) end
  if c.search_head ~= '' and (c.contact_name ~= cjson.null or
      redis.call('HEXISTS', P .. 'shead:' .. m, conv) == 0) then
    redis.call('HSET', P .. 'shead:' .. m, conv, c.search_head)
  end
  if c.search_text ~= '' then
    local text = (redis.call('HGET', P .. 'stext:' .. m, conv) or '') .. ' ' .. c.search_text
    if #text > keep then text = string.sub(text, -keep) end
    redis.call('HSET', P .. 'stext:' .. m, conv, text)
  end
end
redis.call('SET', P .. 'idx', new)
return 1
"""

# Walk the most selective set newest first, from the cursor on, keeping what matches.
LIST_INBOX = """
local P, member, primary = ARGV[1], ARGV[2], ARGV[3]
local cms, cid, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local ch, unread, failed, q = ARGV[7], ARGV[8] == '1', ARGV[9] == '1', ARGV[10]
local inbox = P .. 'inbox:' .. member
local out = {}
local max = '+inf'
if cms ~= '' then max = cms end
local offset = 0
-- Unfiltered, a page is the next limit + 1 entries (+1: the cursor's own, at most): read
-- just those first; filters read on in larger batches.
local size = limit + 2
if ch ~= '' or unread or failed or q ~= '' then size = 256 end
while #out <= limit do
  local batch = redis.call('ZREVRANGEBYSCORE', primary, max, '-inf', 'WITHSCORES',
                           'LIMIT', offset, size)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local conv, score = batch[i], batch[i + 1]
    local ok = true
    if cms ~= '' and tonumber(score) == tonumber(cms) and conv >= cid then ok = false end
    if ok and ch ~= '' and not redis.call('ZSCORE', inbox .. ':ch:' .. ch, conv) then ok = false end
    if ok and unread and not redis.call('ZSCORE', inbox .. ':unread', conv) then ok = false end
    if ok and failed and not redis.call('ZSCORE', inbox .. ':failed', conv) then ok = false end
    if ok and q ~= '' then
      local h = redis.call('HGET', P .. 'shead:' .. member, conv) or ''
      if not string.find(h, q, 1, true) then
        local t = redis.call('HGET', P .. 'stext:' .. member, conv) or ''
        if not string.find(t, q, 1, true) then ok = false end
      end
    end
    if ok then
      out[#out + 1] = conv
      if #out > limit then break end
    end
  end
  offset = offset + size
  size = 256
end
-- The page's summaries and read marks too: the whole page is one round trip.
if #out == 0 then return {out, {}, {}} end
local keys = {}
for i, conv in ipairs(out) do keys[i] = P .. 'sum:' .. conv end
local reads = redis.call('HMGET', P .. 'read:' .. member, unpack(out))
return {out, redis.call('MGET', unpack(keys)), reads}
"""

CLEAR_FAILED = """
local P, conv, msg = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('GET', P .. 'sum:' .. conv)
if not raw then return 0 end
local s = cjson.decode(raw)
local kept = {}
if type(s.failed) == 'table' then
  for _, v in ipairs(s.failed) do if v ~= msg then table.insert(kept, v) end end
end
s.failed = kept
redis.call('SET', P .. 'sum:' .. conv, cjson.encode(s))
if #kept == 0 then redis.call('ZREM', P .. 'inbox:' .. s.member_id .. ':failed', conv) end
return 1
"""

SCRIPTS = {
    "portal_put_account": PUT_ACCOUNT,
    "portal_update_account": UPDATE_ACCOUNT,
    "portal_create_session": CREATE_SESSION,
    "portal_touch_session": TOUCH_SESSION,
    "portal_end_session": END_SESSION,
    "portal_end_sessions": END_SESSIONS,
    "portal_mark_read": MARK_READ,
    "portal_apply_index": APPLY_INDEX,
    "portal_list_inbox": LIST_INBOX,
    "portal_clear_failed": CLEAR_FAILED,
}
