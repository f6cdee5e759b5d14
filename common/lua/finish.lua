--[[ finish.lua: commit a task's outcome exactly once, fenced by its attempt.
KEYS[1]  task hash     <p>:task:<task_id>
KEYS[2]  queue stream  <p>:queue
KEYS[3]  unfinished tasks per tenant  <p>:unfinished
ARGV[1]  consumer group
ARGV[2]  stream entry id that delivered this attempt
ARGV[3]  attempt the outcome belongs to
ARGV[4]  status: COMPLETED or FAILED
ARGV[5]  result (raw pickle bytes)
ARGV[6]  error text ('' when none)
ARGV[7]  error kind ('' when none)
ARGV[8]  now (ms since the epoch)
ARGV[9]  TTL of the finished task in seconds (0: keep forever)
ARGV[10] notification channel <p>:done
ARGV[11] task_id
ARGV[12] largest result published inline (bytes)
Returns 1 if committed; 0 if the task is unknown, already terminal (a cancelled task
too), or at another attempt (a late result from a worker presumed dead), in which case
nothing changes.
]]
local h = redis.call('HMGET', KEYS[1], 'status', 'attempt')
if not h[1] or TERMINAL[h[1]] or h[2] ~= ARGV[3] then
  return 0
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
end_task(KEYS[1], KEYS[3], {'status', ARGV[4], 'result', ARGV[5], 'error', ARGV[6],
  'error_kind', ARGV[7], 'finished_ms', ARGV[8]}, ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return 1
