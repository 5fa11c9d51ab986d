"""The Lua scripts of the Redis store (``redis.py``): every check-and-write is one script.

Redis runs a script atomically, so each one is the transaction of one store operation;
the comments give each script's KEYS and ARGV. Times are the caller's, never Redis TIME.
"""

from __future__ import annotations

LUA_LIB = """
local function int(n) return string.format('%d', n) end
-- Append event docs to the log; returns their seqs. The last seq is published on the
-- channel named like the seq key, so that readers of the log need not poll it.
local function append_events(seq_key, log_key, docs)
  local seqs = {}
  for _, doc in ipairs(docs) do
    local seq = redis.call('INCR', seq_key)
    redis.call('ZADD', log_key, int(seq), int(seq) .. ' ' .. doc)
    seqs[#seqs + 1] = seq
  end
  if #seqs > 0 then redis.call('PUBLISH', seq_key, int(seqs[#seqs])) end
  return seqs
end
-- SqliteStore._ledger_add: (before, after), or (nil, overage, cost) past the limit.
local function ledger_add(key, line, delta, included, price, limit)
  local fu, fi, fp = 'used:' .. line, 'included:' .. line, 'price:' .. line
  local cur = redis.call('HMGET', key, fu, fi, fp, 'overage')
  local before = tonumber(cur[1]) or 0
  included = included or tonumber(cur[2]) or 0
  price = price or tonumber(cur[3]) or 0
  local after = math.max(0, before + delta)
  local cost = math.max(0, after - included) * price - math.max(0, before - included) * price
  local overage = tonumber(cur[4]) or 0
  if limit and cost > 0 and overage + cost > limit then return nil, overage, cost end
  redis.call('HSET', key, fu, int(after), fi, int(included), fp, int(price),
    'overage', int(math.max(0, overage + cost)))
  return before, after
end
-- Message scripts share KEYS 1-7 (message, team/member/conversation indexes, history,
-- conversation, team's conversations) and ARGV 1-7 (id, doc, first history entry,
-- created_at ISO, created_at ms, conversation id, '1' for inbound WhatsApp).
-- Decode before any write: a script is not rolled back if it fails half-way.
local function load_conv()
  local raw = redis.call('GET', KEYS[6])
  return raw and cjson.decode(raw)
end
local function put_message(conv)
  redis.call('SET', KEYS[1], ARGV[2])
  for i = 2, 4 do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
  redis.call('RPUSH', KEYS[5], ARGV[3])
  -- The score in the team's conversations is the conversation's last_message_at (reads
  -- take it from there); the doc is rewritten only when the WhatsApp window moves.
  redis.call('ZADD', KEYS[7], 'GT', ARGV[5], ARGV[6])
  if not conv then return end
  -- iso() always writes the same width, so the strings compare like the times.
  local at = ARGV[4]
  if at > conv.last_message_at then conv.last_message_at = at end
  local wa = conv.last_inbound_whatsapp_at
  if ARGV[7] == '1' and (wa == cjson.null or at > wa) then conv.last_inbound_whatsapp_at = at end
  -- A conversation doc holds only strings and nulls, so cjson re-encodes it faithfully.
  redis.call('SET', KEYS[6], cjson.encode(conv))
end
"""

SCRIPTS = {
    # KEYS: member, team's members, team's active set, number keys...
    # ARGV: id, doc, '1' if active, max active
    "create_member": """
if ARGV[3] == '1' and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  return {'plan_limit', 0}
end
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {'number_taken', i - 3} end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[1]) end
for i = 4, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end
return {'ok', 0}
""",
    # KEYS: member, team's active set; ARGV: id, '1' to activate / '0', max active.
    # Returns the member's new doc, 'plan_limit', or nil when it does not exist.
    "set_member_active": """
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local doc = cjson.decode(raw)
local active = ARGV[2] == '1'
if active and not doc.active and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return 'plan_limit'
end
doc.active = active
local out = cjson.encode(doc)
redis.call('SET', KEYS[1], out)
if active then redis.call('SADD', KEYS[2], ARGV[1]) else redis.call('SREM', KEYS[2], ARGV[1]) end
return out
""",
    # KEYS: triple, new conversation, team's conversations; ARGV: new id, doc, ms
    "conversation_for": """
local id = redis.call('GET', KEYS[1])
if id then return id end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return ARGV[1]
""",
    # KEYS: 1-7 message, 8 job, 9 job index, 10 ledger, 11 seq, 12 log
    # ARGV: 1-7 message, 8 job id, 9 job doc, 10 job score, 11 ledger line ('' = no
    # charge), 12 units, 13 included, 14 price, 15 limit, 16 n events, the event docs,
    # then per threshold: pct, doc before the usage, doc after it; then per send limit
    # (KEYS 13…, one sliding log each): cap, window ms.
    "submit_outbound": LUA_LIB
    + """
-- A message id that is already stored: a repeated send (see Store.submit_outbound).
if redis.call('EXISTS', KEYS[1]) == 1 then return 'D' end
local conv = nil  -- an outbound send moves only the activity score (see put_message)
local n, charged, before, after = tonumber(ARGV[16]), ARGV[11] ~= '', 0, 0
-- Send limits first: a full one refuses before anything is written (dropping expired
-- log entries changes no answer). The log holds one entry per accepted send; expired
-- ones are dropped only when they could matter (the log holds cap entries or more) and
-- every 64 entries, so a send usually costs one ZCARD per limit here.
local nlim = #KEYS - 12
local last = #ARGV - 2 * nlim
local now = tonumber(ARGV[5])
for j = 1, nlim do
  local key, cap = KEYS[12 + j], tonumber(ARGV[last + 2 * j - 1])
  local win = tonumber(ARGV[last + 2 * j])
  local held = redis.call('ZCARD', key)
  if held >= cap or (held > 0 and held % 64 == 0) then
    held = held - redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - win))
  end
  if held >= cap then  -- free again when the entry that puts it over the cap expires
    local at = redis.call('ZRANGE', key, held - cap, held - cap, 'WITHSCORES')
    return 'L|' .. j .. '|' .. int(tonumber(at[2]) + win - now)
  end
end
local included = tonumber(ARGV[13])
if charged then
  local a, b, c = ledger_add(KEYS[10], ARGV[11], tonumber(ARGV[12]), included,
    tonumber(ARGV[14]), tonumber(ARGV[15]))
  -- One flat string for a reply: sends are the hot path, and a nested array costs
  -- the client several reads to parse.
  if not a then return '0|' .. int(b) .. '|' .. int(c) end
  before, after = a, b
end
local docs, crossed = {}, {}
for i = 17, 16 + n do docs[#docs + 1] = ARGV[i] end
if charged and included > 0 then
  for i = 17 + n, last, 3 do  -- base.crossed_thresholds, on the same doubles
    local mark = included * tonumber(ARGV[i]) / 100
    if before < mark and mark <= after then
      crossed[#crossed + 1] = tonumber(ARGV[i])
      docs[#docs + 1] = ARGV[i + 1] .. int(after) .. ARGV[i + 2]
    end
  end
end
put_message(conv)
redis.call('SET', KEYS[8], ARGV[9])
redis.call('ZADD', KEYS[9], ARGV[10], ARGV[8])
local seqs = append_events(KEYS[11], KEYS[12], docs)
for j = 1, nlim do  -- the real expiry only collects garbage (2 windows: clock skew)
  redis.call('ZADD', KEYS[12 + j], ARGV[5], ARGV[1])
  redis.call('PEXPIRE', KEYS[12 + j], int(2 * tonumber(ARGV[last + 2 * j]) + 60000))
end
return '1|' .. table.concat(crossed, ',') .. '|' .. table.concat(seqs, ',') .. '|' .. int(after)
""",
    # KEYS: 1-7 message, 8 dedupe, 9 seq, 10 log, 11 ready jobs, 12... one per job
    # ARGV: 1-7 message, 8 n events, the event docs, then per job: id, doc, run_at ms
    "store_inbound": LUA_LIB
    + """
local prev = redis.call('GET', KEYS[8])
if prev then return {0, prev} end
local conv = load_conv()
redis.call('SET', KEYS[8], ARGV[1])
put_message(conv)
local n = tonumber(ARGV[8])
local docs = {}
for i = 9, 8 + n do docs[#docs + 1] = ARGV[i] end
local k = 12
for i = 9 + n, #ARGV, 3 do
  redis.call('SET', KEYS[k], ARGV[i + 1])
  redis.call('ZADD', KEYS[11], ARGV[i + 2], ARGV[i])
  k = k + 1
end
return {1, append_events(KEYS[9], KEYS[10], docs)}
""",
    # KEYS: message, history, carrier index, ledger, seq, log
    # ARGV: doc read, new doc, carrier id, message id, ledger line to release, units,
    # history entry, status event ('' = none for each optional part), then more carrier ids
    "update_message": LUA_LIB
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) end
-- ARGV[9..]: the other parts' carrier ids of a multi-part message.
for i = 9, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[4]) end
-- The doc read still had charged_period set, so this release happens exactly once.
if ARGV[5] ~= '' then ledger_add(KEYS[4], ARGV[5], -tonumber(ARGV[6])) end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end
if ARGV[8] == '' then return 0 end
return append_events(KEYS[5], KEYS[6], {ARGV[8]})[1]
""",
    # KEYS: message, history, ledger of the release, ledger of the charge, seq, log, job,
    # ready jobs. ARGV: 1 doc read, 2 new doc, 3 line to release ('' = none), 4 units
    # released, 5 line to charge, 6 units, 7 included, 8 price, 9 limit, 10 history
    # entry, 11 status event, 12 job id ('' = none), 13 job doc, 14 job score, then per
    # threshold: pct, doc before the usage, doc after it.
    "reroute_message": LUA_LIB
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return '-1' end
local units, included, price = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
-- Check the charge against the overage as it stands after the release, before writing
-- anything: a script is not rolled back.
local released = 0
if ARGV[3] ~= '' then
  local l = ARGV[3]
  local cur = redis.call('HMGET', KEYS[3], 'used:' .. l, 'included:' .. l, 'price:' .. l)
  local used, inc, pr = tonumber(cur[1]) or 0, tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
  local left = math.max(0, used - tonumber(ARGV[4]))
  released = math.max(0, left - inc) * pr - math.max(0, used - inc) * pr
end
local cur = redis.call('HMGET', KEYS[4], 'used:' .. ARGV[5], 'overage')
local before, overage = tonumber(cur[1]) or 0, tonumber(cur[2]) or 0
if KEYS[3] == KEYS[4] then overage = math.max(0, overage + released) end
local after = before + units
local cost = math.max(0, after - included) * price - math.max(0, before - included) * price
if cost > 0 and overage + cost > tonumber(ARGV[9]) then
  return '0|' .. int(overage) .. '|' .. int(cost)
end
if ARGV[3] ~= '' then ledger_add(KEYS[3], ARGV[3], -tonumber(ARGV[4])) end
ledger_add(KEYS[4], ARGV[5], units, included, price)
redis.call('SET', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[10])
local docs, crossed = {ARGV[11]}, {}
if included > 0 then
  for i = 15, #ARGV, 3 do  -- base.crossed_thresholds, on the same doubles
    local mark = included * tonumber(ARGV[i]) / 100
    if before < mark and mark <= after then
      crossed[#crossed + 1] = tonumber(ARGV[i])
      docs[#docs + 1] = ARGV[i + 1] .. int(after) .. ARGV[i + 2]
    end
  end
end
if ARGV[12] ~= '' then
  redis.call('SET', KEYS[7], ARGV[13])
  redis.call('ZADD', KEYS[8], ARGV[14], ARGV[12])
end
local seqs = append_events(KEYS[5], KEYS[6], docs)
return '1|' .. table.concat(crossed, ',') .. '|' .. table.concat(seqs, ',') .. '|' .. int(after)
""",
    # KEYS: job, ready, leased, dead, the parked index of its kind; ARGV: doc read, new doc
    # ('' = delete), id, state, score
    "save_job": """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, 5 do redis.call('ZREM', KEYS[i], ARGV[3]) end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2])
local index = {ready = KEYS[2], leased = KEYS[3], dead = KEYS[4]}
redis.call('ZADD', index[ARGV[4]], ARGV[5], ARGV[3])
return 1
""",
    # Set a due job aside (its doc unchanged) for want of a handler of its kind.
    # KEYS: job, ready, leased, the parked index of its kind, the set of parked kinds;
    # ARGV: doc read, id, score (when it fell due), kind
    "park_job": """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[4])
return 1
""",
    # Claim up to ARGV[2] due jobs for one leaser: the earliest members (score <= ARGV[1]
    # ms) of all the given indexes move to the leased index at score ARGV[3] (the lease's
    # end), so no other leaser sees them while this one writes their leases (the doc's
    # compare-and-set follows); a leaser that dies in between leaves them due again at
    # ARGV[3]. An id without a doc (acked meanwhile) is only dropped from its index.
    # KEYS: ready, leased, the parked indexes; ARGV: now ms, limit, lease end ms, the prefix
    # of a job's key → {more, id, doc, id, doc …}, earliest first (a tie: ready, leased,
    # parked); more is 1 when more jobs may be due than were claimed, else 0 (the leaser
    # then need not look again).
    "claim_jobs": """
local limit = tonumber(ARGV[2])
local rows = {}
for i = 1, #KEYS do
  -- One row more than the limit: whether more are due than this claim takes.
  local found = redis.call('ZRANGE', KEYS[i], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0,
                           limit + 1, 'WITHSCORES')
  for j = 1, #found, 2 do
    rows[#rows + 1] = {tonumber(found[j + 1]), math.min(i, 3), found[j], KEYS[i]}
  end
end
table.sort(rows, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end)
local out = {#rows > limit and 1 or 0}
for n = 1, math.min(limit, #rows) do
  local id, index = rows[n][3], rows[n][4]
  redis.call('ZREM', index, id)
  local doc = redis.call('GET', ARGV[4] .. id)
  if doc then
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = doc
  end
end
return out
""",
    # Reads on the lane (``RedisStore._read``): a script call costs the client less than
    # a command of its own (no connection checkout, shared round trip).
    "read_get": "return redis.call('GET', KEYS[1])\n",
    "read_mget": "return redis.call('MGET', unpack(KEYS))\n",
    # A receipt's message: its id by the carrier id (KEYS[1] the connector's hash, ARGV[1]
    # the carrier id) and its doc (key ARGV[2] .. id), in one round trip; nil if unknown.
    "read_by_carrier": """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return nil end
return {id, redis.call('GET', ARGV[2] .. id)}
""",
    # The job bell: one ring more, at most ARGV[1] waiting. KEYS: the bell list.
    "ring_job_bell": """
redis.call('LPUSH', KEYS[1], '1')
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return 1
""",
    # KEYS: seq, log; ARGV: event docs
    "append_events": LUA_LIB + "return append_events(KEYS[1], KEYS[2], ARGV)\n",
    # KEYS: record; ARGV: now ms, fingerprint, expires ms, gc ms, ref ('' = none)
    "idem_claim": """
local rec = redis.call('HMGET', KEYS[1], 'fp', 'code', 'body', 'exp', 'ref')
if rec[1] and tonumber(rec[4]) > tonumber(ARGV[1]) then
  return {rec[1], rec[2] or '', rec[3] or '', rec[5] or ''}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'exp', ARGV[3], 'ref', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false
""",
    # KEYS: record; ARGV: status code, body, expires ms, gc ms
    "idem_complete": """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'code', ARGV[1], 'body', ARGV[2], 'exp', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
""",
}

# -- the send path: the message's update and the job's ack in one script --------------------
# KEYS: 1-6 as update_message (message, history, carrier index, ledger, seq, log), 7 job,
# 8-10 the indexes a leased job may be in (ready, leased, and parked of its kind: an expired
# lease set aside). ARGV: 1-8 as update_message, 9 the job doc read ('' = its lease is not
# held: leave the job alone), 10 job id, then more carrier ids.
# → {event seq (0 = none, -1 = the message doc moved: nothing written), 1 if acked}
SCRIPTS["complete_send"] = (
    LUA_LIB
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1, 0} end
local acked = 0
if ARGV[9] ~= '' and redis.call('GET', KEYS[7]) == ARGV[9] then
  redis.call('DEL', KEYS[7])
  for i = 8, 10 do redis.call('ZREM', KEYS[i], ARGV[10]) end
  acked = 1
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) end
for i = 11, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[4]) end
if ARGV[5] ~= '' then ledger_add(KEYS[4], ARGV[5], -tonumber(ARGV[6])) end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end
if ARGV[8] == '' then return {0, acked} end
return {append_events(KEYS[5], KEYS[6], {ARGV[8]})[1], acked}
"""
)
# -- end of the send path --------------------------------------------------------------------
