-- fetchq's Redis store: the helpers every script starts with.
--
-- Each script is this file's COMMON part followed by one "--@ name" section
-- (fetchq/store/redis.py cuts the file at those markers).  Every key of a
-- run lives under one hash tag, "{fetchq:RUN}:", passed as KEYS[1] (the
-- run's cfg hash); the other keys are built from it inside the scripts, all
-- in the same slot, so the scripts work on Redis Cluster too.
--
-- Time: one "now" per script, in milliseconds: the server's TIME, unless
-- the caller passes ARGV[1] (tests on a simulated clock).  Every deadline
-- (leases, holds, retry times, rate-limit TATs) is on that clock.
--
-- Layout (P = the prefix):
--   P cfg        HASH   width, rate, burst, lane_width, lane_rate, lane_burst,
--                       paused (limits; empty = none)
--   P seq        STRING insertion counter (FIFO within a priority)
--   P i:BBB      HASH   id -> item: prio US lane id US attempts US seq US arg
--                       (pending or claimed; BBB = 3 hex digits of sha1(id))
--   P d:BBB      HASH   id -> done: outcome US record_seq US done-at ms US
--                       the item's five fields US record-json (the record
--                       last: JSON never holds a raw US byte)
--   P q:LANE:PRI LIST   a lane's pending items of one priority, in insertion
--                       order: "%012x:id" (seq first)
--   P qp:LANE    ZSET   the priorities a lane has lists for (score = priority)
--   P rq:LANE    ZSET   a lane's items that came back (requeued, retried,
--                       leases run out): score priority, member "%012x:id";
--                       a claim takes the best of its head and the lists'
--   (Lists cost about 16 bytes an item at any length, where a ZSET over 128
--   items costs about 110: most pending items are in lists.)
--   P lanes      ZSET   lane -> earliest ms it may launch (lanes with items)
--   P delayed    ZSET   id -> not_before ms (pending, waiting)
--   P leases     ZSET   id -> lease deadline ms (claimed); ZCARD = in flight
--                       (also the slots of fetchq.shared: "\030LANE\031token")
--   P owner      HASH   id -> worker that claimed it
--   P wl         HASH   worker -> how many leases it holds
--   P workers    ZSET   worker -> its last claim (ms): the workers sharing
--                       the width now (claimed within ACTIVE_MS)
--   P lane:LANE  HASH   f (in flight), t (rate TAT ms), h (held until ms)
--   P lcfg:NAME  HASH   a lane's own width/rate/burst
--   P lid, lnm   HASH   lane name -> lane id, and back: items, queues and
--                       the calendar use the short id (memory per item)
--   P tat        STRING the global rate's TAT (GCRA)
--   P rr         STRING turns given to served lanes (round-robin order)
--   P rec        LIST   ids in ack order (index = record seq - 1; "" = reopened)
--   P n          HASH   counters: pending, claimed, done:OUTCOME
--   P meta       HASH   name -> JSON value
-- A lane's name is "+" .. key, or "-" for items without a key; inside, a
-- lane is known by a short id (LANE above), its name only at the edges.

local US = "\031"
local ACTIVE_MS = 2000 -- a worker that claimed this recently shares the width
local AHEAD_MS = 50 -- how far ahead a claim may take launch slots
local CFG = KEYS[1]
local P = string.sub(CFG, 1, #CFG - 3)

local function now_ms()
  if ARGV[1] ~= nil and ARGV[1] ~= "" then
    return tonumber(ARGV[1])
  end
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function bucket(id)
  return string.sub(redis.sha1hex(id), 1, 3)
end

local function split(s)
  local out = {}
  local start = 1
  for _ = 1, 4 do
    local stop = string.find(s, US, start, true)
    out[#out + 1] = string.sub(s, start, stop - 1)
    start = stop + 1
  end
  out[#out + 1] = string.sub(s, start)
  return out -- prio, key, attempts, seq, arg
end

local function join(f)
  return f[1] .. US .. f[2] .. US .. f[3] .. US .. f[4] .. US .. f[5]
end

local function member(seq, id)
  return string.format("%012x", tonumber(seq)) .. ":" .. id
end

local IDS = {} -- lane name -> id, as read once in this script
local function lane_id(name)
  local id = IDS[name]
  if id then return id end
  id = redis.call("HGET", P .. "lid", name)
  if not id then
    id = tostring(redis.call("INCR", P .. "lseq"))
    redis.call("HSET", P .. "lid", name, id)
    redis.call("HSET", P .. "lnm", id, name)
  end
  IDS[name] = id
  return id
end

local NAMES = {} -- lane id -> name, as read once in this script
local function lane_of(id)
  local name = NAMES[id]
  if name == nil then
    name = redis.call("HGET", P .. "lnm", id)
    NAMES[id] = name
  end
  return name
end

-- An item's fields as the caller sees them: the lane by name.
local function named(f)
  return {f[1], lane_of(f[2]), f[3], f[4], f[5]}
end

local function num(v, default)
  if v == false or v == nil or v == "" then return default end
  return tonumber(v)
end

-- Hash counters a script changes are summed here and written once, when it
-- ends (flush: one HINCRBY a counter, not one a change): P n's counts, the
-- leases a worker holds (P wl), a lane's in flight (f of P lane:LANE).
-- Whatever reads one of them in the same script adds delta().
local DELTA = {}
local function incr(key, field, by)
  local fields = DELTA[key]
  if not fields then
    fields = {}
    DELTA[key] = fields
  end
  fields[field] = (fields[field] or 0) + by
end

local function delta(key, field)
  local fields = DELTA[key]
  return fields and fields[field] or 0
end

local function cfg_all()
  local flat = redis.call("HGETALL", CFG)
  local c = {}
  for i = 1, #flat, 2 do c[flat[i]] = flat[i + 1] end
  return c
end

local function lane_limits(lane, c)
  local own = redis.call("HMGET", P .. "lcfg:" .. lane_of(lane), "width", "rate", "burst")
  local width = num(own[1], num(c.lane_width, nil))
  local rate = num(own[2], num(c.lane_rate, nil))
  local burst = num(own[3], num(c.lane_burst, 1))
  if own[1] == "none" then width = nil end
  if own[2] == "none" then rate = nil end
  return width, rate, burst
end

-- The run's own limits (nil: none): what every launch, from a claim or a
-- shared slot, counts against.
local function global_limits(c)
  return num(c.width, nil), num(c.rate, nil), num(c.burst, 1)
end

-- A lane's state and limits, the one reading of a lane for claims and for
-- shared slots: f (in flight), t (rate TAT ms), h (held until ms), and its
-- width, rate and burst (nil: none) when limits apply.
local function lane_gate(lane, c, use_limits)
  local key = P .. "lane:" .. lane
  local state = redis.call("HMGET", key, "f", "t", "h")
  local f = math.max(0, num(state[1], 0) + delta(key, "f"))
  local g = {f = f, t = num(state[2], 0), h = num(state[3], 0), burst = 1}
  if use_limits then g.width, g.rate, g.burst = lane_limits(lane, c) end
  return g
end

-- Hold a lane until at least until_ms (holds only ever extend); the end.
local function hold_until(lane, until_ms)
  local key = P .. "lane:" .. lane
  local held = math.max(num(redis.call("HGET", key, "h"), 0), until_ms)
  redis.call("HSET", key, "h", held)
  redis.call("ZADD", P .. "lanes", "XX", "GT", held, lane)
  return held
end

-- A shared slot's lane id ("" for a job without a lane).
local function slot_lane(m)
  return string.sub(m, 2, string.find(m, US, 2, true) - 1)
end

-- GCRA: "rate per second, burst" allows a launch at now when
-- now >= tat - burst * interval; taking one moves tat on by an interval.
local function gcra_wait(tat, now, rate, burst)
  if not rate or rate <= 0 then return 0 end
  local interval = 1000.0 / rate
  local allow_at = math.max(tat, now) + interval - burst * interval
  if allow_at <= now then return 0 end
  return allow_at - now
end

local function gcra_take(tat, now, rate)
  local interval = 1000.0 / rate
  return math.max(tat, now) + interval
end

local function counter(field, by)
  incr(P .. "n", field, by)
end

-- Make a lane known to the calendar at the earliest time it may launch
-- (ZADD LT adds a new lane, and only ever moves a known one earlier).
local function wake_lane(lane, at)
  redis.call("ZADD", P .. "lanes", "LT", at, lane)
end

local WAKE = nil -- a table: lanes to wake once, when the script's loop ends
local PUSH = nil -- a table: list -> members to push when the loop ends
local LISTS = {} -- the lists this script has added to (known in P qp:LANE)
local HEADS = {} -- lane -> what lane_pop read of its head (see there)

-- Pending items of a lane: appended to its priority's list when new (their
-- seq is the largest yet), into rq when they come back.
local function enqueue(id, f, now, fresh)
  local lane = f[2]
  HEADS[lane] = nil
  local m = member(f[4], id)
  if fresh then
    local list = P .. "q:" .. lane .. ":" .. f[1]
    if PUSH then
      local members = PUSH[list]
      if not members then
        members = {}
        PUSH[list] = members
      end
      members[#members + 1] = m
    else
      redis.call("RPUSH", list, m)
    end
    if not LISTS[list] then
      redis.call("ZADD", P .. "qp:" .. lane, "NX", tonumber(f[1]), f[1])
      LISTS[list] = true
    end
  else
    redis.call("ZADD", P .. "rq:" .. lane, tonumber(f[1]), m)
  end
  if WAKE then
    WAKE[lane] = now
  else
    local held = num(redis.call("HGET", P .. "lane:" .. lane, "h"), 0)
    wake_lane(lane, math.max(now, held))
  end
end

local function lane_pending(lane)
  return redis.call("EXISTS", P .. "qp:" .. lane, P .. "rq:" .. lane) > 0
end

-- The lane's best pending item: {member, priority, "list"/"rq", list prio}
local function lane_head(lane)
  local best = nil
  local pr = redis.call("ZRANGE", P .. "qp:" .. lane, 0, 0, "WITHSCORES")
  if pr[1] then
    local m = redis.call("LINDEX", P .. "q:" .. lane .. ":" .. pr[1], 0)
    if m then best = {m, tonumber(pr[2]), "list", pr[1]} end
  end
  local r = redis.call("ZRANGE", P .. "rq:" .. lane, 0, 0, "WITHSCORES")
  if r[1] then
    local score = tonumber(r[2])
    if best == nil or score < best[2] or (score == best[2] and r[1] < best[1]) then
      best = {r[1], score, "rq"}
    end
  end
  return best
end

local function drop_head(lane, head)
  HEADS[lane] = nil
  if head[3] == "rq" then
    redis.call("ZREM", P .. "rq:" .. lane, head[1])
  else
    local list = P .. "q:" .. lane .. ":" .. head[4]
    redis.call("LPOP", list)
    if redis.call("LLEN", list) == 0 then
      redis.call("ZREM", P .. "qp:" .. lane, head[4])
      LISTS[list] = nil
    end
  end
end

-- Take a lane's best pending item out (nil: none).  A claim takes a lane's
-- items one after another: while none came back into its rq, they are its
-- lowest priority's list in order, so that list and its length are read
-- once and popped from until it is empty.
local function lane_pop(lane)
  local h = HEADS[lane]
  if h == nil then
    h = {}
    if redis.call("EXISTS", P .. "rq:" .. lane) == 0 then
      local pr = redis.call("ZRANGE", P .. "qp:" .. lane, 0, 0)
      if pr[1] then
        local list = P .. "q:" .. lane .. ":" .. pr[1]
        h = {list = list, prio = pr[1], left = redis.call("LLEN", list)}
      end
    end
    HEADS[lane] = h
  end
  local m = h.list and h.left > 0 and redis.call("LPOP", h.list)
  if not m then
    local head = lane_head(lane)
    if head then drop_head(lane, head) end
    return head
  end
  h.left = h.left - 1
  if h.left == 0 then
    redis.call("ZREM", P .. "qp:" .. lane, h.prio)
    LISTS[h.list] = nil
    HEADS[lane] = nil
  end
  return {m, tonumber(h.prio), "list", h.prio}
end

local function unqueue(lane, f, id)
  HEADS[lane] = nil
  local m = member(f[4], id)
  if redis.call("ZREM", P .. "rq:" .. lane, m) == 1 then return end
  local list = P .. "q:" .. lane .. ":" .. f[1]
  if redis.call("LREM", list, 1, m) == 1 and redis.call("LLEN", list) == 0 then
    redis.call("ZREM", P .. "qp:" .. lane, f[1])
    LISTS[list] = nil
  end
end

-- An item's lease no longer held by its worker (acked, requeued, expired).
local function unown(id)
  local w = redis.call("HGET", P .. "owner", id)
  if w then
    redis.call("HDEL", P .. "owner", id)
    incr(P .. "wl", w, -1)
  end
end

-- A lane with items, back on the calendar (once its hold is over).
local function wake_pending(lane, now)
  if lane_pending(lane) then
    local held = num(redis.call("HGET", P .. "lane:" .. lane, "h"), 0)
    wake_lane(lane, math.max(now, held))
  end
end

local function lane_release(lane, now)
  incr(P .. "lane:" .. lane, "f", -1)
  if WAKE then
    WAKE[lane] = now
  else
    wake_pending(lane, now)
  end
end

-- Write what incr() summed (see DELTA): a worker holding no lease leaves
-- P wl; a lane's in flight never goes below 0.
local function flush()
  local wl, n = P .. "wl", P .. "n"
  for key, fields in pairs(DELTA) do
    for field, by in pairs(fields) do
      if by ~= 0 then
        local v = redis.call("HINCRBY", key, field, by)
        if key == wl then
          if v <= 0 then redis.call("HDEL", key, field) end
        elseif key ~= n and v < 0 then
          redis.call("HSET", key, field, 0)
        end
      end
    end
  end
  DELTA = {}
end

-- Move due delayed items and expired leases back to their lanes.
local function promote(now, c)
  local due = redis.call("ZRANGEBYSCORE", P .. "delayed", "-inf", now, "LIMIT", 0, 500)
  for _, id in ipairs(due) do
    redis.call("ZREM", P .. "delayed", id)
    local raw = redis.call("HGET", P .. "i:" .. bucket(id), id)
    if raw then enqueue(id, split(raw), now) end
  end
  local expired = redis.call("ZRANGEBYSCORE", P .. "leases", "-inf", now, "LIMIT", 0, 500)
  for _, id in ipairs(expired) do
    redis.call("ZREM", P .. "leases", id)
    if string.byte(id, 1) == 30 then
      -- A shared slot whose holder died (slots are not in a worker's "wl").
      redis.call("HDEL", P .. "owner", id)
      local lane = slot_lane(id)
      if lane ~= "" then lane_release(lane, now) end
    else
      unown(id)
      local raw = redis.call("HGET", P .. "i:" .. bucket(id), id)
      if raw then
        local f = split(raw)
        lane_release(f[2], now)
        enqueue(id, f, now)
        counter("claimed", -1)
        counter("pending", 1)
      end
    end
  end
end

-- Take an item out of whatever pending/claimed structure holds it.
local function detach(id, f, now)
  local lane = f[2]
  if redis.call("ZREM", P .. "leases", id) == 1 then
    unown(id)
    lane_release(lane, now)
    counter("claimed", -1)
    return "claimed"
  end
  if redis.call("ZREM", P .. "delayed", id) == 0 then unqueue(lane, f, id) end
  counter("pending", -1)
  return "pending"
end

-- f names its lane (done items keep the name: they leave the lanes); seq
-- is the record's place in P rec when the caller has pushed its id there.
local function done(id, b, f, outcome, record, at, seq)
  seq = seq or redis.call("RPUSH", P .. "rec", id)
  redis.call("HSET", P .. "d:" .. b, id,
             outcome .. US .. seq .. US .. at .. US .. join(f) .. US .. record)
  counter("done:" .. outcome, 1)
end

-- One command on one key over many arguments, 1,000 at a time (unpack has
-- a limit): the replies' elements in order (a number reply: the last).
local function many(command, key, args)
  local out = {}
  for i = 1, #args, 1000 do
    local reply = redis.call(command, key, unpack(args, i, math.min(i + 999, #args)))
    if type(reply) ~= "table" then
      out = reply
    else
      for _, v in ipairs(reply) do out[#out + 1] = v end
    end
  end
  return out
end

-- Finish found items, {id, bucket, fields, outcome, record} each: detach
-- each as detach() does, but with one call for all their leases, owners
-- and places in P rec.
local function finish_all(found, now)
  local ids = {}
  for k, it in ipairs(found) do ids[k] = it[1] end
  local leased = many("ZMSCORE", P .. "leases", ids)
  local owners = many("HMGET", P .. "owner", ids)
  local gone, owned = {}, {}
  for k, it in ipairs(found) do
    local id, f = it[1], it[3]
    if leased[k] then
      gone[#gone + 1] = id
      if owners[k] then
        owned[#owned + 1] = id
        incr(P .. "wl", owners[k], -1)
      end
      lane_release(f[2], now)
      counter("claimed", -1)
    else
      if redis.call("ZREM", P .. "delayed", id) == 0 then unqueue(f[2], f, id) end
      counter("pending", -1)
    end
    redis.call("HDEL", P .. "i:" .. it[2], id)
  end
  if #gone > 0 then many("ZREM", P .. "leases", gone) end
  if #owned > 0 then many("HDEL", P .. "owner", owned) end
  local first = many("RPUSH", P .. "rec", ids) - #ids
  for k, it in ipairs(found) do
    done(it[1], it[2], named(it[3]), it[4], it[5], now, first + k)
  end
end

-- A done envelope's parts: outcome, record seq, done at (ms or ""), the
-- item's five fields, the record.
local function unpack_done(env)
  local parts = {}
  local start = 1
  for _ = 1, 8 do
    local stop = string.find(env, US, start, true)
    parts[#parts + 1] = string.sub(env, start, stop - 1)
    start = stop + 1
  end
  parts[#parts + 1] = string.sub(env, start)
  return parts
end

--@ add
-- ARGV: now, guard, then per item: id, prio, key, arg, outcome ("" =
-- pending), record; after the items: "\030meta", then name, value pairs.  The
-- guard is "" or lines: "NAME TOKEN" (refuse unless lease NAME is held by
-- TOKEN: fencing), then optionally a meta name and the JSON value it must
-- hold ("null": none), so a writer whose last write Redis lost (a crash
-- within its fsync window) cannot write past the gap.
local now = now_ms()
if ARGV[2] ~= "" then
  local guard = {}
  local start = 1
  while true do
    local nl = string.find(ARGV[2], "\n", start, true)
    if not nl then
      guard[#guard + 1] = string.sub(ARGV[2], start)
      break
    end
    guard[#guard + 1] = string.sub(ARGV[2], start, nl - 1)
    start = nl + 1
  end
  if guard[1] ~= "" then
    local sp = string.find(guard[1], " ", 1, true)
    local holder = redis.call("GET", P .. "lease:" .. string.sub(guard[1], 1, sp - 1))
    if holder ~= string.sub(guard[1], sp + 1) then
      return redis.error_reply("FENCED the lease is held by another process")
    end
  end
  if guard[2] then
    local current = redis.call("HGET", P .. "meta", guard[2]) or "null"
    if current ~= guard[3] then
      return redis.error_reply("STALE " .. guard[2] .. " is not what was last written")
    end
  end
end
local added = 0
local i = 3
local seq = num(redis.call("GET", P .. "seq"), 0)
WAKE = {} -- the rows of a chunk are mostly of a few lanes: wake each once
PUSH = {} -- and go to a few lists: pushed once each
while i <= #ARGV do
  if ARGV[i] == "\030meta" then
    for j = i + 1, #ARGV, 2 do
      redis.call("HSET", P .. "meta", ARGV[j], ARGV[j + 1])
    end
    break
  end
  local id, prio, key, arg, outcome, record =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  i = i + 6
  local b = bucket(id)
  if redis.call("HEXISTS", P .. "i:" .. b, id) == 0
    and redis.call("HEXISTS", P .. "d:" .. b, id) == 0 then
    seq = seq + 1
    added = added + 1
    if outcome == "" then
      local f = {prio, lane_id(key), "0", tostring(seq), arg}
      redis.call("HSET", P .. "i:" .. b, id, join(f))
      enqueue(id, f, now, true)
      counter("pending", 1)
    else
      done(id, b, {prio, key, "0", tostring(seq), arg}, outcome, record, "")
    end
  end
end
for list, members in pairs(PUSH) do many("RPUSH", list, members) end
PUSH = nil
if added > 0 then redis.call("SET", P .. "seq", seq) end
for lane, at in pairs(WAKE) do wake_pending(lane, at) end
WAKE = nil
return added

--@ known
local found = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local b = bucket(id)
  if redis.call("HEXISTS", P .. "i:" .. b, id) == 1
    or redis.call("HEXISTS", P .. "d:" .. b, id) == 1 then
    found[#found + 1] = id
  end
end
return found

--@ claim
-- ARGV: now, worker, limit, per_lane ("" = global priority order), lease
-- ms, limits ("1": apply cfg's width, rate and lane limits), skip lanes...
-- Returns, as one JSON text (one reply to parse, however many items), [wake
-- ms (-1: nothing due), id, item, at, id, item, at, ...]: at is when the
-- item may launch, in ms from now (0 but with the rates).
local now = now_ms()
local worker, limit = ARGV[2], tonumber(ARGV[3])
local per_lane = num(ARGV[4], nil)
local lease_ms = tonumber(ARGV[5])
local use_limits = ARGV[6] == "1"
local skip = {}
for i = 7, #ARGV do
  local id = redis.call("HGET", P .. "lid", ARGV[i])
  if id then skip[id] = true end
end
local c = cfg_all()
promote(now, c)
local out = {-1}
local wake = nil
local function soon(t)
  if t and (wake == nil or t < wake) then wake = t end
end
local free = limit
local width, rate, burst = nil, nil, 1
local full = false -- no slot free for this worker
local cap = nil -- the slots the width (and this worker's share of it) leave
if use_limits then
  if c.paused == "1" then return cjson.encode({-1}) end
  width, rate, burst = global_limits(c)
  if width then
    local busy = redis.call("ZCARD", P .. "leases")
    cap = width - busy
    -- Each worker sharing the width gets its share: a worker that frees a
    -- slot and claims again at once must not keep the others, who only
    -- come by now and then, from ever getting one.
    local workers = P .. "workers"
    redis.call("ZADD", workers, now, worker)
    redis.call("ZREMRANGEBYSCORE", workers, "-inf", "(" .. (now - ACTIVE_MS))
    local active = redis.call("ZCARD", workers)
    if active > 1 then
      local mine = num(redis.call("HGET", P .. "wl", worker), 0) + delta(P .. "wl", worker)
      cap = math.min(cap, math.ceil(width / active) - mine)
    end
    free = math.min(free, cap)
    full = free <= 0
  end
end
local tat = num(redis.call("GET", P .. "tat"), 0)
local taken = 0

local leases, owners = {}, {} -- what take() leased, written after the loop
local function take(id, lane, at)
  local b = bucket(id)
  local raw = redis.call("HGET", P .. "i:" .. b, id)
  local f = split(raw)
  f[3] = tostring(tonumber(f[3]) + 1)
  redis.call("HSET", P .. "i:" .. b, id, join(f))
  leases[#leases + 1] = now + lease_ms
  leases[#leases + 1] = id
  owners[#owners + 1] = id
  owners[#owners + 1] = worker
  incr(P .. "wl", worker, 1)
  incr(P .. "lane:" .. lane, "f", 1)
  counter("pending", -1)
  counter("claimed", 1)
  out[#out + 1] = id
  out[#out + 1] = join(named(f))
  out[#out + 1] = tostring(at or 0)
  taken = taken + 1
end

-- By lane, a claim may take what the rates let launch within AHEAD_MS: each
-- item comes with its launch time (ms from now), which the worker keeps.
-- Launch slots are reserved on the server's schedule, so however late a
-- claim reaches Redis, the rates hold over time without losing that time.
local ahead = 0
if use_limits and per_lane ~= nil then ahead = AHEAD_MS end
if free > 0 and use_limits and rate then
  local w = gcra_wait(tat, now, rate, burst)
  if w > ahead then free = 0; soon(now + w - ahead) end
end

if free > 0 and per_lane == nil then
  -- Global priority order: the best head among the lanes, item by item.
  local lanes = redis.call("ZRANGE", P .. "lanes", 0, -1)
  while taken < free do
    local best, best_lane = nil, nil
    for _, lane in ipairs(lanes) do
      local head = lane_head(lane)
      if head and (best == nil or head[2] < best[2]
          or (head[2] == best[2] and head[1] < best[1])) then
        best, best_lane = head, lane
      end
    end
    if best == nil then break end
    drop_head(best_lane, best)
    take(string.sub(best[1], 14), best_lane)
    if not lane_pending(best_lane) then
      redis.call("ZREM", P .. "lanes", best_lane)
    end
  end
elseif free > 0 then
  -- Ready: lanes due before the next millisecond.  A lane served now is
  -- scored now + 0.5 + its turn (a counter, in 0.4 us steps), so it comes
  -- after every lane waiting since before and after the lanes served
  -- before it: a round is served before any lane is served twice.
  local ready = redis.call("ZRANGEBYSCORE", P .. "lanes", "-inf", "(" .. (now + 1),
                           "LIMIT", 0, free + 64)
  local lanes = {}
  for _, lane in ipairs(ready) do
    if not skip[lane] then lanes[#lanes + 1] = lane end
  end
  local share = per_lane
  if #lanes > 0 then share = math.min(per_lane, math.ceil(free / #lanes)) end
  for _, lane in ipairs(lanes) do
    if taken >= free then break end
    local g = lane_gate(lane, c, use_limits)
    local inflight, ltat, held = g.f, g.t, g.h
    local lwidth, lrate, lburst = g.width, g.rate, g.burst
    local n = math.min(share, free - taken)
    local next_at = now
    if held > now then
      n = 0; next_at = held
    end
    if n > 0 and lwidth then n = math.min(n, lwidth - inflight) end
    local got = 0
    while n > 0 do
      local at = 0
      if lrate then
        local w = gcra_wait(ltat, now, lrate, lburst)
        if w > ahead then next_at = now + w - ahead; break end
        at = w
      end
      if rate then
        local w = gcra_wait(tat, now, rate, burst)
        if w > ahead then soon(now + w - ahead); free = taken; break end
        at = math.max(at, w)
      end
      local head = lane_pop(lane)
      if not head then break end
      take(string.sub(head[1], 14), lane, math.floor(at + 0.5))
      got = got + 1
      n = n - 1
      if lrate then ltat = gcra_take(ltat, now + at, lrate) end
      if rate then tat = gcra_take(tat, now + at, rate) end
    end
    if lrate and got > 0 then
      redis.call("HSET", P .. "lane:" .. lane, "t", ltat)
      local w = gcra_wait(ltat, now, lrate, lburst)
      if w > ahead then next_at = math.max(next_at, now + w - ahead) end
    end
    if not lane_pending(lane) then
      redis.call("ZREM", P .. "lanes", lane)
    elseif lwidth and inflight + got >= lwidth then
      redis.call("ZREM", P .. "lanes", lane) -- back when a slot frees
    else
      local turn = redis.call("INCR", P .. "rr") % 1000
      redis.call("ZADD", P .. "lanes", math.max(next_at, now + 0.5 + turn * 0.0004), lane)
    end
  end
end
if taken > 0 then
  many("ZADD", P .. "leases", leases)
  many("HSET", P .. "owner", owners)
end
if rate and taken > 0 then redis.call("SET", P .. "tat", tat) end
-- A claim that took every slot left to this worker leaves it full too:
-- claiming again before a slot frees would only be answered with nothing.
if cap and taken >= cap then full = true end
-- When something may next be claimable: a lane coming due, a retry time, a
-- lease running out; but never before the global rate allows a launch.
-- With no slot free for this worker (the width, or its share of it), only a
-- slot coming free helps: its own jobs ending (it claims again then), or
-- another worker's lease ending.
wake = nil
if not full then
  local first = redis.call("ZRANGE", P .. "lanes", 0, 0, "WITHSCORES")
  if first[2] then soon(math.max(tonumber(first[2]), now)) end
  local d = redis.call("ZRANGE", P .. "delayed", 0, 0, "WITHSCORES")
  if d[2] then soon(tonumber(d[2])) end
end
local l = redis.call("ZRANGE", P .. "leases", 0, 0, "WITHSCORES")
if l[2] then soon(tonumber(l[2])) end
if wake and rate then
  wake = math.max(wake, now + gcra_wait(tat, now, rate, burst) - ahead)
end
if wake then out[1] = math.max(0, wake - now) end
return cjson.encode(out)

--@ ack
-- ARGV: now, then per item: id, outcome, record-json.  Returns one 1/0 each.
local now = now_ms()
local res, found, seen = {}, {}, {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local b = bucket(id)
  local raw = not seen[id] and redis.call("HGET", P .. "i:" .. b, id)
  if raw then
    seen[id] = true
    found[#found + 1] = {id, b, split(raw), ARGV[i + 1], ARGV[i + 2]}
    res[#res + 1] = 1
  elseif seen[id] or redis.call("HEXISTS", P .. "d:" .. b, id) == 1 then
    res[#res + 1] = 0 -- done (an id twice in a batch: by its first)
  else
    res[#res + 1] = -1
  end
end
WAKE = {} -- a batch's items are mostly of a few lanes: wake each once
if #found > 0 then finish_all(found, now) end
for lane, at in pairs(WAKE) do wake_pending(lane, at) end
WAKE = nil
return res

--@ requeue
-- ARGV: now, then per item: id, not_before ms ("" = now, "+MS" = MS from
-- now).  1 moved, 0 done, -1 unknown.
local now = now_ms()
local res = {}
for i = 2, #ARGV, 2 do
  local id, when = ARGV[i], ARGV[i + 1]
  if string.sub(when, 1, 1) == "+" then
    when = now + tonumber(string.sub(when, 2)) -- a delay from the server's now
  else
    when = num(when, nil)
  end
  local b = bucket(id)
  local raw = redis.call("HGET", P .. "i:" .. b, id)
  if raw then
    local f = split(raw)
    detach(id, f, now)
    counter("pending", 1)
    if when and when > now then
      redis.call("ZADD", P .. "delayed", when, id)
    else
      enqueue(id, f, now)
    end
    res[#res + 1] = 1
  elseif redis.call("HEXISTS", P .. "d:" .. b, id) == 1 then
    res[#res + 1] = 0
  else
    res[#res + 1] = -1
  end
end
return res

--@ renew
-- ARGV: now, worker, lease ms, ids...  Extends the leases this worker still
-- holds; returns the ids it no longer holds.
local now = now_ms()
local worker, lease_ms = ARGV[2], tonumber(ARGV[3])
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call("HGET", P .. "owner", id) == worker then
    redis.call("ZADD", P .. "leases", "XX", "GT", now + lease_ms, id)
  else
    lost[#lost + 1] = id
  end
end
return lost

--@ release
-- ARGV: now.  Every claimed item back to its lane; returns how many.
local now = now_ms()
local ids = redis.call("ZRANGE", P .. "leases", 0, -1)
for _, id in ipairs(ids) do
  local raw = redis.call("HGET", P .. "i:" .. bucket(id), id)
  if raw then
    local f = split(raw)
    detach(id, f, now)
    counter("pending", 1)
    enqueue(id, f, now)
  end
end
return #ids

--@ hold
-- ARGV: now, lane, seconds.  Holds only ever extend.  Returns the end (ms).
local now = now_ms()
local lane, ms = lane_id(ARGV[2]), tonumber(ARGV[3]) * 1000
return hold_until(lane, now + ms)

--@ get
-- ARGV: now, id.  {state, item or done envelope, lease or not_before}
local id = ARGV[2]
local b = bucket(id)
local raw = redis.call("HGET", P .. "i:" .. b, id)
if raw then
  local named_raw = join(named(split(raw)))
  local lease = redis.call("ZSCORE", P .. "leases", id)
  if lease then return {"claimed", named_raw, lease} end
  local nb = redis.call("ZSCORE", P .. "delayed", id)
  return {"pending", named_raw, nb or ""}
end
local done = redis.call("HGET", P .. "d:" .. b, id)
if done then return {"done", done, ""} end
return {}

--@ amend
-- ARGV: now, id, record.  Replace a done item's record, keeping its
-- outcome and its place in ack order.  1 amended, 0 not done, -1 unknown.
local id = ARGV[2]
local b = bucket(id)
local env = redis.call("HGET", P .. "d:" .. b, id)
if not env then
  if redis.call("HEXISTS", P .. "i:" .. b, id) == 1 then return 0 end
  return -1
end
local parts = unpack_done(env)
parts[9] = ARGV[3]
redis.call("HSET", P .. "d:" .. b, id, table.concat(parts, US))
return 1

--@ records
-- ARGV: now, after, limit.  [id, envelope, ...] in ack order, as one JSON
-- text.
local after, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local start = after
while #out < 2 * limit do
  local ids = redis.call("LRANGE", P .. "rec", start, start + limit - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if id ~= "" and #out < 2 * limit then
      local env = redis.call("HGET", P .. "d:" .. bucket(id), id)
      if env then
        out[#out + 1] = id
        out[#out + 1] = env
      end
    end
  end
  start = start + #ids
end
if #out == 0 then return "[]" end
return cjson.encode(out)

--@ reopen
-- ARGV: now, outcome, from (list index), count.  Moves the done items with
-- this outcome among rec[from, from+count) back to pending, as new.
-- Returns {moved, the next index (-1 at the end)}.
local now = now_ms()
local outcome, from, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = redis.call("LRANGE", P .. "rec", from, from + count - 1)
local moved = 0
for k, id in ipairs(ids) do
  if id ~= "" then
    local b = bucket(id)
    local env = redis.call("HGET", P .. "d:" .. b, id)
    if env then
      local parts = unpack_done(env)
      if parts[1] == outcome and tonumber(parts[2]) == from + k then
        redis.call("HDEL", P .. "d:" .. b, id)
        redis.call("LSET", P .. "rec", from + k - 1, "")
        counter("done:" .. outcome, -1)
        local seq = redis.call("INCR", P .. "seq")
        local f = {parts[4], lane_id(parts[5]), "0", tostring(seq), parts[8]}
        redis.call("HSET", P .. "i:" .. b, id, join(f))
        enqueue(id, f, now, true)
        counter("pending", 1)
        moved = moved + 1
      end
    end
  end
end
if #ids < count then return {moved, -1} end
return {moved, from + #ids}

--@ lease
-- ARGV: now, name, token, ms, action ("take", "renew" or "drop").  A named
-- lease (the input's loader, the controller's leader): take it if free (or
-- already ours), renew it if ours, drop it if ours.  Returns 1 if we hold it
-- after the call, else 0; "take" also bumps the lease's epoch (fencing).
local name, token, ms, action = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key = P .. "lease:" .. name
local holder = redis.call("GET", key)
if action == "drop" then
  if holder == token then redis.call("DEL", key) end
  return 0
end
if holder == token then
  redis.call("PEXPIRE", key, ms)
  return 1
end
if action == "take" and not holder then
  redis.call("SET", key, token, "PX", ms)
  redis.call("INCR", key .. ":epoch")
  return 1
end
return 0

--@ unhold
-- ARGV: now, lane.  Ends the lane's hold early (an operator's release).
-- Returns 1 if it was held.
local now = now_ms()
local id = redis.call("HGET", P .. "lid", ARGV[2])
if not id then return 0 end
local key = P .. "lane:" .. id
local held = num(redis.call("HGET", key, "h"), 0)
redis.call("HDEL", key, "h")
if lane_pending(id) then wake_lane(id, now) end
if held > now then return 1 end
return 0

--@ lanes_page
-- ARGV: now, offset, count, sort ("backlog", "name" or "held"), most lanes
-- to look at.  Lanes with work (pending, in flight or held), each:
-- {name, pending, in flight, held until ms, own width, own rate}; first
-- the number of such lanes and whether the look was cut short.
local now = now_ms()
local offset, count, sort = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local most = tonumber(ARGV[5])
local last = num(redis.call("GET", P .. "lseq"), 0)
local rows = {}
local cut = 0
if last > most then cut = 1; last = most end
for n = 1, last do
  local lane = tostring(n)
  local pending = redis.call("ZCARD", P .. "rq:" .. lane)
  for _, pr in ipairs(redis.call("ZRANGE", P .. "qp:" .. lane, 0, -1)) do
    pending = pending + redis.call("LLEN", P .. "q:" .. lane .. ":" .. pr)
  end
  local st = redis.call("HMGET", P .. "lane:" .. lane, "f", "h")
  local flight, held = num(st[1], 0), num(st[2], 0)
  if held <= now then held = 0 end
  if pending > 0 or flight > 0 or held > 0 then
    local name = lane_of(lane)
    local own = redis.call("HMGET", P .. "lcfg:" .. name, "width", "rate")
    rows[#rows + 1] = {name, pending, flight, held, own[1] or "", own[2] or ""}
  end
end
if sort == "name" then
  table.sort(rows, function(a, b) return a[1] < b[1] end)
elseif sort == "held" then
  table.sort(rows, function(a, b)
    if a[4] ~= b[4] then return a[4] > b[4] end
    return a[1] < b[1]
  end)
else
  table.sort(rows, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    if a[3] ~= b[3] then return a[3] > b[3] end
    return a[1] < b[1]
  end)
end
local out = {#rows, cut}
for i = offset + 1, math.min(#rows, offset + count) do
  local r = rows[i]
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
  out[#out + 1] = r[4]
  out[#out + 1] = r[5]
  out[#out + 1] = r[6]
end
return out

--@ pending_page
-- ARGV: now, lane ("" = every lane, in the calendar's order), offset, count.
-- The pending items ready to claim, in claim order within each lane:
-- {more (0/1), id, item, ...}.
local offset, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local need = offset + count + 1

local function lane_items(lane, want)
  local items = {}
  local r = redis.call("ZRANGE", P .. "rq:" .. lane, 0, want - 1, "WITHSCORES")
  for i = 1, #r, 2 do items[#items + 1] = {tonumber(r[i + 1]), r[i]} end
  local got = 0
  for _, pr in ipairs(redis.call("ZRANGE", P .. "qp:" .. lane, 0, -1)) do
    if got >= want then break end
    local ms = redis.call("LRANGE", P .. "q:" .. lane .. ":" .. pr, 0, want - got - 1)
    for _, m in ipairs(ms) do
      items[#items + 1] = {tonumber(pr), m}
      got = got + 1
    end
  end
  table.sort(items, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  return items
end

local members = {}
local lanes
if ARGV[2] ~= "" then
  local id = redis.call("HGET", P .. "lid", ARGV[2])
  lanes = {}
  if id then lanes[1] = id end
else
  lanes = redis.call("ZRANGE", P .. "lanes", 0, 9999)
end
for _, lane in ipairs(lanes) do
  if #members >= need then break end
  for _, item in ipairs(lane_items(lane, need - #members)) do
    if #members >= need then break end
    members[#members + 1] = item[2]
  end
end
local out = {0}
if #members > offset + count then out[1] = 1 end
for i = offset + 1, math.min(#members, offset + count) do
  local id = string.sub(members[i], 14)
  local raw = redis.call("HGET", P .. "i:" .. bucket(id), id)
  if raw then
    out[#out + 1] = id
    out[#out + 1] = join(named(split(raw)))
  end
end
return out

--@ leased_page
-- ARGV: now, offset, count.  Items claimed now (every worker's), by lease
-- deadline: {total, id, item, deadline ms, worker, ...}.
local offset, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {redis.call("ZCARD", P .. "leases")}
local ids = redis.call("ZRANGE", P .. "leases", offset, offset + count - 1, "WITHSCORES")
for i = 1, #ids, 2 do
  local id = ids[i]
  local raw = redis.call("HGET", P .. "i:" .. bucket(id), id)
  if raw then
    out[#out + 1] = id
    out[#out + 1] = join(named(split(raw)))
    out[#out + 1] = ids[i + 1]
    out[#out + 1] = redis.call("HGET", P .. "owner", id) or ""
  end
end
return out

--@ reprioritize
-- ARGV: now, id, priority.  A pending item gets a new priority (it keeps
-- its arrival order among that priority's items).  1 done, 0 not pending
-- (claimed or done), -1 unknown.
local now = now_ms()
local id = ARGV[2]
local b = bucket(id)
local raw = redis.call("HGET", P .. "i:" .. b, id)
if not raw then
  if redis.call("HEXISTS", P .. "d:" .. b, id) == 1 then return 0 end
  return -1
end
if redis.call("ZSCORE", P .. "leases", id) then return 0 end
local f = split(raw)
local waiting = redis.call("ZSCORE", P .. "delayed", id)
if not waiting then unqueue(f[2], f, id) end
f[1] = ARGV[3]
redis.call("HSET", P .. "i:" .. b, id, join(f))
if not waiting then enqueue(id, f, now) end
return 1

--@ slots
-- Shared limits for any queue, in any process (fetchq.shared.SharedLimits):
-- one call a turn holds lanes, gives slots back, then asks for slots, with
-- the same readings of the limits as a claim (global width by leases, GCRA
-- rates, a lane's width, rate and hold).  A slot is a lease in P leases,
-- member "\030LANE\031token" (LANE "" for a job without a lane), owned by
-- the worker: it counts against the width with claimed items, is renewed
-- by "renew", and comes back (promote) if its holder dies.
-- ARGV: now, worker, lease ms, #holds, (lane name, ms)..., #releases,
-- members..., #asks, (token, lane name or "")..., lane names to report.
-- Returns {now ms, {width, rate, burst, lane_width, lane_rate, lane_burst,
-- paused}, {member or "", wait ms (-1: until a slot frees), why}...,
-- {lane name, own width, own rate, own burst, held ms}...}.
local now = now_ms()
local worker, lease_ms = ARGV[2], tonumber(ARGV[3])
local c = cfg_all()
local i = 4
local nhold = tonumber(ARGV[i])
for k = 1, nhold do
  hold_until(lane_id(ARGV[i + 2 * k - 1]), now + tonumber(ARGV[i + 2 * k]))
end
i = i + 2 * nhold + 1
local nrel = tonumber(ARGV[i])
for k = 1, nrel do
  local m = ARGV[i + k]
  if redis.call("ZREM", P .. "leases", m) == 1 then
    redis.call("HDEL", P .. "owner", m)
    local lane = slot_lane(m)
    if lane ~= "" then lane_release(lane, now) end
  end
end
i = i + nrel + 1
promote(now, c)
local width, rate, burst = global_limits(c)
local busy = redis.call("ZCARD", P .. "leases")
local tat = num(redis.call("GET", P .. "tat"), 0)
local took = false
local gates = {}
local answers = {}
local names = {}
local seen = {}
local nask = tonumber(ARGV[i])
for k = 1, nask do
  local token, name = ARGV[i + 2 * k - 1], ARGV[i + 2 * k]
  local lane, g = "", nil
  if name ~= "" then
    lane = lane_id(name)
    g = gates[lane]
    if not g then
      g = lane_gate(lane, c, true)
      gates[lane] = g
    end
    if not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  local timed, why, blocked = 0, "", nil
  if c.paused == "1" then blocked = "paused" end
  if g then
    if g.h > now then timed, why = g.h - now, "held" end
    if g.width and g.f >= g.width then blocked = blocked or "lane-width" end
    if g.rate then
      local w = gcra_wait(g.t, now, g.rate, g.burst)
      if w > timed then timed, why = w, "lane-rate" end
    end
  end
  if width and busy >= width then blocked = blocked or "width" end
  if rate then
    local w = gcra_wait(tat, now, rate, burst)
    if w > timed then timed, why = w, "rate" end
  end
  if timed > 0 then
    answers[#answers + 1] = ""
    answers[#answers + 1] = math.ceil(timed)
    answers[#answers + 1] = why
  elseif blocked then
    answers[#answers + 1] = ""
    answers[#answers + 1] = -1
    answers[#answers + 1] = blocked
  else
    local m = "\030" .. lane .. US .. token
    redis.call("ZADD", P .. "leases", now + lease_ms, m)
    redis.call("HSET", P .. "owner", m, worker)
    busy = busy + 1
    if g then
      g.f = g.f + 1
      redis.call("HINCRBY", P .. "lane:" .. lane, "f", 1)
      if g.rate then
        g.t = gcra_take(g.t, now, g.rate)
        redis.call("HSET", P .. "lane:" .. lane, "t", g.t)
      end
    end
    if rate then
      tat = gcra_take(tat, now, rate)
      took = true
    end
    answers[#answers + 1] = m
    answers[#answers + 1] = 0
    answers[#answers + 1] = ""
  end
end
if took then redis.call("SET", P .. "tat", tat) end
for k = i + 2 * nask + 1, #ARGV do
  if not seen[ARGV[k]] then
    seen[ARGV[k]] = true
    names[#names + 1] = ARGV[k]
  end
end
local lanes = {}
for _, name in ipairs(names) do
  local own = redis.call("HMGET", P .. "lcfg:" .. name, "width", "rate", "burst")
  local id = redis.call("HGET", P .. "lid", name)
  local held = 0
  if id then held = num(redis.call("HGET", P .. "lane:" .. id, "h"), 0) end
  lanes[#lanes + 1] = name
  lanes[#lanes + 1] = own[1] or ""
  lanes[#lanes + 1] = own[2] or ""
  lanes[#lanes + 1] = own[3] or ""
  lanes[#lanes + 1] = math.max(0, math.ceil(held - now))
end
local cfg = {}
for _, field in ipairs({"width", "rate", "burst", "lane_width", "lane_rate",
                        "lane_burst", "paused"}) do
  cfg[#cfg + 1] = c[field] or ""
end
return {math.floor(now), cfg, answers, lanes}

--@ set_limits
-- ARGV: now, lease name, token, epoch, then (lane name or "", field,
-- value)...: "" sets the run's cfg, a lane name that lane's own limits;
-- value "" deletes the field.  Refused (FENCED) unless the named lease is
-- held by TOKEN at EPOCH, so a deposed leader's writes never land.
local key = P .. "lease:" .. ARGV[2]
if redis.call("GET", key) ~= ARGV[3]
    or redis.call("GET", key .. ":epoch") ~= ARGV[4] then
  return redis.error_reply("FENCED the lease is held by another process")
end
for k = 5, #ARGV, 3 do
  local target = CFG
  if ARGV[k] ~= "" then target = P .. "lcfg:" .. ARGV[k] end
  if ARGV[k + 2] == "" then
    redis.call("HDEL", target, ARGV[k + 1])
  else
    redis.call("HSET", target, ARGV[k + 1], ARGV[k + 2])
  end
end
return 1

--@ signals
-- ARGV: now, after (a stream id; "" = from the end), count.  The workers'
-- signals for the controller's leader: {server now ms, last id, id,
-- payload, ...} (the payload is field "r" of each entry).
local t = redis.call("TIME")
local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = P .. "signals"
local out = {server, ""}
if ARGV[2] == "" then
  local last = redis.call("XREVRANGE", key, "+", "-", "COUNT", 1)
  out[2] = last[1] and last[1][1] or "0-0"
  return out
end
out[2] = ARGV[2]
local entries = redis.call("XRANGE", key, "(" .. ARGV[2], "+", "COUNT", tonumber(ARGV[3]))
for _, e in ipairs(entries) do
  out[2] = e[1]
  local fields = e[2]
  for k = 1, #fields, 2 do
    if fields[k] == "r" then
      out[#out + 1] = e[1]
      out[#out + 1] = fields[k + 1]
    end
  end
end
return out

--@ quota
-- An API endpoint's quota budget shared by every worker
-- (fetchq.shared.quota.RedisBudget): the rules of
-- fetchq.api.budget.LocalBudget on the server's clock.  P quota:ENDPOINT
-- HASH l (limit), r (remaining, lowest in the window; none: unknown), z
-- (reset ms), g ("1": z is default_retry_after's guess), p ("1": probing:
-- the window is unknown until an answer speaks for it), e (with a known
-- window length: the window's end at the latest, its first answer plus the
-- length), x (the announced reset of the window that ended by e, whose late
-- answers are ignored); P qf:ENDPOINT ZSET
-- tickets in flight -> deadline (a dead worker's requests stop counting
-- when their deadlines pass).
-- ARGV: now, action, endpoint, margin ms, default ms, max ms, window ms
-- ("" unknown), ticket, then
--   take: lease ms -> {"go", 0} / {"wait", 0} (only an answer on its way
--     can tell) / {"spent", ms}
--   answer: status, limit, remaining, reset ms from now, throttle ms
--     ("" where none) -> {ms to hold ahead, or -1}
--   forget: -> {ms to hold ahead, or -1}
-- Every reply ends with the budget as it stands: limit, remaining, reset
-- ms from now, in flight ("" where unknown).
local now = now_ms()
local action, endpoint = ARGV[2], ARGV[3]
local margin, default, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local window = num(ARGV[7], nil)
local ticket = ARGV[8]
local q = P .. "quota:" .. endpoint
local fl = P .. "qf:" .. endpoint
redis.call("ZREMRANGEBYSCORE", fl, "-inf", now)

local function probing()
  return redis.call("HGET", q, "p") ~= "0"
end

-- When the window ends: the reset, or sooner by its known length.
local function due()
  local st = redis.call("HMGET", q, "z", "e")
  local z, e = num(st[1], nil), num(st[2], nil)
  if e and (not z or e < z) then return e end
  return z
end

-- Past the window's end (and margin): a new window, unknown until its
-- first answer.
local function roll()
  local d = due()
  if d and now >= d + margin then
    local st = redis.call("HMGET", q, "z", "g")
    redis.call("HDEL", q, "r", "z", "g", "e", "x")
    redis.call("HSET", q, "p", "1")
    -- Ended by its length before the reset it announced: its answers still
    -- on their way say that reset.
    local z = num(st[1], nil)
    if z and st[2] ~= "1" and d < z then redis.call("HSET", q, "x", z) end
  end
end

local function wait_ms()
  local d = due()
  if not d then
    d = now + default - margin
    redis.call("HSET", q, "z", d, "g", "1")
  end
  return math.ceil(math.min(math.max(0, d + margin - now), cap))
end

-- An answer of the window came now: it began before, so with a known
-- length it ends by now + window (the first answer's bound is the least).
local function answered_in_window()
  if not window then return end
  local e = num(redis.call("HGET", q, "e"), nil)
  if not e or now + window < e then redis.call("HSET", q, "e", now + window) end
end

local function spent()
  local r = num(redis.call("HGET", q, "r"), nil)
  return r ~= nil and r - redis.call("ZCARD", fl) <= 0
end

-- Whether an answer still to come decides if a request may go: the probe's,
-- or those of requests in flight the server may not have counted yet.
local function unsure()
  local flight = redis.call("ZCARD", fl)
  if flight == 0 then return false end
  if probing() then return true end
  local r = num(redis.call("HGET", q, "r"), nil)
  return r ~= nil and r > 0 and r <= flight
end

-- Fold an announced quota in; false if it spoke of a window that is over.
local function learn(limit, remaining, reset)
  if limit then redis.call("HSET", q, "l", limit) end
  if reset and reset + margin <= now then return false end
  roll()
  local x = num(redis.call("HGET", q, "x"), nil)
  if reset and x and reset <= x + 1000 then
    return false -- a late answer of the window that ended by its length
  end
  local r = num(redis.call("HGET", q, "r"), nil)
  local old = num(redis.call("HGET", q, "z"), nil)
  if r == nil or old == nil or reset == nil or redis.call("HGET", q, "g") == "1" then
    redis.call("HSET", q, "r", remaining)
    redis.call("HDEL", q, "g")
    if reset then redis.call("HSET", q, "z", reset) else redis.call("HDEL", q, "z") end
  elseif reset < old - 1000 then
    return false -- a late answer from an earlier window
  elseif reset > old + 1000 then
    redis.call("HSET", q, "r", remaining, "z", reset)
    redis.call("HDEL", q, "e") -- a new window
  else -- the same window: the lowest count is the latest
    redis.call("HSET", q, "r", math.min(r, remaining), "z", math.max(old, reset))
  end
  answered_in_window()
  return true
end

-- After an answer (or none): hold ahead until the reset once surely spent.
local function gate()
  if not unsure() and spent() then return {wait_ms()} end
  return {-1}
end

local out
if action == "take" then
  roll()
  if unsure() then
    out = {"wait", 0}
  elseif spent() then
    out = {"spent", wait_ms()}
  else
    redis.call("ZADD", fl, now + tonumber(ARGV[9]), ticket)
    out = {"go", 0}
  end
elseif action == "answer" then
  redis.call("ZREM", fl, ticket)
  local status = tonumber(ARGV[9])
  local limit, remaining = num(ARGV[10], nil), num(ARGV[11], nil)
  if remaining then
    local reset = num(ARGV[12], nil)
    if reset then reset = now + reset end
    if learn(limit, remaining, reset) then redis.call("HSET", q, "p", "0") end
  elseif (redis.call("HEXISTS", q, "l") == 0 and redis.call("HEXISTS", q, "r") == 0)
      or (status >= 200 and status < 300) then
    -- No quota announced: an endpoint that never announces one, or one
    -- that announces it only when it refuses (an error page without the
    -- headers says nothing of the window: the probe goes on).
    redis.call("HSET", q, "p", "0")
  end
  local throttle = num(ARGV[13], nil)
  if throttle then
    redis.call("HSET", q, "r", 0, "z", now + throttle - margin)
    redis.call("HDEL", q, "g", "e") -- its word, not our bound
  end
  out = gate()
else
  redis.call("ZREM", fl, ticket)
  out = gate()
end
local state = redis.call("HMGET", q, "l", "r")
local d = due()
out[#out + 1] = state[1] or ""
out[#out + 1] = state[2] or ""
if d then
  out[#out + 1] = tostring(math.floor(d - now))
else
  out[#out + 1] = ""
end
out[#out + 1] = redis.call("ZCARD", fl)
return out
