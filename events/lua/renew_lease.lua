-- Renew or give up a node's lease, only if it still holds it: the key exists and holds the
-- node's epoch. A lease that ran out is never renewed (others may have recorded the node lost
-- already).
--
-- KEYS[1] the node's lease key
-- ARGV[1] the node's epoch, ARGV[2] the lease's time to live in milliseconds ('0': give it up)
-- Returns 1 when renewed (or given up), 0 when the lease is gone or another epoch holds it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
