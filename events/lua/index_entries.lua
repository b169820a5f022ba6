-- Index a run of log entries in the per-task sets, in one call (one command per entry packed
-- by the client cost the daemon more than the server's work).
-- KEYS[1]: the derived task index hash; KEYS[2..]: the index sets (sorted sets of stream ids)
-- of the tasks the run touches, in the order each task first appears in ARGV.
-- ARGV: pairs of an entry id and its task id. Each id is added to its task's set, scored by
-- its milliseconds part (adding it again changes nothing).
-- Returns the index hash's values of those tasks, in the same order (nil: none). The caller
-- keeps each call to a few hundred entries, so that the server is never held for more than a
-- millisecond or so.
local sets, tasks = {}, {}
for i = 1, #ARGV, 2 do
  local id, task = ARGV[i], ARGV[i + 1]
  local key = sets[task]
  if not key then
    tasks[#tasks + 1] = task
    key = KEYS[#tasks + 1]
    sets[task] = key
  end
  redis.call('ZADD', key, string.match(id, '^%d+'), id)
end
if #tasks == 0 then
  return {}
end
return redis.call('HMGET', KEYS[1], unpack(tasks))
