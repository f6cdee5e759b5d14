"""The REST API: validates and queues work, answers status and results. It never
unpickles user data and keeps no state of its own, so it scales out freely."""
