-- Append events to the log and keep the derived task index in step, atomically.
--
-- KEYS[1] log stream, KEYS[2] task index hash, KEYS[3] idempotency hash, KEYS[4] the caller's
--   last call (a string: 'token|' and the JSON of {prev, results}, expiring)
-- ARGV[1] the caller's log position ('' = none), ARGV[2] the most entries to send back
--   (see the reply), ARGV[3] this call's token ('' = none), a number that grows with each
--   call of the writer KEYS[4] belongs to: a call whose token KEYS[4] holds already ran (the
--   writer sent it again after losing the reply) and gets the results it had, with the
--   entries after the caller's position up to its prev; an older token is refused (STALE)
-- ARGV[4..] groups of records. Each group opens with a header
--   task states attempt epoch count
--   task: '' for an unconditional group, else the task the group's expectation is on;
--   states ('|a|b|', '' = any; '-' is the state of an unknown task), attempt ('' = any) and
--   epoch ('' = any) are what its index entry must hold; count: the records that follow.
--   A conditional group's first record is its task's event, whose transition must be legal
--   too; the group is appended whole or not at all, and each group is fenced on its own: one
--   refused holds back no other. task '*': a batch of submissions, appended whole only if
--   none of the tasks it submits is in the index already (refused: that task's id).
-- Records, one per event, by kind:
--   'e' data version                      an event that touches no task
--   's' data version task deps idem       task submitted (deps joined by \31)
--   't' data version task sources target match_attempt set_attempt set_epoch
-- Index values are 'state|attempt|epoch'.
-- Returns {id of the last entry before these appends ('0-0': none), entries, result...}:
--   entries: those after the caller's position up to that id, {{id, {field, value...}}...},
--   or 0 when there are more than ARGV[2] of them (or no position was given);
--   one result per group: {1, id...} appended, or {0, the index value found ('' = none)}.

local log, index, idem, calls = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local SIZES = {e = 3, s = 6, t = 9}
local KEEP_CALL = 600  -- seconds a call's token and results are kept (a client's retries)

local function parse(v)
  if not v then return '-', '', '' end
  local s, a, e = string.match(v, '^([^|]*)|([^|]*)|([^|]*)$')
  return s, a, e
end

-- the entries after the caller's position up to prev (0: too many, or no position)
local function since(prev)
  local position, most = ARGV[1], tonumber(ARGV[2])
  if position == '' then return 0 end
  if position == prev then return {} end
  local found = redis.call('XRANGE', log, '(' .. position, prev, 'COUNT', most + 1)
  if #found <= most then return found end
  return 0
end

-- a call sent again (its reply lost: a timeout, a dropped connection) is not run twice: the
-- writer's last call, if it is this one, is answered as it was; a copy of an earlier call
-- (still buffered on a connection its writer gave up) is refused
local token = tonumber(ARGV[3])
if token then
  local last = redis.call('GET', calls)
  local sep = last and string.find(last, '|', 1, true)
  local done = sep and tonumber(string.sub(last, 1, sep - 1))  -- (nil: not a call's record)
  if done == token then
    local ok, kept = pcall(cjson.decode, string.sub(last, sep + 1))
    if not ok or type(kept) ~= 'table' or type(kept[1]) ~= 'string' or type(kept[2]) ~= 'table' then
      return redis.error_reply('ERR this append ran already and its results are unreadable')
    end
    local reply = {kept[1], since(kept[1])}
    for _, result in ipairs(kept[2]) do reply[#reply + 1] = result end
    return reply
  elseif done and done > token then
    return redis.error_reply('STALE a copy of an append its writer has since gone past: not run')
  end
end

-- the entry before these appends, so that a writer can tell whether anyone else appended
-- since it last read, and what: it applies those entries before its own
local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local prev = newest[1] and newest[1][1] or '0-0'
local entries = since(prev)

-- would the record at i be appended with a legal transition (and its index entry found)?
local function legal(i)
  local kind, task = ARGV[i], ARGV[i + 3]
  if kind == 's' then
    local key = ARGV[i + 5]
    local ok = redis.call('HEXISTS', index, task) == 0
      and (key == '' or redis.call('HEXISTS', idem, key) == 0)
    return ok, redis.call('HGET', index, task)
  elseif kind == 't' then
    local cur = redis.call('HGET', index, task)
    local s, a = parse(cur)
    local ok = string.find(ARGV[i + 4], '|' .. s .. '|', 1, true)
      and (ARGV[i + 6] == '' or a == ARGV[i + 6])
    return ok, cur
  end
  return true, nil
end

-- XADD the record at i and update the index (if its transition is legal); its id
local function append(i)
  local kind = ARGV[i]
  local id = redis.call('XADD', log, '*', 'd', ARGV[i + 1], 'v', ARGV[i + 2])
  if kind == 's' then
    local task, deps, key = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    if legal(i) then
      local state = 'queued'
      for dep in string.gmatch(deps, '[^\031]+') do
        local s = parse(redis.call('HGET', index, dep))
        if s ~= 'completed' then state = 'pending' break end
      end
      redis.call('HSET', index, task, state .. '|0|')
      if key ~= '' then redis.call('HSET', idem, key, task) end
    end
  elseif kind == 't' then
    local task, target = ARGV[i + 3], ARGV[i + 5]
    local set_attempt, set_epoch = ARGV[i + 7], ARGV[i + 8]
    local cur = redis.call('HGET', index, task)
    local s, a, e = parse(cur)
    local ok = string.find(ARGV[i + 4], '|' .. s .. '|', 1, true)
      and (ARGV[i + 6] == '' or a == ARGV[i + 6])
    if ok and (target ~= '' or set_attempt ~= '' or set_epoch ~= '') then
      if target ~= '' then s = target end
      if set_attempt ~= '' then a = set_attempt end
      if set_epoch ~= '' then e = set_epoch end
      redis.call('HSET', index, task, s .. '|' .. a .. '|' .. e)
    end
  end
  return id
end

local reply = {prev, entries}
local results = {}
local i = 4
local n = #ARGV
while i <= n do
  local task, states, attempt, epoch = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local count = tonumber(ARGV[i + 4])
  i = i + 5
  local refused = nil
  if task == '*' then
    local j = i
    for _ = 1, count do
      if ARGV[j] == 's' and redis.call('HEXISTS', index, ARGV[j + 3]) == 1 then
        refused = ARGV[j + 3]
        break
      end
      j = j + SIZES[ARGV[j]]
    end
  elseif task ~= '' then
    local cur = redis.call('HGET', index, task)
    local s, a, e = parse(cur)
    if (states ~= '' and not string.find(states, '|' .. s .. '|', 1, true))
      or (attempt ~= '' and a ~= attempt) or (epoch ~= '' and e ~= epoch) then
      refused = cur or ''
    elseif count > 0 then
      local ok, found = legal(i)
      if not ok then refused = found or '' end
    end
  end
  if refused then
    for _ = 1, count do i = i + SIZES[ARGV[i]] end
    results[#results + 1] = {0, refused}
  else
    local ids = {1}
    for _ = 1, count do
      ids[#ids + 1] = append(i)
      i = i + SIZES[ARGV[i]]
    end
    results[#results + 1] = ids
  end
end
if token then
  redis.call('SET', calls, token .. '|' .. cjson.encode({prev, results}), 'EX', KEEP_CALL)
end
for _, result in ipairs(results) do reply[#reply + 1] = result end
return reply
