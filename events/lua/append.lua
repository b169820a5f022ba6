-- Append events to the log and keep the derived task index in step, atomically.
--
-- KEYS[1] log stream, KEYS[2] task index hash, KEYS[3] idempotency hash
-- ARGV[1..4] an optional expectation on one task: task id ('' = none), allowed states
--   ('|a|b|', '' = any; '-' is the state of an unknown task), attempt ('' = any), epoch ('' = any).
--   With an expectation the batch must hold exactly one task event whose transition is legal.
-- ARGV[5..] one record per event, by kind:
--   'e' data version                      an event that touches no task
--   's' data version task deps idem       task submitted (deps joined by \31)
--   't' data version task sources target match_attempt set_attempt set_epoch
-- Index values are 'state|attempt|epoch'. Returns {1, previous last id, id...} or
-- {0, current index value}.

local log, index, idem = KEYS[1], KEYS[2], KEYS[3]

local function parse(v)
  if not v then return '-', '', '' end
  local s, a, e = string.match(v, '^([^|]*)|([^|]*)|([^|]*)$')
  return s, a, e
end

local expect_task = ARGV[1]
if expect_task ~= '' then
  local cur = redis.call('HGET', index, expect_task)
  local s, a, e = parse(cur)
  if (ARGV[2] ~= '' and not string.find(ARGV[2], '|' .. s .. '|', 1, true))
    or (ARGV[3] ~= '' and a ~= ARGV[3]) or (ARGV[4] ~= '' and e ~= ARGV[4]) then
    return {0, cur or ''}
  end
end

-- the id of the entry before this batch, so that a writer can tell whether anyone else
-- appended since it last read (then it must catch up before applying its own events)
local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local ids = {1, newest[1] and newest[1][1] or '0-0'}
local i = 5
local n = #ARGV
while i <= n do
  local kind = ARGV[i]
  if kind == 'e' then
    ids[#ids + 1] = redis.call('XADD', log, '*', 'd', ARGV[i + 1], 'v', ARGV[i + 2])
    i = i + 3
  elseif kind == 's' then
    local task, deps, key = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    local ok = redis.call('HEXISTS', index, task) == 0
    if ok and key ~= '' and redis.call('HEXISTS', idem, key) == 1 then ok = false end
    if not ok and expect_task ~= '' then return {0, redis.call('HGET', index, task) or ''} end
    ids[#ids + 1] = redis.call('XADD', log, '*', 'd', ARGV[i + 1], 'v', ARGV[i + 2])
    if ok then
      local state = 'queued'
      for dep in string.gmatch(deps, '[^\031]+') do
        local s = parse(redis.call('HGET', index, dep))
        if s ~= 'completed' then state = 'pending' break end
      end
      redis.call('HSET', index, task, state .. '|0|')
      if key ~= '' then redis.call('HSET', idem, key, task) end
    end
    i = i + 6
  else
    local task, sources, target = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    local match_attempt, set_attempt, set_epoch = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    local cur = redis.call('HGET', index, task)
    local s, a, e = parse(cur)
    local ok = string.find(sources, '|' .. s .. '|', 1, true)
      and (match_attempt == '' or a == match_attempt)
    if not ok and expect_task ~= '' then return {0, cur or ''} end
    ids[#ids + 1] = redis.call('XADD', log, '*', 'd', ARGV[i + 1], 'v', ARGV[i + 2])
    if ok and (target ~= '' or set_attempt ~= '' or set_epoch ~= '') then
      if target ~= '' then s = target end
      if set_attempt ~= '' then a = set_attempt end
      if set_epoch ~= '' then e = set_epoch end
      redis.call('HSET', index, task, s .. '|' .. a .. '|' .. e)
    end
    i = i + 9
  end
end
return ids
