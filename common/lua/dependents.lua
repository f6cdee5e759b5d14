--[[ dependents.lua: appended after publish_ended.lua; futures as arguments.
A task submitted with dependencies (submit.lua) waits in status WAITING, with no
queue entry: its hash keeps `waiting` (how many dependencies have not ended),
`payload` (its args), `deps` (its dependency ids, comma-separated, in argument order),
`depth`; each unfinished dependency lists it in the set <p>:deps:<dependency_id>.
When a task ends, each WAITING dependent is released:
- the dependency COMPLETED: `waiting` goes down; at 0 the dependent is queued (XADD
  to the stream its `nested` flag names, with `w` = its dependency ids, so the
  dispatcher reads their results) and becomes QUEUED;
- it FAILED or was CANCELLED: the dependent ends FAILED (error_kind
  dependency_failed), and so in turn do its own dependents.
The cascade runs in a worklist, not by recursion: each task ends at most once, so
one script does at most as many steps as there are tasks waiting downstream, which
the tenants' quotas of unfinished tasks bound (WAITING tasks count as unfinished).
Keys are built from the task key's prefix: the dependents of a task are only known
once it ends, so they cannot be declared by the caller (a single Redis, no cluster).
]]
-- A failed dependent's result: a pickled RuntimeError(error) (protocol 0, written
-- here; `error` holds no newline nor backslash: ids and a status), like the other
-- failures the platform decides.
local function dependency_failure(error)
  return 'cbuiltins\nRuntimeError\n(V' .. error .. '\ntR.'
end

local function fail_dependent(key, counter_key, error, finished_ms, ttl, channel, id, inline_max)
  close_task(key, counter_key, {status = 'FAILED', result = dependency_failure(error),
    error = error, kind = 'dependency_failed', finished = finished_ms},
    ttl, channel, id, inline_max)
end

-- `ended`: the end of the task that just ended (see publish_ended.lua).
release_dependents = function(task_key, counter_key, ttl, channel, task_id, inline_max, ended)
  local prefix = prefix_of(task_key, task_id)
  local work = {{task_id, ended.status}}
  local i = 1
  while i <= #work do
    local ended_id, ended_status = work[i][1], work[i][2]
    i = i + 1
    local set = prefix .. 'deps:' .. ended_id
    local dependents = redis.call('SMEMBERS', set)
    redis.call('DEL', set)
    for _, id in ipairs(dependents) do
      local key = prefix .. 'task:' .. id
      if redis.call('HGET', key, 'status') == 'WAITING' then
        if ended_status ~= 'COMPLETED' then
          fail_dependent(key, counter_key, 'dependency ' .. ended_id .. ' ended ' .. ended_status,
            ended.finished, ttl, channel, id, inline_max)
          work[#work + 1] = {id, 'FAILED'}
        elseif redis.call('HINCRBY', key, 'waiting', -1) <= 0 then
          local h = redis.call('HMGET', key, 'function_id', 'deadline_ms', 'tenant', 'depth',
            'deps', 'payload', 'nested')
          local fields = {'t', id, 'a', 1, 'f', h[1], 'd', h[2], 'n', h[3]}
          if h[4] and h[4] ~= '0' then
            fields[#fields + 1] = 'c'
            fields[#fields + 1] = h[4]
          end
          local field, value = payload_field(prefix, id, h[6])
          for _, f in ipairs({'w', h[5], field, value}) do
            fields[#fields + 1] = f
          end
          local stream = prefix .. (h[7] == '1' and 'queue:nested' or 'queue')
          local entry = redis.call('XADD', stream, '*', unpack(fields))
          redis.call('HSET', key, 'status', 'QUEUED', 'entry', entry)
          redis.call('HDEL', key, 'payload', 'waiting')
        end
      end
    end
  end
end
