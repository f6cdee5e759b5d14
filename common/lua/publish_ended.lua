--[[ publish_ended.lua: prepended (after records.lua) to the scripts that end a task
(finish, requeue, cancel, and submit for a task whose dependency already failed), with
dependents.lua. `close_task` is the one place a task becomes terminal: whatever must
happen at every end (a counter, the retained form, the TTLs) goes there; `end_task`
also releases the tasks waiting on it (only the cascade in dependents.lua, and
submit's task that has none yet, skip that).
An end is a table: status, result (nil when finish.lua renamed a staged one into
<p>:result:<id> already), error, kind (error kind, '' if none), finished (ms).
]]

-- The key prefix ('<p>:') of a task's hash key <p>:task:<task_id>.
local function prefix_of(task_key, task_id)
  return string.sub(task_key, 1, #task_key - #task_id - #'task:')
end

-- Arguments kept apart (submit.lua): an empty payload whose <p>:args:<task_id> exists.
-- The queue entry's payload field and value: `P` then (the dispatcher reads that key),
-- else `p` and the payload itself.
local function args_key(prefix, task_id)
  return prefix .. 'args:' .. task_id
end
local function payload_field(prefix, task_id, payload)
  if payload == '' and redis.call('EXISTS', args_key(prefix, task_id)) == 1 then
    return 'P', '1'
  end
  return 'p', payload
end

-- The longest value a hash may hold and keep Redis's compact encoding (a listpack,
-- as long as hash-max-listpack-value keeps its default): one longer value turns
-- the whole hash into a hashtable, several times larger.
local LISTPACK_VALUE_MAX = 64

-- Publish the end on the notification channel as a msgpack array {task_id, field,
-- value, ...}: the retained fields, with `w` the worker's id rather than its number,
-- and `r` the result if it is at most inline_max bytes, so waiters of small results
-- read nothing.
local function publish_ended(channel, task_id, fields, worker, result, inline_max)
  local message = {task_id}
  for i = 1, #fields, 2 do
    if fields[i] ~= 'w' and fields[i] ~= 'r' then
      message[#message + 1] = fields[i]
      message[#message + 1] = fields[i + 1]
    end
  end
  for _, f in ipairs({{'w', worker}, {'r', result and #result <= inline_max and result}}) do
    if f[2] then
      message[#message + 1] = f[1]
      message[#message + 1] = f[2]
    end
  end
  redis.call('PUBLISH', channel, cmsgpack.pack(message))
end

-- The number that stands for a worker id in retained tasks: workers are few and their
-- ids long (pod names), tasks many. <p>:workers maps both ways, `i:<id>` -> number
-- and `n:<number>` -> id (`next`: the last number given), and only grows.
local function worker_number(prefix, worker)
  local key = prefix .. 'workers'
  local n = redis.call('HGET', key, 'i:' .. worker)
  if not n then
    n = redis.call('HINCRBY', key, 'next', 1)
    redis.call('HSET', key, 'i:' .. worker, n, 'n:' .. n, worker)
  end
  return tostring(n)
end

-- End a task: uncount it (see submit.lua; tasks without a `tenant` field were never
-- counted), replace its open form by the retained one, start the TTL of everything it
-- leaves (its own `result_ttl_s` if it has one, else `ttl`; 0 keeps them) and publish.
-- Retained form: `h` msgpack [status letter, attempt, max_attempts, deadline ms,
-- queued ms, started - queued ms or false, finished - queued ms, function id as 16
-- bytes or false (then `f` holds its text), true if its TTL shrinks once its result
-- is read (else absent)]; `n` tenant unless default, `e` error, `k` error kind, each
-- only if not empty; `w` the worker's number (see worker_number) if it started; `r`
-- the result, or `o` = 1 when it is kept apart in <p>:result:<task_id> (staged, or
-- the one value too long for a listpack).
local function close_task(task_key, counter_key, ended, ttl, channel, task_id, inline_max)
  local h = redis.call('HMGET', task_key, 'function_id', 'tenant', 'attempt', 'max_attempts',
    'deadline_ms', 'queued_ms', 'started_ms', 'worker', 'result_ttl_s', 'expire_after_read')
  local tenant = h[2]
  if tenant and redis.call('HINCRBY', counter_key, tenant, -1) <= 0 then
    redis.call('HDEL', counter_key, tenant)
  end
  ttl = tonumber(h[9] or ttl)
  local queued = tonumber(h[6]) or 0
  local fid = uuid_bytes(h[1] or '')
  local header = {LETTER[ended.status], tonumber(h[3]) or 1, tonumber(h[4]) or 1,
    tonumber(h[5]) or 0, queued, h[7] and tonumber(h[7]) - queued or false,
    tonumber(ended.finished) - queued, fid or false}
  if h[10] == '1' then
    header[#header + 1] = true
  end
  local prefix = prefix_of(task_key, task_id)
  local worker = h[8] ~= '' and h[8]
  local fields = {'h', cmsgpack.pack(header)}
  local small = true  -- every value fits a listpack
  for _, f in ipairs({{'f', not fid and h[1]}, {'n', tenant ~= 'default' and tenant},
                      {'w', worker and worker_number(prefix, worker)},
                      {'e', ended.error}, {'k', ended.kind}}) do
    if f[2] and f[2] ~= '' then
      fields[#fields + 1] = f[1]
      fields[#fields + 1] = f[2]
      small = small and #f[2] <= LISTPACK_VALUE_MAX
    end
  end
  local result_key = prefix .. 'result:' .. task_id
  -- A result is kept apart only when it alone would make the hash large: one more
  -- key costs less than a hashtable, but nothing when the hash is one anyway.
  local apart = ended.result == nil or small and #ended.result > LISTPACK_VALUE_MAX
  if ended.result == nil then
    fields[#fields + 1] = 'o'
    fields[#fields + 1] = '1'
    if ttl == 0 then  -- a staged result had a TTL of its own
      redis.call('PERSIST', result_key)
    end
  elseif apart then
    redis.call('SET', result_key, ended.result)
    fields[#fields + 1] = 'o'
    fields[#fields + 1] = '1'
  else
    fields[#fields + 1] = 'r'
    fields[#fields + 1] = ended.result
  end
  redis.call('DEL', task_key)  -- a fresh hash: a long open form made it a hashtable
  redis.call('DEL', args_key(prefix, task_id))  -- arguments kept apart, if any
  redis.call('HSET', task_key, unpack(fields))
  if ttl > 0 then
    redis.call('EXPIRE', task_key, ttl)
    redis.call('EXPIRE', prefix .. 'logs:' .. task_id, ttl)
    if apart then
      redis.call('EXPIRE', result_key, ttl)
    end
  end
  publish_ended(channel, task_id, fields, worker, ended.result, tonumber(inline_max))
end

-- Defined in dependents.lua (appended after this file): what a task's end means for
-- the tasks WAITING on it.
local release_dependents

-- close_task, then release the tasks waiting on this one. Called exactly once per
-- task, on its one transition to a terminal state.
local function end_task(task_key, counter_key, ended, ttl, channel, task_id, inline_max)
  close_task(task_key, counter_key, ended, ttl, channel, task_id, inline_max)
  release_dependents(task_key, counter_key, ttl, channel, task_id, inline_max, ended)
end
