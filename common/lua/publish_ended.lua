--[[ publish_ended.lua: prepended to the scripts that end a task (finish, requeue,
cancel, and submit for a task whose dependency already failed), with dependents.lua.
`close_task` is the one place a task becomes terminal: whatever must happen at every
end (a counter, an index) goes there; `end_task` also releases the tasks waiting on it
(only the cascade in dependents.lua, and submit's task that has none yet, skip that).
TERMINAL: the statuses a task never leaves.
publish_ended: publishes the ended task's fields to the notification channel as a
msgpack array {task_id, field, value, field, value, ...}, leaving out `result` when it
is longer than inline_max bytes (the waiter then reads it), without copying it into
Lua then. Waiters of small results need no extra round trip.
]]
local TERMINAL = {COMPLETED = true, FAILED = true, CANCELLED = true}

local function publish_ended(task_key, channel, task_id, inline_max)
  local large = redis.call('HSTRLEN', task_key, 'result') > inline_max
  local names = {}
  for _, name in ipairs(redis.call('HKEYS', task_key)) do
    if name ~= 'result' or not large then
      names[#names + 1] = name
    end
  end
  local values = redis.call('HMGET', task_key, unpack(names))
  local message = {task_id}
  for i = 1, #names do
    message[#message + 1] = names[i]
    message[#message + 1] = values[i]
  end
  redis.call('PUBLISH', channel, cmsgpack.pack(message))
end

-- The task no longer counts against its tenant's quota of unfinished tasks (see
-- submit.lua). Tasks without a `tenant` field were never counted.
local function uncount(task_key, counter_key)
  local tenant = redis.call('HGET', task_key, 'tenant')
  if tenant and redis.call('HINCRBY', counter_key, tenant, -1) <= 0 then
    redis.call('HDEL', counter_key, tenant)
  end
end

-- Write a task's final fields (a flat HSET list, `status` among them), drop the
-- args a WAITING task kept, uncount it, start its TTL (seconds; 0 keeps it) and
-- publish its end.
local function close_task(task_key, counter_key, fields, ttl, channel, task_id, inline_max)
  redis.call('HSET', task_key, unpack(fields))
  redis.call('HDEL', task_key, 'payload', 'waiting')
  uncount(task_key, counter_key)
  if tonumber(ttl) > 0 then
    redis.call('EXPIRE', task_key, ttl)
  end
  publish_ended(task_key, channel, task_id, tonumber(inline_max))
end

-- Defined in dependents.lua (appended after this file): what a task's end means for
-- the tasks WAITING on it.
local release_dependents

-- close_task, then release the tasks waiting on this one. Called exactly once per
-- task, on its one transition to a terminal state.
local function end_task(task_key, counter_key, fields, ttl, channel, task_id, inline_max)
  close_task(task_key, counter_key, fields, ttl, channel, task_id, inline_max)
  release_dependents(task_key, counter_key, ttl, channel, task_id, inline_max)
end
