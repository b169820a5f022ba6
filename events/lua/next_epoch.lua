-- Hand a starting node its epoch: one more than both the last one handed out and the highest
-- the caller's replay of the log knows (so that the counter, derived, may be lost), and take
-- the node's lease with it.
--
-- KEYS[1] the epoch counter, KEYS[2] the node's lease key
-- ARGV[1] the highest epoch in the log, ARGV[2] the lease's time to live in milliseconds
-- Returns the epoch.
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = math.max(counter, tonumber(ARGV[1])) + 1
redis.call('SET', KEYS[1], epoch)
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[2])
return epoch
