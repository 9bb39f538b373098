"""The Lua scripts that keep the cluster's shared state consistent inside Redis.

Each script is one atomic step (a join touches four sets, a sweep dozens): no other client sees half of it, and
a node that dies between two scripts leaves nothing half-done. Every script gets the key prefix as ``ARGV[1]``
and builds its key names exactly as :class:`~pyswoole.cluster.wire.Keys` does (``part`` is ``wire._part``).
Scripts touch keys they compute, so the cluster needs one Redis server (or a replicated primary), not a Redis
Cluster, whose shards would each hold only some of a group's keys.
"""

from __future__ import annotations

from typing import Final

_PREAMBLE: Final = """
local P = ARGV[1]
local function part(s) return #s .. ':' .. s end
local function node_key(n) return P .. 'node:' .. n end
local function group_nodes(g) return P .. 'gn:' .. part(g) end
local function group_members(g, n) return P .. 'g:' .. part(g) .. ':' .. n end
local function node_groups(n) return P .. 'ng:' .. n end
local function node_sessions(n) return P .. 'ns:' .. n end
local function session_groups(n, fd) return P .. 's:' .. part(n) .. ':' .. fd end
local function leave(n, fd, g)
  local members = group_members(g, n)
  local removed = redis.call('SREM', members, fd)
  if redis.call('SCARD', members) == 0 then
    redis.call('SREM', group_nodes(g), n)
    redis.call('SREM', node_groups(n), g)
  end
  local groups = session_groups(n, fd)
  redis.call('SREM', groups, g)
  if redis.call('SCARD', groups) == 0 then redis.call('SREM', node_sessions(n), fd) end
  return removed
end
"""

# ARGV: prefix, node, fd, group
JOIN: Final = (
    _PREAMBLE
    + """
local n, fd, g = ARGV[2], ARGV[3], ARGV[4]
redis.call('SADD', group_nodes(g), n)
redis.call('SADD', node_groups(n), g)
redis.call('SADD', session_groups(n, fd), g)
redis.call('SADD', node_sessions(n), fd)
return redis.call('SADD', group_members(g, n), fd)
"""
)

# ARGV: prefix, node, fd, group -> 1 if the session was a member
LEAVE: Final = _PREAMBLE + "return leave(ARGV[2], ARGV[3], ARGV[4])\n"

# ARGV: prefix, node, fd... -> how many memberships ended: closed sessions leave every group they were in
CLOSE: Final = (
    _PREAMBLE
    + """
local n, count = ARGV[2], 0
for i = 3, #ARGV do
  local fd = ARGV[i]
  for _, g in ipairs(redis.call('SMEMBERS', session_groups(n, fd))) do count = count + leave(n, fd, g) end
  redis.call('DEL', session_groups(n, fd))
  redis.call('SREM', node_sessions(n), fd)
end
return count
"""
)

# ARGV: prefix, node, force -> memberships removed, or -1 if the node is alive (its key exists) and not forced.
# A node sweeps itself (forced) as it stops; any node sweeps one whose registration ran out.
SWEEP: Final = (
    _PREAMBLE
    + """
local n, force = ARGV[2], ARGV[3] == '1'
if redis.call('EXISTS', node_key(n)) == 1 then
  if not force then return -1 end
  redis.call('DEL', node_key(n))
end
local count = 0
for _, g in ipairs(redis.call('SMEMBERS', node_groups(n))) do
  count = count + redis.call('SCARD', group_members(g, n))
  redis.call('DEL', group_members(g, n))
  redis.call('SREM', group_nodes(g), n)
end
redis.call('DEL', node_groups(n))
for _, fd in ipairs(redis.call('SMEMBERS', node_sessions(n))) do redis.call('DEL', session_groups(n, fd)) end
redis.call('DEL', node_sessions(n))
redis.call('SREM', P .. 'nodes', n)
return count
"""
)

# ARGV: prefix, group -> flat [node, fd, node, fd, ...] of the members on live nodes
MEMBERS: Final = (
    _PREAMBLE
    + """
local g, out = ARGV[2], {}
for _, n in ipairs(redis.call('SMEMBERS', group_nodes(g))) do
  if redis.call('EXISTS', node_key(n)) == 1 then
    for _, fd in ipairs(redis.call('SMEMBERS', group_members(g, n))) do
      out[#out + 1] = n
      out[#out + 1] = fd
    end
  end
end
return out
"""
)

# ARGV: prefix, group, batch head (wire.encode_broadcast_head) -> how many nodes' postmen got it. Each node with
# members gets the head followed by its own members' fds, on its own channel, in the order of its other batches.
BROADCAST: Final = (
    _PREAMBLE
    + """
local g, head, reached = ARGV[2], ARGV[3], 0
for _, n in ipairs(redis.call('SMEMBERS', group_nodes(g))) do
  local fds = redis.call('SMEMBERS', group_members(g, n))
  if #fds > 0 then
    reached = reached + redis.call('PUBLISH', P .. 'ch:' .. n, head .. table.concat(fds, ','))
  end
end
return reached
"""
)

# ARGV: prefix, node, info, ttl ms -> the info the key held before (nil if none): a node's first registration
# tells it whether another process holds its name.
REGISTER: Final = (
    _PREAMBLE
    + """
local n = ARGV[2]
local before = redis.call('GET', node_key(n))
redis.call('SET', node_key(n), ARGV[3], 'PX', ARGV[4])
redis.call('SADD', P .. 'nodes', n)
return before
"""
)

# ARGV: prefix -> {live names, dead names} (dead: registered once, registration expired, not swept yet)
NODES: Final = (
    _PREAMBLE
    + """
local live, dead = {}, {}
for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if redis.call('EXISTS', node_key(n)) == 1 then live[#live + 1] = n else dead[#dead + 1] = n end
end
return {live, dead}
"""
)

# KEYS: stream; ARGV: prefix, capacity, field, value, ... -> the entry id, or false when the queue is full
ENQUEUE: Final = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then return false end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[1], '*', unpack(fields))
"""
