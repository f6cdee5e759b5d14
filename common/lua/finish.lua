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
ARGV[9]  TTL of the finished task in seconds unless it has its own (0: keep forever)
ARGV[10] notification channel <p>:done
ARGV[11] task_id
ARGV[12] largest result published inline (bytes)
ARGV[13] '1' if the result was staged under KEYS[4] (ARGV[5] is then ''), else '0'
ARGV[14] when the attempt started (ms) if its start was not written (see the
         dispatcher's deferred start writes), else ''
ARGV[15] the worker it started on then (written with ARGV[14] unless a start was)
KEYS[4]  staged result  <p>:blob:<task_id>:<attempt>
KEYS[5]  result kept apart  <p>:result:<task_id>
A large result is not an argument here: the caller SETs it under KEYS[4] in the same
pipeline, and this script, once the fence passes, RENAMEs it to KEYS[5] (no copy;
close_task marks the task `o` and gives it the task's TTL); a stale attempt's staged
result is deleted instead.
Returns 1 if committed; 0 if the task is unknown, already terminal (a cancelled task
too; the retained form has no `status`), or at another attempt (a late result from a
worker presumed dead), in which case nothing changes.
]]
local staged = ARGV[13] == '1'
local h = redis.call('HMGET', KEYS[1], 'status', 'attempt')
if not h[1] or TERMINAL[h[1]] or h[2] ~= ARGV[3] then
  if staged then
    redis.call('DEL', KEYS[4])
  end
  return 0
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if ARGV[14] ~= '' and (redis.call('HGET', KEYS[1], 'worker') or '') == '' then
  redis.call('HSET', KEYS[1], 'started_ms', ARGV[14], 'worker', ARGV[15])
end
local result = ARGV[5]
if staged then
  redis.call('RENAME', KEYS[4], KEYS[5])
  result = nil
end
end_task(KEYS[1], KEYS[3], {status = ARGV[4], result = result, error = ARGV[6],
  kind = ARGV[7], finished = ARGV[8]}, ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return 1
