--[[ records.lua: prepended to every script that reads task hashes.
A task's hash has two forms (see store.py's docstring). While the task is open
(WAITING, QUEUED, RUNNING) it has the open form, long field names, written by
submit, start and requeue. When it ends, close_task (publish_ended.lua) rewrites it
in the retained form: few fields, one-letter names, the fixed-size ones packed into
`h`. Tasks an older version ended keep the open form with a terminal status, so
readers take both.
]]
local TERMINAL = {COMPLETED = true, FAILED = true, CANCELLED = true}
local LETTER = {COMPLETED = 'C', FAILED = 'F', CANCELLED = 'X'}  -- in the retained form
local STATUS = {C = 'COMPLETED', F = 'FAILED', X = 'CANCELLED'}

-- The status and tenant of a task, in either form; nil if there is no such task.
local function task_state(key)
  local h = redis.call('HMGET', key, 'status', 'tenant', 'h', 'n')
  if h[1] then
    return h[1], h[2] or 'default'
  elseif h[3] then
    return STATUS[cmsgpack.unpack(h[3])[1]], h[4] or 'default'
  end
  return nil, nil
end

local HEX4 = string.rep('%x', 4)
local UUID = '^' .. HEX4 .. HEX4 .. '%-' .. HEX4 .. '%-' .. HEX4 .. '%-' .. HEX4 .. '%-'
  .. HEX4 .. HEX4 .. HEX4 .. '$'

-- The 16 bytes of a canonical (lower-case) UUID; nil for any other text. Ids are
-- UUIDs, so stored as bytes they take 16 bytes instead of 36.
local function uuid_bytes(text)
  if not string.find(text, UUID) or string.lower(text) ~= text then
    return nil
  end
  return (string.gsub(string.gsub(text, '-', ''), '%x%x', function(hex)
    return string.char(tonumber(hex, 16))
  end))
end
