--[[ submit.lua: accept tasks of one function in one atomic step.
KEYS[1]   queue stream                 <p>:queue
KEYS[2]   function hash                <p>:fn:<function_id>
KEYS[3]   idempotency key              <p>:idem:<key>  (read only when ARGV[5] > 0)
KEYS[4..] task hashes                  <p>:task:<task_id>, in the order of the pairs below
ARGV[1]   function_id
ARGV[2]   now (ms since the epoch)
ARGV[3]   deadline (ms)
ARGV[4]   max_attempts
ARGV[5]   idempotency key TTL in seconds; 0 means no key (then there is exactly one task)
ARGV[6]   digest of the request (function, payload, options) the key is bound to
ARGV[7..] task_id, args payload: one pair per task
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
  redis.call('SET', KEYS[3], ARGV[7] .. ' ' .. ARGV[6], 'EX', ARGV[5])
end
local ids = {}
for i = 4, #KEYS do
  local j = 7 + (i - 4) * 2
  local entry = redis.call('XADD', KEYS[1], '*', 't', ARGV[j], 'a', 1, 'f', ARGV[1],
    'd', ARGV[3], 'p', ARGV[j + 1])
  redis.call('HSET', KEYS[i], 'function_id', ARGV[1], 'status', 'QUEUED', 'attempt', 1,
    'max_attempts', ARGV[4], 'deadline_ms', ARGV[3], 'queued_ms', ARGV[2], 'entry', entry)
  ids[#ids + 1] = ARGV[j]
end
return ids
