--[[ cancel.lua: end tasks CANCELLED, atomically, unless they already ended.
KEYS[1]   queue stream          <p>:queue
KEYS[2]   nested calls' stream  <p>:queue:nested
KEYS[3]   cancel notices        <p>:cancels (list the dispatcher watches)
KEYS[4]   unfinished tasks per tenant  <p>:unfinished
KEYS[5..] task hashes           <p>:task:<task_id>, in the order of the task ids below
ARGV[1]   consumer group
ARGV[2]   now (ms since the epoch)
ARGV[3]   TTL of an ended task in seconds unless it has its own (0: keep forever)
ARGV[4]   notification channel <p>:done
ARGV[5]   largest result published inline (bytes)
ARGV[6]   result to store (a pickled CancelledError)
ARGV[7]   error text
ARGV[8..] task ids
A QUEUED or RUNNING task ends CANCELLED: its queue entry (the hash's `entry`, in the
stream its `nested` flag names) is acked and deleted, so a dispatcher that has not
read it never will, and one that holds it (read ahead, or running) learns from the
notice `<task_id>` pushed to KEYS[3], then drops it or has its worker kill the
attempt. A late result is then refused by finish.lua's fence, like any result for an
ended task. A WAITING task (see dependents.lua) has no entry: it just ends, and the
tasks waiting on it end FAILED in turn. An ended task is left alone. Returns each
task's status afterwards ('' for an unknown task).
]]
local out = {}
for i = 5, #KEYS do
  local task_id = ARGV[i + 3]
  local status = task_state(KEYS[i])
  if not status then
    out[#out + 1] = ''
  elseif TERMINAL[status] then
    out[#out + 1] = status
  else
    local h = redis.call('HMGET', KEYS[i], 'entry', 'nested')
    if h[1] then
      local stream = h[2] == '1' and KEYS[2] or KEYS[1]
      redis.call('XACK', stream, ARGV[1], h[1])
      redis.call('XDEL', stream, h[1])
    end
    end_task(KEYS[i], KEYS[4], {status = 'CANCELLED', result = ARGV[6], error = ARGV[7],
      kind = 'cancelled', finished = ARGV[2]}, ARGV[3], ARGV[4], task_id, ARGV[5])
    redis.call('RPUSH', KEYS[3], task_id)
    out[#out + 1] = 'CANCELLED'
  end
end
return out
