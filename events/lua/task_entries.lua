-- The log entries of several tasks, found through their per-task index sets, in one call.
-- KEYS[1]: the log stream; KEYS[2..]: the tasks' index sets (sorted sets of stream ids).
-- Returns, for each task in order, a list of {id, {field, value, ...}} (an id whose entry
-- the log no longer has is left out). The caller keeps each call to a few hundred tasks, so
-- that the server is never held for more than a millisecond or two.
local out = {}
for i = 2, #KEYS do
  local entries = {}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    local found = redis.call('XRANGE', KEYS[1], id, id)
    if found[1] then
      entries[#entries + 1] = found[1]
    end
  end
  out[#out + 1] = entries
end
return out
