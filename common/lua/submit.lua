--[[ submit.lua: accept tasks of one function in one atomic step.
KEYS[1]   queue stream                 <p>:queue, or <p>:queue:nested for calls from a task
KEYS[2]   function hash                <p>:fn:<function_id>
KEYS[3]   idempotency key              <p>:idem:<key>  (read only when ARGV[5] > 0)
KEYS[4]   task index                   <p>:tasks (sorted set, scored by queued ms)
KEYS[5..] task hashes                  <p>:task:<task_id>, in the order of the pairs below
ARGV[1]   function_id
ARGV[2]   now (ms since the epoch)
ARGV[3]   deadline (ms)
ARGV[4]   max_attempts
ARGV[5]   idempotency key TTL in seconds; 0 means no key (then there is exactly one task)
ARGV[6]   digest of the request (function, payload, options) the key is bound to
ARGV[7]   how long the index remembers a task (ms); 0: forever
ARGV[8]   call depth: 0 for a task submitted from outside, n for a call made by a task
          at depth n - 1
ARGV[9..] task_id, args payload: one pair per task
A task whose hash exists already is left alone (a parent that runs again after its
worker died calls its children by the same ids: it finds them instead of starting
them twice), and its id is returned like the others.
Returns the list of task ids. With an idempotency key seen before with the same digest,
returns the task id it was first given and adds nothing; with another digest, error
IDEMCONFLICT <task_id>. Error NOFUNCTION when the function is not registered.
]]
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('NOFUNCTION')
end
if tonumber(ARGV[5]) > 0 then
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local task_id, digest = string.match(prior, '^(%S+) (%S+)$')
    if not task_id then
      return {prior}  -- written before keys carried a digest
    end
    if digest ~= ARGV[6] then
      return redis.error_reply('IDEMCONFLICT ' .. task_id)
    end
    return {task_id}
  end
  redis.call('SET', KEYS[3], ARGV[9] .. ' ' .. ARGV[6], 'EX', ARGV[5])
end
local ids = {}
for i = 5, #KEYS do
  local j = 9 + (i - 5) * 2
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'function_id', ARGV[1], 'status', 'QUEUED', 'attempt', 1,
      'max_attempts', ARGV[4], 'deadline_ms', ARGV[3], 'queued_ms', ARGV[2])
    if ARGV[8] == '0' then
      redis.call('XADD', KEYS[1], '*', 't', ARGV[j], 'a', 1, 'f', ARGV[1], 'd', ARGV[3],
        'p', ARGV[j + 1])
    else
      redis.call('XADD', KEYS[1], '*', 't', ARGV[j], 'a', 1, 'f', ARGV[1], 'd', ARGV[3],
        'p', ARGV[j + 1], 'n', ARGV[8])
    end
    redis.call('ZADD', KEYS[4], ARGV[2], ARGV[j])
  end
  ids[#ids + 1] = ARGV[j]
end
-- Tasks expire on their own; their index entries go once surely past that.
if tonumber(ARGV[7]) > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[7])))
end
return ids
