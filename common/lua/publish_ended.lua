--[[ publish_ended.lua: prepended to the scripts that end a task (finish, requeue).
Publishes the ended task's fields to the notification channel as a msgpack array
{task_id, field, value, field, value, ...}, leaving out `result` when it is longer
than inline_max bytes (the waiter then reads it). Waiters need no extra round trip.
]]
local function publish_ended(task_key, channel, task_id, inline_max)
  local fields = redis.call('HGETALL', task_key)
  local message = {task_id}
  for i = 1, #fields, 2 do
    if fields[i] ~= 'result' or #fields[i + 1] <= inline_max then
      message[#message + 1] = fields[i]
      message[#message + 1] = fields[i + 1]
    end
  end
  redis.call('PUBLISH', channel, cmsgpack.pack(message))
end
