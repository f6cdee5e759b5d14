--[[ requeue.lua: give back a task whose worker (or dispatcher) was lost.
KEYS[1]  task hash     <p>:task:<task_id>
KEYS[2]  queue stream  <p>:queue
KEYS[3]  unfinished tasks per tenant  <p>:unfinished
ARGV[1]  consumer group
ARGV[2]  stream entry id that delivered this attempt
ARGV[3]  attempt that was lost
ARGV[4]  now (ms since the epoch)
ARGV[5]  error text if the task has no attempts left
ARGV[6]  result to store then (a pickled exception)
ARGV[7]  TTL of a finished task in seconds unless it has its own (0: keep forever)
ARGV[8]  notification channel <p>:done
ARGV[9]  task_id
ARGV[10] largest result published inline (bytes)
A task that was RUNNING used up an attempt: it goes back to the queue at attempt + 1,
or ends FAILED (kind worker_lost) when max_attempts is reached. A task still QUEUED
never started, so it goes back at the same attempt. The old entry is acknowledged and
deleted; the new one carries the same payload. Returns 'requeued', 'failed' or
'stale' (already terminal, unknown, or at another attempt: only the entry is dropped;
an ended task in the retained form has no `status`).
]]
local function drop_entry()
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end
local h = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'max_attempts')
if not h[1] or TERMINAL[h[1]] or h[2] ~= ARGV[3] then
  drop_entry()
  return 'stale'
end
local attempt = tonumber(h[2])
local entry = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])
if h[1] == 'RUNNING' and attempt >= tonumber(h[3]) or #entry == 0 then
  drop_entry()
  end_task(KEYS[1], KEYS[3], {status = 'FAILED', result = ARGV[6], error = ARGV[5],
    kind = 'worker_lost', finished = ARGV[4]}, ARGV[7], ARGV[8], ARGV[9], ARGV[10])
  return 'failed'
end
if h[1] == 'RUNNING' then
  attempt = attempt + 1
end
local fields = entry[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'a' then
    fields[i + 1] = attempt
  end
end
local requeued = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('HSET', KEYS[1], 'status', 'QUEUED', 'attempt', attempt, 'worker', '',
  'entry', requeued)
drop_entry()
return 'requeued'
