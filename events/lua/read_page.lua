-- Read a page of the log as ONE msgpack document, so the client decodes it in a single call.
--
-- KEYS[1] log stream; ARGV[1] start id, ARGV[2] end id, ARGV[3] count, ARGV[4] shape:
--   'ids'  a msgpack array of [id, version, event] triples (`EventStore.pages`);
--   else   a flat msgpack array version, event, version, event, ... (replay needs no ids, and
--          the client builds no tuple per entry).
-- Returns {count, last id, page}. `event` is the stored msgpack payload embedded as is. An
-- entry without a data field or with a version that is not 1 to 3 ASCII digits (as
-- `codec.decode_entry` wants it) or over 127 gets nil in place of the event and version 0,
-- which makes the typed decode fail so the client re-reads the page the slow way and
-- quarantines what it cannot decode.
--
-- Why it is written this way: turning XRANGE's reply into Lua tables is most of this
-- script's cost and cannot be avoided; the rest is kept small by creating no string per
-- entry (the pieces go into one table, joined once by table.concat; each version's byte is
-- worked out once per call).

local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local n = #entries
local with_ids = ARGV[4] == 'ids'
local out = {struct.pack('>BI4', 0xdd, with_ids and n or 2 * n)}
local bytes = {}  -- stored version -> its msgpack fixint, or false if unusable
local heads = {}  -- id length -> the bytes that open a triple with an id that long
local m = 1  -- pieces in `out`
for k = 1, n do
  local id, fields = entries[k][1], entries[k][2]
  local d, v
  if #fields == 4 and fields[1] == 'd' and fields[3] == 'v' then
    d, v = fields[2], fields[4]  -- what Forge writes
  else
    for j = 1, #fields, 2 do
      local f = fields[j]
      if f == 'd' then d = fields[j + 1] elseif f == 'v' then v = fields[j + 1] end
    end
    v = v or '1'
  end
  local b = bytes[v]
  if b == nil then
    local version = string.match(v, '^%d%d?%d?$') and tonumber(v) or nil
    b = version ~= nil and version <= 127 and string.char(version)
    bytes[v] = b
  end
  if d == nil or not b or #id > 255 then
    d, b = '\192', '\0'
  end
  if with_ids then
    local head = heads[#id]
    if head == nil then
      head = '\147\217' .. string.char(#id)
      heads[#id] = head
    end
    out[m + 1], out[m + 2], out[m + 3], out[m + 4] = head, id, b, d
    m = m + 4
  else
    out[m + 1], out[m + 2] = b, d
    m = m + 2
  end
end
local last = n > 0 and entries[n][1] or ''
return {n, last, table.concat(out)}
