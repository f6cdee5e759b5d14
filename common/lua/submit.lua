--[[ submit.lua: accept tasks of one function in one atomic step.
KEYS[1]   queue stream                 <p>:queue, or <p>:queue:nested for calls from a task
KEYS[2]   function hash                <p>:fn:<function_id>
KEYS[3]   idempotency key              <p>:idem:<tenant>:<key>  (read only when ARGV[5] > 0)
KEYS[4]   unfinished tasks per tenant  <p>:unfinished  (hash: tenant -> count)
KEYS[5]   the tenant's task index      <p>:index:<tenant> (stream of task ids)
KEYS[6..] task hashes                  <p>:task:<task_id>, in the order of the pairs below
ARGV[1]   function_id
ARGV[2]   now (ms since the epoch)
ARGV[3]   deadline (ms)
ARGV[4]   max_attempts
ARGV[5]   idempotency key TTL in seconds; 0 means no key (then there is exactly one task)
ARGV[6]   digest of the request (function, payload, options) the key is bound to
ARGV[7]   tenant
ARGV[8]   the tenant's most unfinished (queued + running) tasks
ARGV[9]   how long the index remembers a task (ms); 0: forever
ARGV[10]  call depth: 0 for a task submitted from outside, n for a call made by a task
          at depth n - 1
ARGV[11]  D, how many dependencies (futures among the arguments) each task has
ARGV[12]  default TTL of an ended task in seconds (0: keep forever)
ARGV[13]  notification channel <p>:done
ARGV[14]  largest result published inline (bytes)
ARGV[15]  the tasks' own TTL once ended (seconds); 0: the function's, if it has one
ARGV[16]  '1' or '0': shorten that TTL once the result is read; '': as the function says
ARGV[17..16+D] the dependency ids, in argument order, no repeats
ARGV[17+D..] task_id, args payload: one pair per task. An empty payload with a key
          <p>:args:<task_id> means it was kept apart: the caller SET it there, with a
          TTL, in the same pipeline (Redis keeps the bytes it read; as an argument here, 1 MB cost
          about 2 ms of Redis's time). It is kept (PERSIST) for a task stored here,
          dropped when nothing is, and deleted when the task ends (close_task).
With dependencies (see dependents.lua), each must be a task of the same tenant (else
error NODEPENDENCY <id>, nothing stored). If all COMPLETED already, the task is queued
at once (its entry's `w` lists them); if one FAILED or was CANCELLED, it ends FAILED
(dependency_failed) at once; else it is stored WAITING, args in its hash, and listed
in each unfinished dependency's set.
Returns the list of task ids. With an idempotency key seen before with the same digest,
returns the task id it was first given and adds nothing; with another digest, error
IDEMCONFLICT <task_id>. Error NOFUNCTION when the function is not registered or belongs
to another tenant (a function without a tenant is the `default` tenant's); error
QUOTA <unfinished> when the tasks would take the tenant past its quota: then nothing
is stored. The count goes up here, once per task, and down in finish.lua or
requeue.lua when the task ends (the `tenant` field marks a task as counted).
A task whose hash exists already is left alone and not counted (a parent that runs
again after its worker died calls its children by the same ids: it finds them instead
of starting them twice); its id is returned like the others.
]]
local ndeps = tonumber(ARGV[11])
local first_key, first_pair = 6 + 2 * ndeps, 17 + ndeps
-- Nothing is stored: drop the arguments staged for tasks that do not exist.
local function refuse(reply)
  for j = first_pair, #ARGV, 2 do
    local task_key = KEYS[first_key + (j - first_pair) / 2]
    if ARGV[j + 1] == '' and redis.call('EXISTS', task_key) == 0 then
      redis.call('DEL', args_key(prefix_of(task_key, ARGV[j]), ARGV[j]))
    end
  end
  return reply
end
local fn = redis.call('HMGET', KEYS[2], 'tenant', 'result_ttl_s', 'expire_after_read')
local owner = fn[1]
if not owner and redis.call('EXISTS', KEYS[2]) == 1 then
  owner = 'default'
end
if owner ~= ARGV[7] then
  return refuse(redis.error_reply('NOFUNCTION'))
end
-- Retention: the task's own choice, else its function's, else (absent) the default.
local retention = {}
local ttl = ARGV[15] ~= '0' and ARGV[15] or fn[2]
if ttl then
  retention = {'result_ttl_s', ttl}
end
if (ARGV[16] ~= '' and ARGV[16] or fn[3]) == '1' then
  retention[#retention + 1] = 'expire_after_read'
  retention[#retention + 1] = 1
end
if tonumber(ARGV[5]) > 0 then
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local task_id, digest = string.match(prior, '^(%S+) (%S+)$')
    if not task_id then
      return refuse({prior})  -- written before keys carried a digest
    end
    if digest ~= ARGV[6] then
      return refuse(redis.error_reply('IDEMCONFLICT ' .. task_id))
    end
    return refuse({task_id})
  end
end
local deps = table.concat(ARGV, ',', 17, 16 + ndeps)
local waiting, failed = 0, nil
for d = 1, ndeps do
  local status, tenant = task_state(KEYS[5 + d])
  if not status or tenant ~= ARGV[7] then
    return refuse(redis.error_reply('NODEPENDENCY ' .. ARGV[16 + d]))
  end
  if not TERMINAL[status] then
    waiting = waiting + 1
  elseif status ~= 'COMPLETED' and not failed then
    failed = 'dependency ' .. ARGV[16 + d] .. ' ended ' .. status
  end
end
local count = 0
for i = first_key, #KEYS do
  count = count + 1 - redis.call('EXISTS', KEYS[i])
end
local unfinished = tonumber(redis.call('HGET', KEYS[4], ARGV[7]) or '0')
if unfinished + count > tonumber(ARGV[8]) then
  return refuse(redis.error_reply('QUOTA ' .. unfinished))
end
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[3], ARGV[first_pair] .. ' ' .. ARGV[6], 'EX', ARGV[5])
end
redis.call('HINCRBY', KEYS[4], ARGV[7], count)
local ids = {}
for i = first_key, #KEYS do
  local j = first_pair + (i - first_key) * 2
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local prefix = prefix_of(KEYS[i], ARGV[j])
    local field, value = payload_field(prefix, ARGV[j], ARGV[j + 1])
    if field == 'P' then
      redis.call('PERSIST', args_key(prefix, ARGV[j]))
    end
    local fields = {'function_id', ARGV[1], 'tenant', ARGV[7], 'status', 'QUEUED',
      'attempt', 1, 'max_attempts', ARGV[4], 'deadline_ms', ARGV[3], 'queued_ms', ARGV[2],
      'nested', ARGV[10] == '0' and 0 or 1, unpack(retention)}
    if ndeps == 0 or (waiting == 0 and not failed) then
      local entry = {'t', ARGV[j], 'a', 1, 'f', ARGV[1], 'd', ARGV[3], 'n', ARGV[7]}
      if ARGV[10] ~= '0' then
        entry[#entry + 1] = 'c'
        entry[#entry + 1] = ARGV[10]
      end
      if ndeps > 0 then
        entry[#entry + 1] = 'w'
        entry[#entry + 1] = deps
      end
      entry[#entry + 1] = field
      entry[#entry + 1] = value
      fields[#fields + 1] = 'entry'
      fields[#fields + 1] = redis.call('XADD', KEYS[1], '*', unpack(entry))
      redis.call('HSET', KEYS[i], unpack(fields))
    else
      fields[6] = 'WAITING'
      redis.call('HSET', KEYS[i], unpack(fields))
      redis.call('HSET', KEYS[i], 'waiting', waiting, 'deps', deps, 'depth', ARGV[10],
        'payload', ARGV[j + 1])
      if failed then
        fail_dependent(KEYS[i], KEYS[4], failed, ARGV[2], ARGV[12], ARGV[13], ARGV[j],
          ARGV[14])
      else
        for d = 1, ndeps do
          if not TERMINAL[task_state(KEYS[5 + d])] then
            redis.call('SADD', KEYS[5 + ndeps + d], ARGV[j])
          end
        end
      end
    end
    -- The index entry's id is the time it was listed (Redis's clock); a UUID goes
    -- as its 16 bytes (`u`), any other id as text (`i`).
    local raw = uuid_bytes(ARGV[j])
    redis.call('XADD', KEYS[5], '*', raw and 'u' or 'i', raw or ARGV[j])
  end
  ids[#ids + 1] = ARGV[j]
end
-- Tasks expire on their own; their index entries go once surely past that (whole
-- nodes of the stream at a time: `~`).
if tonumber(ARGV[9]) > 0 then
  redis.call('XTRIM', KEYS[5], 'MINID', '~', tonumber(ARGV[2]) - tonumber(ARGV[9]))
end
return ids
