--[[ start.lua: mark dispatched tasks RUNNING.
KEYS[1..n] task hashes <p>:task:<task_id>
ARGV[1]    now (ms since the epoch)
ARGV[2..]  attempt, worker_id: one pair per task, in the order of KEYS
Only a task still QUEUED at that same attempt moves; a task that already ended
(or was re-queued since) is left alone. Returns per task 1 (started), 0 (left alone)
or -1 (CANCELLED: it was sent after its cancel, so its worker must kill it).
]]
local out = {}
for i = 1, #KEYS do
  local attempt, worker = ARGV[i * 2], ARGV[i * 2 + 1]
  local h = redis.call('HMGET', KEYS[i], 'status', 'attempt')
  if h[1] == 'QUEUED' and h[2] == attempt then
    redis.call('HSET', KEYS[i], 'status', 'RUNNING', 'started_ms', ARGV[1], 'worker', worker)
    out[i] = 1
  elseif task_state(KEYS[i]) == 'CANCELLED' then
    out[i] = -1
  else
    out[i] = 0
  end
end
return out
