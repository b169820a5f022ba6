-- Read a page of the log as ONE msgpack document, so the client decodes it in a single call.
--
-- KEYS[1] log stream; ARGV[1] start id, ARGV[2] end id, ARGV[3] count.
-- Returns {count, last id, page}; the page is a msgpack array of [id, version, event] triples, where `event` is the stored msgpack
-- payload embedded as is. An entry without a data field or with a version that is not 1 to 3
-- ASCII digits (as `codec.decode_entry` wants it) or over 127 gets nil in
-- place of the event, which makes the typed decode fail so the client re-reads the page the
-- slow way and quarantines what it cannot decode.

local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local out = {struct.pack('>BI4', 0xdd, #entries)}
for k = 1, #entries do
  local id, fields = entries[k][1], entries[k][2]
  local d, v = nil, nil
  for j = 1, #fields, 2 do
    local f = fields[j]
    if f == 'd' then d = fields[j + 1] elseif f == 'v' then v = fields[j + 1] end
  end
  v = v or '1'
  local version = string.match(v, '^%d%d?%d?$') and tonumber(v) or nil
  if d == nil or version == nil or version > 127 or #id > 255 then
    d, version = '\192', 0
  end
  out[k + 1] = '\147\217' .. string.char(#id) .. id .. string.char(version) .. d
end
local last = #entries > 0 and entries[#entries][1] or ''
return {#entries, last, table.concat(out)}
