"""The Lua scripts of the Redis store: every check-then-act step is one of them.

Redis runs a script atomically, so compare, write, bump and publish happen with no other
command in between: no WATCH, no retry storm. Each returns a small array whose first
element is a code; ``RedisStore`` maps the code to an outcome.

Numbers are formatted with ``string.format`` before they are stored or published: Lua
holds them as doubles, and its default conversion would turn a large one into
``1e+15``. Every key a script touches is passed in ``KEYS``, as Redis asks.
"""

from __future__ import annotations

__all__ = [
    "CLUSTER_DELETE",
    "CLUSTER_FENCE",
    "CLUSTER_PUT_LEASE",
    "CLUSTER_WRITE",
    "DELETE",
    "GET_LEASE",
    "PUT_LEASE",
    "WRITE",
]

#: Shared by the write and delete scripts: the user index (a set ``P u:<user id>`` of
#: keys per user). ``users_of`` reads a record's ``user_ids`` with ``cjson.decode`` only
#: when the compact ``user_ids":["`` is in it (the record is never re-encoded; the
#: search starts at the rare ``u``, not at a quote, which JSON is full of: a plain
#: find looks for its first byte, then compares, so this keeps a 100 KB write fast);
#: ``reindex`` moves the key from the sets of the old users (kept in the hash field
#: ``u``) to those of the new ones. These set names are built in the script, so Redis
#: Cluster cannot run it (it is not supported anyway).
_USERS = """
local function users_of(value)
  if not value or not string.find(value, 'user_ids":["', 1, true) then return {} end
  local ok, record = pcall(cjson.decode, value)
  if not ok or type(record) ~= 'table' or type(record.user_ids) ~= 'table' then return {} end
  local ids = {}
  for _, id in ipairs(record.user_ids) do
    if type(id) == 'string' and id ~= '' then ids[#ids + 1] = id end
  end
  return ids
end
local function reindex(hash, old, new, sets, key)
  local listed = {}
  for _, id in ipairs(new) do listed[id] = true end
  if old then
    for _, id in ipairs(cjson.decode(old)) do
      if not listed[id] then redis.call('SREM', sets .. id, key) end
    end
  end
  for _, id in ipairs(new) do redis.call('SADD', sets .. id, key) end
  if #new > 0 then
    redis.call('HSET', hash, 'u', cjson.encode(new))
  elseif old then
    redis.call('HDEL', hash, 'u')
  end
end
"""

#: KEYS: record hash, revision counter, history list.
#: ARGV: expected revision ("" = the key must be absent), value, history length, channel
#: ("" = publish nothing: a quiet write), user set prefix (``P u:``), key.
#: The server's time of the write (``TIME``, in microseconds) is kept in the hash field
#: ``t`` and in each history entry (``revision,time:value``; entries written before
#: times were kept are ``revision:value``).
#: Returns {1, new revision} when written, {0} when absent, {0, value, revision} on conflict.
#: The stored value is read only on conflict: copying it into Lua costs a 100 KB write
#: as much as the write itself.
WRITE = (
    _USERS
    + """
local stored = redis.call('HMGET', KEYS[1], 'rev', 'u')
local revision = stored[1]
if (revision or '') ~= ARGV[1] then
  if revision then return {0, redis.call('HGET', KEYS[1], 'v'), revision} end
  return {0}
end
local new = redis.call('INCR', KEYS[2])
if revision and tonumber(revision) >= new then
  -- the counter was lost (flushed, evicted): never hand out a revision again
  new = tonumber(revision) + 1
  redis.call('SET', KEYS[2], string.format('%d', new))
end
local text = string.format('%d', new)
local now = redis.call('TIME')
local at = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'rev', text, 't', at)
reindex(KEYS[1], stored[2], users_of(ARGV[2]), ARGV[5], ARGV[6])
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('LPUSH', KEYS[3], text .. ',' .. at .. ':' .. ARGV[2])
  redis.call('LTRIM', KEYS[3], 0, keep - 1)
end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], text) end
return {1, new}
"""
)

#: KEYS: record hash. ARGV: expected revision ("" = any), channel, user set prefix, key.
#: Returns {1} when deleted, {0} when absent, {2, value, revision} on conflict.
DELETE = (
    _USERS
    + """
local stored = redis.call('HMGET', KEYS[1], 'v', 'rev', 'u')
if not stored[2] then return {0} end
if ARGV[1] ~= '' and stored[2] ~= ARGV[1] then return {2, stored[1], stored[2]} end
reindex(KEYS[1], stored[3], {}, ARGV[3], ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'deleted')
return {1}
"""
)

#: KEYS: session hash, session version counter.
#: ARGV: ttl in microseconds, ttl as written, info, how long Redis keeps the hash (ms).
#: The expiry is an instant of the server's clock (``TIME``); key expiry only cleans up.
#: Returns the new session version.
PUT_LEASE = """
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000000 + tonumber(now[2]) + tonumber(ARGV[1])
local version = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'expires', string.format('%.0f', expires),
  'version', string.format('%d', version), 'ttl', ARGV[2], 'info', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return version
"""

#: KEYS: session hash. Judged by the server's clock (``TIME``) inside the script.
#: Returns {} when absent, else {expired (0 or 1), version, ttl as written}.
GET_LEASE = """
local stored = redis.call('HMGET', KEYS[1], 'expires', 'version', 'ttl')
if not stored[1] then return {} end
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local expired = 0
if now_us >= tonumber(stored[1]) then expired = 1 end
return {expired, stored[2], stored[3]}
"""

# The Redis Cluster scripts (``RedisClusterStore``): every key of one script shares one
# hash tag, so one slot: the record ``P r:{=K}``, its revision counter ``P c:{=K}``
# (kept after a delete, so a re-created record never reuses a revision) and its history
# ``P h:{=K}``; notifications go out with SPUBLISH on ``P n:{=K}``, in the same slot.
# The user index lives in other slots and is kept outside the scripts (see
# ``_cluster_layout``): these scripts only keep the record's user ids in field ``u``
# and return the old ones.

#: Like ``users_of`` above, for the cluster scripts (which keep no sets).
_CLUSTER_USERS = """
local function users_of(value)
  if not value or not string.find(value, 'user_ids":["', 1, true) then return {} end
  local ok, record = pcall(cjson.decode, value)
  if not ok or type(record) ~= 'table' or type(record.user_ids) ~= 'table' then return {} end
  local ids = {}
  for _, id in ipairs(record.user_ids) do
    if type(id) == 'string' and id ~= '' then ids[#ids + 1] = id end
  end
  return ids
end
"""

#: KEYS: record hash, the record's revision counter, history list.
#: ARGV: expected revision ("" = absent), value, history length, channel ("" = quiet).
#: The new revision is above the counter, the stored revision and the newest history
#: entry, so it is new even if the counter was lost.
#: Returns {1, new revision} when written, {0} when absent, {0, value, revision} on conflict.
CLUSTER_WRITE = (
    _CLUSTER_USERS
    + """
local stored = redis.call('HMGET', KEYS[1], 'rev')
local revision = stored[1]
if (revision or '') ~= ARGV[1] then
  if revision then return {0, redis.call('HGET', KEYS[1], 'v'), revision} end
  return {0}
end
local new = redis.call('INCR', KEYS[2])
local floor = tonumber(revision or '0')
if not revision then
  local newest = redis.call('LINDEX', KEYS[3], 0)
  if newest then floor = tonumber(string.match(newest, '^(%d+)')) or 0 end
end
if floor >= new then
  new = floor + 1
  redis.call('SET', KEYS[2], string.format('%d', new))
end
local text = string.format('%d', new)
local now = redis.call('TIME')
local at = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'rev', text, 't', at)
local users = users_of(ARGV[2])
if #users > 0 then redis.call('HSET', KEYS[1], 'u', cjson.encode(users))
else redis.call('HDEL', KEYS[1], 'u') end
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('LPUSH', KEYS[3], text .. ',' .. at .. ':' .. ARGV[2])
  redis.call('LTRIM', KEYS[3], 0, keep - 1)
end
if ARGV[4] ~= '' then redis.call('SPUBLISH', ARGV[4], text) end
return {1, new}
"""
)

#: KEYS: record hash. ARGV: expected revision ("" = any), channel.
#: Returns {1} when deleted, {0} when absent, {2, value, revision} on conflict.
CLUSTER_DELETE = """
local stored = redis.call('HMGET', KEYS[1], 'v', 'rev')
if not stored[2] then return {0} end
if ARGV[1] ~= '' and stored[2] ~= ARGV[1] then return {2, stored[1], stored[2]} end
redis.call('DEL', KEYS[1])
redis.call('SPUBLISH', ARGV[2], 'deleted')
return {1}
"""

#: KEYS: lease hash, the lease's version counter (same slot). ARGV as ``PUT_LEASE``,
#: plus how long the counter is kept (ms): longer than the lease, so a lease dropped
#: and written again never shows a version seen before.
CLUSTER_PUT_LEASE = PUT_LEASE.replace(
    "return version", "redis.call('PEXPIRE', KEYS[2], ARGV[5])\nreturn version"
)

#: The cluster's replication fence (``_replicas``): a write in the record's slot that
#: leaves nothing behind but moves the primary's replication offset past everything it
#: holds (``PUBLISH`` does not on a cluster). KEYS: the record's fence name.
CLUSTER_FENCE = """
redis.call('SET', KEYS[1], '')
redis.call('DEL', KEYS[1])
return 1
"""
